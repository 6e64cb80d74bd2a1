"""Install asterisk_conf/ into the chroot's /etc/asterisk, with the lab's
generated files (secrets, globals, queue members).

The Debian sample configuration is replaced wholesale (kept once, for
reference, in /etc/asterisk.debian-dist) so only our files load. The new
directory is assembled next to the old one and swapped in.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .chroot import Chroot
from .errors import LabError

__all__ = ["PJSIP_AGENTS", "ConfigInstaller", "LabConfigValues"]

Report = Callable[[str], None]

MARKER = ".hotline-lab"
#: the PJSIP agent endpoints of pjsip.conf (agent1..agent3)
PJSIP_AGENTS = (1, 2, 3)


@dataclass(frozen=True)
class LabConfigValues:
    ami_secret: str
    agent_passwords: dict[int, str]
    agi_url: str
    lab_agents: int
    redis_url: str = "redis://127.0.0.1:6379/0"


def render_generated(values: LabConfigValues) -> dict[str, str]:
    """The files the lab adds to asterisk_conf/ (relative path → content)."""
    files = {
        "hotline-secrets/ami-gateway.conf": f"; written by hotline-lab\nsecret = {values.ami_secret}\n",
        "hotline-globals.conf": (
            "; written by hotline-lab: lab overrides of extensions.conf [globals]\n"
            "HOTLINE_LAB = 1\n"
            f"HOTLINE_AGI = {values.agi_url}\n"
            f"HOTLINE_MISSED_REDIS = {values.redis_url}\n"
        ),
        "hotline-queue-members.conf": "; written by hotline-lab: scripted agents (extensions.conf [lab-agent])\n"
        + "".join(f"member => Local/agent{n}@lab-agent,0,agent{n}\n" for n in range(1, values.lab_agents + 1)),
    }
    for number, password in sorted(values.agent_passwords.items()):
        files[f"hotline-secrets/pjsip-agent{number}.conf"] = f"; written by hotline-lab\npassword = {password}\n"
    return files


class ConfigInstaller:
    def __init__(self, chroot: Chroot, conf_dir: Path) -> None:
        self.chroot = chroot
        self.conf_dir = conf_dir

    @property
    def etc(self) -> Path:
        return self.chroot.path("/etc/asterisk")

    def source_files(self) -> list[Path]:
        files = sorted(self.conf_dir.glob("*.conf"))
        if not files:
            raise LabError(f"no *.conf in {self.conf_dir}")
        return files

    def install(self, values: LabConfigValues, report: Report) -> None:
        uid, gid = self.chroot.ids("asterisk", "asterisk")
        self._keep_debian_samples(report)
        staging = self.etc.with_name("asterisk.new")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o750)
        (staging / MARKER).write_text("installed by hotline-lab from asterisk_conf/; edit the repository, not here\n")
        for source in self.source_files():
            shutil.copyfile(source, staging / source.name)
        secrets_dir = staging / "hotline-secrets"
        secrets_dir.mkdir(mode=0o750)
        for relative, content in render_generated(values).items():
            target = staging / relative
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
        # root owns the files, Asterisk (group) may read them, nobody else
        for path in [staging, *staging.rglob("*")]:
            os.chown(path, 0, gid)
            os.chmod(path, 0o750 if path.is_dir() else 0o640)
        old = self.etc.with_name("asterisk.old")
        if old.exists():
            shutil.rmtree(old)
        if self.etc.exists():
            self.etc.rename(old)
        staging.rename(self.etc)
        if old.exists():
            shutil.rmtree(old)
        report(f"config: installed {len(self.source_files())} files from {self.conf_dir} into {self.etc}")
        self._runtime_dirs(uid, gid)

    def _keep_debian_samples(self, report: Report) -> None:
        if not self.etc.exists() or (self.etc / MARKER).exists():
            return
        dist = self.etc.with_name("asterisk.debian-dist")
        if dist.exists():
            # a sample set is already kept; this one is a leftover of an
            # interrupted swap or a manual copy
            shutil.rmtree(self.etc)
            return
        self.etc.rename(dist)
        report(f"config: Debian's sample configuration moved to {dist}")

    def _runtime_dirs(self, uid: int, gid: int) -> None:
        """/run/asterisk is made by systemd-tmpfiles on a real system."""
        # /var/spool/asterisk/hotline/messages: the IVR's voice messages (RECORD FILE
        # does not create directories)
        for inside in ("/run/asterisk", "/var/log/asterisk", "/var/lib/asterisk", "/var/spool/asterisk",
                       "/var/spool/asterisk/hotline", "/var/spool/asterisk/hotline/messages"):
            path = self.chroot.path(inside)
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)


AGI_BIN = "/usr/share/asterisk/agi-bin/hotline"


def install_agi_scripts(chroot: Chroot, scripts_dir: Path, report: Report) -> int:
    """agi_scripts/*.py and pyst2's ``asterisk`` package into the root's agi-bin.

    pyst2 is not packaged by Debian; it is pure Python, so the copy the gateway's
    virtualenv has is placed beside the scripts (the script's folder is on
    sys.path when Asterisk runs it).
    """
    import asterisk  # pyst2, a dependency of this project

    target = chroot.path(AGI_BIN)
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for script in sorted(scripts_dir.glob("*.py")):
        shutil.copyfile(script, target / script.name)
        os.chmod(target / script.name, 0o755)
        count += 1
    package = Path(asterisk.__file__).resolve().parent
    destination = target / "asterisk"
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(package, destination, ignore=shutil.ignore_patterns("__pycache__"))
    report(f"agi: {count} safety-net script(s) and pyst2 in {AGI_BIN}")
    return count
