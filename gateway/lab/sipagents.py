"""Registered agent phones (``hotline-lab up --sip-agents``): one SIPp per agent.

Each of pjsip.conf's agents (agent1..3) gets a SIPp process on its own
loopback address (agent N on 127.0.0.7N:5060, RTP from 41N00): the main
scenario ``sipp/agent_register.xml`` registers with digest auth and refreshes
the registration; the out-of-call scenario ``sipp/agent_uas.xml`` answers the
calls the queue sends to the registered contact. A phone's mode is ``answer``,
``late:N`` (rings N s, then answers), ``reject486`` or ``absent`` (no phone,
not registered). The queue members are then ``PJSIP/agentN``
(:func:`queue_members`) instead of the scripted ``Local/agentN@lab-agent``.

The password never reaches a command line or the repository: the phone runs a
private copy of the register scenario (mode 600, in the lab's state directory)
whose ``[authentication]`` names the agent's generated password. A phone is
unregistered (``Contact: *``, ``Expires: 0``) before it starts and after it
stops, so Asterisk never rings a contact nobody answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import secrets
from .errors import LabError
from .procs import pid_alive, read_pid, remove_pid, stop_pid, write_pid
from .settings import REPO_ROOT

if TYPE_CHECKING:
    from .lab import Lab

__all__ = ["AgentPhones", "PhoneMode", "build_command", "parse_contacts", "parse_modes", "queue_members",
           "register_scenario"]

SCENARIOS = REPO_ROOT / "sipp"
AUDIO_PCAP = "/usr/share/sip-tester/g711a.pcap"
#: the agents pjsip.conf defines (agent1..agent3)
PJSIP_AGENTS = (1, 2, 3)
TARGET = "127.0.0.1:5060"
_MODE = re.compile(r"^(answer|reject486|absent|late:(\d{1,3}))$")
_CONTACT = re.compile(r"^\s*Contact:\s+(agent\d+)/(\S+)\s+\S+\s+(\S+)")
#: characters that would end SIPp's [authentication ...] keyword or the header line
_PASSWORD_UNSAFE = set(" ]\t\r\n[")
_AUTH_LINE = re.compile(r"^(\s*)\[authentication\][ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class PhoneMode:
    kind: str = "answer"  # answer | late | reject486 | absent
    ring_s: int = 0

    def __str__(self) -> str:
        return f"late:{self.ring_s}" if self.kind == "late" else self.kind


def parse_mode(text: str) -> PhoneMode:
    match = _MODE.match(text.strip())
    if not match:
        raise LabError(f"agent phone mode {text!r}: answer, late:N (seconds), reject486 or absent")
    return PhoneMode("late", int(match.group(2))) if match.group(2) else PhoneMode(match.group(1))


def parse_modes(text: str) -> dict[int, PhoneMode]:
    """``agent1=late:6,agent2=reject486`` (or ``1=absent``) → {1: late:6, 2: reject486}; others answer."""
    modes = dict.fromkeys(PJSIP_AGENTS, PhoneMode())
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, mode = item.partition("=")
        number = name.strip().removeprefix("agent")
        if not sep or not number.isdigit() or int(number) not in PJSIP_AGENTS:
            raise LabError(f"{item!r}: give agentN=MODE with N in {PJSIP_AGENTS}")
        modes[int(number)] = parse_mode(mode)
    return modes


def queue_members(agents: int, sip_agents: bool) -> str:
    """hotline-queue-members.conf: scripted Local agents, or the registered PJSIP phones."""
    if sip_agents:
        return "; written by hotline-lab: registered agent phones (hotline-lab up --sip-agents)\n" + "".join(
            f"member => PJSIP/agent{n},0,agent{n},PJSIP/agent{n}\n" for n in PJSIP_AGENTS)
    return "; written by hotline-lab: scripted agents (extensions.conf [lab-agent])\n" + "".join(
        f"member => Local/agent{n}@lab-agent,0,agent{n}\n" for n in range(1, agents + 1))


def address(number: int) -> str:
    return f"127.0.0.{70 + number}"


def register_scenario(template: str, user: str, password: str) -> str:
    """The register scenario with the agent's credentials in its ``[authentication]``."""
    if not password or _PASSWORD_UNSAFE & set(password):
        raise LabError(f"{user}: the password must not be empty or contain spaces or brackets")
    text, count = _AUTH_LINE.subn(lambda m: f"{m.group(1)}[authentication username={user} password={password}]",
                                  template)
    if count != 1:
        raise LabError("agent_register.xml must have one line [authentication]")
    return text


def build_command(number: int, mode: PhoneMode, scenario: Path, workdir: Path, *, target: str = TARGET,
                  talk_s: float = 30.0, unregister: bool = False, once: bool = False, ip: str | None = None,
                  expires: int = 300, sipp: str = "sipp") -> list[str]:
    """The sipp argv of agent ``number``'s phone: registered for ``expires`` s, refreshed at 80 %
    (``once``: one REGISTER, no refresh; ``unregister``: one ``Contact: *``, ``Expires: 0``)."""
    ip = ip or address(number)
    user = f"agent{number}"
    cmd = [sipp, target, "-sf", str(scenario), "-i", ip, "-bind_local", "-p", "5060", "-m", "1", "-nostdin",
           "-trace_logs", "-log_file", str(workdir / ("unregister.log" if unregister else "events.log")),
           "-trace_err", "-error_file", str(workdir / "errors.log"), "-key", "agent", user]
    if unregister:
        return cmd + ["-key", "contact", "*", "-key", "expires", "0", "-key", "refresh_ms", "0"]
    keys = {"contact": f"<sip:{user}@{ip}:5060>", "expires": str(expires),
            "refresh_ms": "0" if once else str(expires * 800),
            "reject": "1" if mode.kind == "reject486" else "0", "ring_ms": str(mode.ring_s * 1000),
            "talk_ms": str(int(talk_s * 1000)), "audio_pcap": AUDIO_PCAP}
    cmd += ["-oocsf", str(SCENARIOS / "agent_uas.xml"), "-mi", ip, "-mp", str(41000 + 100 * number), "-aa"]
    for key, value in keys.items():
        cmd += ["-key", key, value]
    return cmd


def parse_contacts(text: str) -> dict[str, tuple[str, str]]:
    """``pjsip show contacts`` → {agentN: (contact URI, status)} for the agent AORs."""
    return {m.group(1): (m.group(2), m.group(3)) for line in text.splitlines() if (m := _CONTACT.match(line))}


class AgentPhones:
    """The lab's SIPp agent phones: state in ``<state>/sip-agents/`` (pid, mode, events log)."""

    def __init__(self, lab: Lab, sipp: str = "sipp") -> None:
        self.lab = lab
        self.sipp = sipp
        self.root = lab.settings.state_dir / "sip-agents"

    # -- remembered mode (like --nodes) ---------------------------------------------------------
    @property
    def flag(self) -> Path:
        return self.lab.settings.state_dir / "sip-agents.mode"

    def enabled(self) -> bool:
        return self.flag.exists()

    def remember(self, on: bool) -> None:
        if on:
            self.flag.parent.mkdir(parents=True, exist_ok=True)
            self.flag.write_text("PJSIP/agentN queue members, SIPp phones\n")
        else:
            self.flag.unlink(missing_ok=True)

    def write_members(self, sip_agents: bool) -> None:
        """Switch the running queue's static members (file + ``queue reload members``)."""
        path = self.lab.chroot.path("/etc/asterisk/hotline-queue-members.conf")
        path.write_text(queue_members(self.lab.settings.agents, sip_agents))
        self.lab.cli("queue reload members")

    # -- phones ---------------------------------------------------------------------------
    def workdir(self, number: int) -> Path:
        path = self.root / f"agent{number}"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def _scenario(self, number: int, password: str | None = None) -> Path:
        """The private register scenario of agent ``number`` (mode 600)."""
        user = f"agent{number}"
        target = self.workdir(number) / ("register.xml" if password is None else "register-try.xml")
        if password is None:
            password = secrets.agent_password(self.lab.settings.state_dir, number)
        text = register_scenario((SCENARIOS / "agent_register.xml").read_text(), user, password)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return target

    def _oneshot(self, number: int, scenario: Path, unregister: bool, ip: str | None = None) -> int:
        if shutil.which(self.sipp) is None:
            raise LabError(f"{self.sipp} not found: apt-get install sip-tester")
        cmd = build_command(number, PhoneMode(), scenario, self.workdir(number), unregister=unregister, once=True,
                            ip=ip, expires=60, sipp=self.sipp)
        try:
            return subprocess.run(cmd, cwd=self.workdir(number), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=20).returncode
        except subprocess.TimeoutExpired:
            raise LabError(f"agent{number}: REGISTER got no final answer in 20 s") from None

    def try_register(self, number: int, password: str, ip: str) -> str:
        """One REGISTER as agent ``number`` from ``ip`` with ``password``: registered | refused | failed (N)."""
        code = self._oneshot(number, self._scenario(number, password), unregister=False, ip=ip)
        if code == 0:
            self._oneshot(number, self._scenario(number), unregister=True, ip=ip)
            return "registered"
        return "refused" if code == 97 else f"failed ({code})"

    def start(self, modes: Mapping[int, PhoneMode], talk_s: float = 30.0, timeout: float = 20.0) -> None:
        """(Re)start every phone in its mode and wait until Asterisk shows the present ones reachable."""
        for number in PJSIP_AGENTS:
            self.stop([number])
            mode = modes.get(number, PhoneMode())
            workdir = self.workdir(number)
            (workdir / "mode").write_text(f"{mode}\n")
            if mode.kind == "absent":
                continue
            for old in ("events.log", "errors.log"):
                (workdir / old).unlink(missing_ok=True)
            cmd = build_command(number, mode, self._scenario(number), workdir, talk_s=talk_s, sipp=self.sipp)
            with (workdir / "sipp.stderr").open("w") as stderr:
                proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=stderr, start_new_session=True)
            write_pid(workdir / "pid", proc.pid)
            self.lab.report(f"agent{number}: SIPp phone {address(number)}:5060 ({mode}), pid {proc.pid}")
        self.wait_registered([n for n in PJSIP_AGENTS if modes.get(n, PhoneMode()).kind != "absent"], timeout)

    def stop(self, numbers: Iterable[int] = PJSIP_AGENTS) -> None:
        """Stop the phones (by their recorded pid) and remove their registrations."""
        if not self.root.exists():
            return  # never used
        for number in numbers:
            pid_file = self.workdir(number) / "pid"
            pid = read_pid(pid_file)
            if pid is not None and pid_alive(pid):
                stop_pid(pid, term_timeout=5)
                self.lab.report(f"agent{number}: SIPp phone stopped (pid {pid})")
            remove_pid(pid_file)
            if self.lab.asterisk.pid() is not None and self.contacts().get(f"agent{number}"):
                self._oneshot(number, self._scenario(number), unregister=True)

    def contacts(self) -> dict[str, tuple[str, str]]:
        try:
            return parse_contacts(self.lab.cli("pjsip show contacts"))
        except LabError:
            return {}

    def wait_registered(self, numbers: Iterable[int], timeout: float = 20.0) -> dict[str, tuple[str, str]]:
        """Wait until each agent's contact shows ``Avail`` (registered and answering OPTIONS)."""
        wanted = {f"agent{n}" for n in numbers}
        deadline = time.monotonic() + timeout
        while True:
            contacts = self.contacts()
            if all(contacts.get(name, ("", ""))[1] == "Avail" for name in wanted):
                return contacts
            for name in wanted:
                pid = read_pid(self.workdir(int(name[5:])) / "pid")
                if not pid_alive(pid):
                    raise LabError(f"{name}: the SIPp phone exited: {self.errors(int(name[5:]))[-800:]}")
            if time.monotonic() > deadline:
                raise LabError(f"agent phones not registered within {timeout:.0f} s: {contacts}")
            time.sleep(0.3)

    def events(self, number: int) -> list[str]:
        """The phone's log: registered, options, invite <id>, answered <id>, rejected <id>, far-bye <id> ..."""
        try:
            return (self.workdir(number) / "events.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def errors(self, number: int) -> str:
        parts = []
        for name in ("sipp.stderr", "errors.log"):
            try:
                parts.append((self.workdir(number) / name).read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(parts).strip()

    def status(self) -> dict[str, dict[str, object]]:
        contacts = self.contacts()
        out = {}
        for number in PJSIP_AGENTS:
            workdir = self.workdir(number)
            pid = read_pid(workdir / "pid")
            mode = (workdir / "mode").read_text().strip() if (workdir / "mode").exists() else None
            uri, state = contacts.get(f"agent{number}", (None, None))
            out[f"agent{number}"] = {"pid": pid if pid_alive(pid) else None, "mode": mode,
                                     "sip": f"{address(number)}:5060", "contact": uri, "status": state}
        return out
