"""Install asterisk_conf/ into the chroot's /etc/asterisk, with the lab's
generated files (secrets, globals, queue members, the carrier trunk), and
asterisk_conf/lab-carrier/ into /etc/asterisk-carrier for the lab carrier.

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
from .sipagents import queue_members

__all__ = ["CARRIER_ETC", "PJSIP_AGENTS", "ConfigInstaller", "LabConfigValues", "render_carrier", "render_generated"]

Report = Callable[[str], None]

MARKER = ".hotline-lab"
#: the PJSIP agent endpoints of pjsip.conf (agent1..agent3)
PJSIP_AGENTS = (1, 2, 3)
#: the lab carrier's configuration directory inside the chroot
CARRIER_ETC = "/etc/asterisk-carrier"
#: the hotline's account at the carrier (pjsip-carrier.conf.example uses the same)
TRUNK_USER = "02112345"


@dataclass(frozen=True)
class LabConfigValues:
    ami_secret: str
    agent_passwords: dict[int, str]
    agi_url: str
    lab_agents: int
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: the lab tool's own AMI user (hotline-lab) on both PBXs
    lab_ami_user: str = "hotline-lab"
    lab_ami_secret: str = ""
    #: the hotline's digest password at the lab carrier
    trunk_password: str = ""
    carrier_host: str = "127.0.0.2"
    carrier_sip_port: int = 5070
    trunk_expiration: int = 30
    trunk_qualify: int = 5
    trunk_retry: int = 5
    #: several nodes: the hotline does not register at the carrier (the carrier sends
    #: to the SIP front door); these addresses are also the trunk (the front door)
    trunk_register: bool = True
    trunk_extra_match: tuple[str, ...] = ()
    #: a second gateway, tried when HOTLINE_AGI cannot be reached (extensions.conf)
    agi_backup_url: str = ""
    #: queue members PJSIP/agentN (registered SIPp phones, `up --sip-agents`) instead of Local/agentN@lab-agent
    sip_agents: bool = False


def _lab_ami_user(user: str, secret: str) -> str:
    return (
        "; written by hotline-lab: the lab tool's and the tests' own AMI user (lab only)\n"
        f"[{user}]\n"
        f"secret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\n"
        "displayconnects = no\n"
        "writetimeout = 5000\n"
        "; every event: the lab follows calls through Newexten/VarSet/OriginateResponse ...\n"
        "read = all\n"
        "; originate (lab calls), call/agent (hang up, pause in tests), system (PJSIP status)\n"
        "write = originate,reporting,call,agent,user,system\n"
    )


def render_carrier_trunk(values: LabConfigValues) -> str:
    """pjsip-carrier.conf for the lab: the trunk instantiated from pjsip.conf's templates."""
    host, port = values.carrier_host, values.carrier_sip_port
    return f"""; written by hotline-lab: the carrier trunk towards the lab carrier
; ({host}:{port}, asterisk_conf/lab-carrier/). Same templates as production
; (see pjsip-carrier.conf.example); lab-only values are marked.

[carrier](carrier-endpoint)
outbound_auth = carrier
aors = carrier
from_user = {TRUNK_USER}
from_domain = {host}

[carrier](carrier-aor)
contact = sip:{host}:{port}
; lab: qualify every {values.trunk_qualify} s (production template: 30 s)
qualify_frequency = {values.trunk_qualify}

[carrier](carrier-auth)
username = {TRUNK_USER}
#include "hotline-secrets/pjsip-carrier.conf"

{_registration(values)}
[carrier](carrier-identify)
endpoint = carrier
match = {",".join((host, *values.trunk_extra_match))}
"""


def _registration(values: LabConfigValues) -> str:
    if not values.trunk_register:
        return "; several nodes: no registration, the carrier sends to the SIP front door\n"
    host, port = values.carrier_host, values.carrier_sip_port
    return f"""[carrier](carrier-registration)
outbound_auth = carrier
server_uri = sip:{host}:{port}
client_uri = sip:{TRUNK_USER}@{host}:{port}
contact_user = 12345
endpoint = carrier
; lab: register for {values.trunk_expiration} s and retry every {values.trunk_retry} s (production: 3600 / 60)
expiration = {values.trunk_expiration}
retry_interval = {values.trunk_retry}
forbidden_retry_interval = {values.trunk_retry}
fatal_retry_interval = {values.trunk_retry}
"""


def render_carrier(values: LabConfigValues) -> dict[str, str]:
    """The files the lab adds to asterisk_conf/lab-carrier/ (relative path → content)."""
    return {
        "carrier-secrets/pjsip-hotline.conf": f"; written by hotline-lab\npassword = {values.trunk_password}\n",
        "carrier-secrets/ami-lab.conf": _lab_ami_user(values.lab_ami_user, values.lab_ami_secret),
    }


def render_generated(values: LabConfigValues) -> dict[str, str]:
    """The files the lab adds to asterisk_conf/ (relative path → content)."""
    files = {
        "hotline-secrets/ami-gateway.conf": f"; written by hotline-lab\nsecret = {values.ami_secret}\n",
        "hotline-globals.conf": (
            "; written by hotline-lab: lab overrides of extensions.conf [globals]\n"
            "HOTLINE_LAB = 1\n"
            f"HOTLINE_AGI = {values.agi_url}\n"
            f"HOTLINE_MISSED_REDIS = {values.redis_url}\n"
            + (f"HOTLINE_AGI_BACKUP = {values.agi_backup_url}\n" if values.agi_backup_url else "")
        ),
        "hotline-queue-members.conf": queue_members(values.lab_agents, values.sip_agents),
    }
    for number, password in sorted(values.agent_passwords.items()):
        files[f"hotline-secrets/pjsip-agent{number}.conf"] = f"; written by hotline-lab\npassword = {password}\n"
    if values.lab_ami_secret:
        files["hotline-secrets/ami-lab.conf"] = _lab_ami_user(values.lab_ami_user, values.lab_ami_secret)
    if values.trunk_password:
        files["pjsip-carrier.conf"] = render_carrier_trunk(values)
        files["hotline-secrets/pjsip-carrier.conf"] = f"; written by hotline-lab\npassword = {values.trunk_password}\n"
    return files


class ConfigInstaller:
    """One PBX's configuration: the main hotline (default) or the lab carrier."""

    def __init__(
        self,
        chroot: Chroot,
        conf_dir: Path,
        etc: str = "/etc/asterisk",
        render: Callable[[LabConfigValues], dict[str, str]] = render_generated,
        runtime_dirs: tuple[str, ...] | None = None,
        secrets_dir: str = "hotline-secrets",
        keep_debian_samples: bool = True,
    ) -> None:
        self.chroot = chroot
        self.conf_dir = conf_dir
        self.etc_inside = etc
        self.render = render
        self.runtime_dirs = runtime_dirs if runtime_dirs is not None else RUNTIME_DIRS
        self.secrets_dir = secrets_dir
        self.keep_debian_samples = keep_debian_samples

    @property
    def etc(self) -> Path:
        return self.chroot.path(self.etc_inside)

    def source_files(self) -> list[Path]:
        files = sorted(self.conf_dir.glob("*.conf"))
        if not files:
            raise LabError(f"no *.conf in {self.conf_dir}")
        return files

    def install(self, values: LabConfigValues, report: Report) -> None:
        uid, gid = self.chroot.ids("asterisk", "asterisk")
        if self.keep_debian_samples:
            self._keep_debian_samples(report)
        staging = self.etc.with_name("asterisk.new")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o750)
        (staging / MARKER).write_text("installed by hotline-lab from asterisk_conf/; edit the repository, not here\n")
        for source in self.source_files():
            shutil.copyfile(source, staging / source.name)
        secrets_dir = staging / self.secrets_dir
        secrets_dir.mkdir(mode=0o750)
        for relative, content in self.render(values).items():
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
        for inside in self.runtime_dirs:
            path = self.chroot.path(inside)
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)


#: /var/spool/asterisk/hotline/messages: the IVR's voice messages (RECORD FILE
#: does not create directories)
RUNTIME_DIRS = ("/run/asterisk", "/var/log/asterisk", "/var/lib/asterisk", "/var/spool/asterisk",
                "/var/spool/asterisk/hotline", "/var/spool/asterisk/hotline/messages")
#: the lab carrier's own state (asterisk_conf/lab-carrier/asterisk.conf)
CARRIER_RUNTIME_DIRS = ("/run/asterisk-carrier", "/var/log/asterisk-carrier", "/var/lib/asterisk-carrier",
                        "/var/spool/asterisk-carrier", "/var/cache/asterisk-carrier")

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
