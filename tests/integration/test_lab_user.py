"""The lab's Asterisks (hotline and carrier) run as the lab's own host user (real lab, real processes)."""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

from gateway.lab import Lab
from gateway.lab.labuser import CHROOT_USER, HOST_USER, entries

#: the service users Debian creates for the packages on a lab host (any that exists must not be ours)
OTHER_SERVICES = ("postgres", "redis", "mysql", "rabbitmq", "mosquitto", "nats", "kamailio", "prometheus",
                  "messagebus", "www-data", "nobody", "daemon")


def _ids(pid: int) -> tuple[int, int]:
    """Real uid and gid of a process from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["Uid"][0]), int(fields["Gid"][0])


def test_asterisk_and_carrier_run_as_the_dedicated_host_user(lab: Lab) -> None:
    host = pwd.getpwnam(HOST_USER)
    assert host.pw_shell == "/usr/sbin/nologin"
    assert grp.getgrgid(host.pw_gid).gr_name == HOST_USER
    others = set()
    for name in OTHER_SERVICES:
        try:
            others.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            continue
    pids = {"asterisk": lab.asterisk.pid(), "carrier": lab.carrier.pid()}
    assert all(pids.values()), pids
    for name, pid in pids.items():
        uid, gid = _ids(pid)  # type: ignore[arg-type]
        assert pwd.getpwuid(uid).pw_name == HOST_USER, f"{name} (pid {pid}) runs as uid {uid}"
        assert grp.getgrgid(gid).gr_name == HOST_USER
        assert uid not in others
    # inside the chroot the same numbers are Asterisk's own user
    root = lab.chroot.root
    assert entries((root / "etc" / "passwd").read_text())[CHROOT_USER] == host.pw_uid
    assert entries((root / "etc" / "group").read_text())[CHROOT_USER] == host.pw_gid
    # and what Asterisk writes at run time belongs to it
    assert lab.chroot.path("/var/lib/asterisk").stat().st_uid == host.pw_uid
    assert lab.chroot.path("/var/lib/asterisk/astdb.sqlite3").stat().st_uid == host.pw_uid
