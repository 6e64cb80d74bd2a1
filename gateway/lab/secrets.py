"""Lab secrets: from the environment, else generated once and kept (mode 600).

The repository holds no secret; Asterisk gets them through files included
from the config (``hotline-secrets/*.conf``) that the installer writes.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from pathlib import Path

from .errors import LabError

__all__ = ["agent_password", "ami_secret", "check_secret", "lab_ami_secret", "trunk_password"]

_FORBIDDEN = set(";\n\r\"'\\") | {"\0"}


def check_secret(name: str, value: str) -> str:
    """Refuse values Asterisk's config parser would cut or misread."""
    if not value:
        raise LabError(f"{name} is empty")
    if value != value.strip() or any(ch in _FORBIDDEN for ch in value):
        raise LabError(f"{name} must not contain spaces at the ends, quotes, backslashes, ';' or newlines")
    if len(value) < 12:
        raise LabError(f"{name} is too short (12 characters at least)")
    return value


def _kept(path: Path) -> str:
    """Read a generated secret, or create one (mode 600) on first use."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = _random.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def ami_secret(state_dir: Path, from_env: str = "") -> str:
    """$HOTLINE_AMI_SECRET if set, else the one kept in <state>/ami.secret."""
    if from_env:
        return check_secret("HOTLINE_AMI_SECRET", from_env)
    return _kept(state_dir / "ami.secret")


def ami_secret_file(state_dir: Path) -> Path:
    return state_dir / "ami.secret"


def agent_password(state_dir: Path, number: int, environ: Mapping[str, str] | None = None) -> str:
    """$HOTLINE_LAB_AGENT<N>_PASSWORD if set, else <state>/pjsip-agent<N>.secret."""
    env = os.environ if environ is None else environ
    name = f"HOTLINE_LAB_AGENT{number}_PASSWORD"
    if env.get(name):
        return check_secret(name, env[name])
    return _kept(state_dir / f"pjsip-agent{number}.secret")


def lab_ami_secret(state_dir: Path) -> str:
    """The lab tool's own AMI user (hotline-lab, on both PBXs): <state>/ami-lab.secret."""
    return _kept(state_dir / "ami-lab.secret")


def trunk_password(state_dir: Path) -> str:
    """The hotline's digest password at the lab carrier: <state>/pjsip-carrier.secret."""
    return _kept(state_dir / "pjsip-carrier.secret")


__all__ += ["ami_secret_file"]
