"""The chroot's Asterisk runs as a host user made for it, not a borrowed uid.

Debian's asterisk package creates an ``asterisk`` user inside the chroot with
the first free system uid *of the chroot*; on the host that number may belong
to another service (postgres, redis ...), so ``ps``, file ownership and any
per-uid limit on the host would attribute Asterisk to that service. The lab
therefore creates a dedicated host system user and group
(:data:`HOST_USER`, no home, no shell) with a uid/gid free both on the host and
in the chroot, and gives the chroot's ``asterisk`` user and group those same
numbers (its /etc/passwd and /etc/group edited, every file the old ids owned
inside the chroot chowned). Both nodes of the two-node lab and the lab carrier
run ``asterisk -U asterisk -G asterisk`` in the same chroot, so one migration
covers all three.

Idempotent: when the chroot's ids already match the host user's, nothing is
touched. Files are only walked on the chroot's own filesystem (never into the
bind-mounted /proc and /dev).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import procs
from .errors import LabError

__all__ = ["CHROOT_GROUP", "CHROOT_USER", "HOST_USER", "IdPlan", "ensure_dedicated_user", "entries",
           "pick_free_id", "plan_migration", "with_id"]

Report = Callable[[str], None]

#: the host user and group the chroot's Asterisk runs as
HOST_USER = "hotline-asterisk"
#: the user and group Debian's asterisk package made inside the chroot (``asterisk -U/-G``)
CHROOT_USER = CHROOT_GROUP = "asterisk"
#: system ids (Debian: SYS_UID_MIN..SYS_UID_MAX), searched from the top like useradd --system
SYSTEM_IDS = range(999, 99, -1)


def entries(text: str) -> dict[str, int]:
    """name → id of an /etc/passwd or /etc/group text (malformed lines skipped)."""
    found = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and fields[2].isdigit():
            found[fields[0]] = int(fields[2])
    return found


def with_id(text: str, name: str, new_id: int, new_gid: int | None = None) -> str:
    """The passwd (``new_gid`` given) or group text with ``name``'s id (and primary gid) replaced."""
    lines, changed = [], False
    for line in text.splitlines(keepends=True):
        fields = line.rstrip("\n").split(":")
        if fields[0] == name and len(fields) >= 3:
            fields[2] = str(new_id)
            if new_gid is not None and len(fields) >= 4:
                fields[3] = str(new_gid)
            line = ":".join(fields) + ("\n" if line.endswith("\n") else "")
            changed = True
        lines.append(line)
    if not changed:
        raise LabError(f"no entry {name!r} to renumber")
    return "".join(lines)


def pick_free_id(*taken: Iterable[int], candidates: Iterable[int] = SYSTEM_IDS) -> int:
    """The first candidate id in none of the ``taken`` sets (host's and chroot's)."""
    used = set().union(*(set(ids) for ids in taken))
    for candidate in candidates:
        if candidate not in used:
            return candidate
    raise LabError("no free system id on both the host and the chroot")


@dataclass(frozen=True)
class IdPlan:
    """What a migration does: the chroot's asterisk ids from ``old`` to ``new`` (uid, gid)."""

    old: tuple[int, int]
    new: tuple[int, int]

    @property
    def needed(self) -> bool:
        return self.old != self.new


def plan_migration(chroot_passwd: str, chroot_group: str, host_ids: tuple[int, int]) -> IdPlan:
    """Refuses when the host user's ids belong to another user or group inside the chroot."""
    users, groups = entries(chroot_passwd), entries(chroot_group)
    if CHROOT_USER not in users or CHROOT_GROUP not in groups:
        raise LabError(f"no user/group {CHROOT_USER!r} in the chroot (is asterisk installed?)")
    uid, gid = host_ids
    clash = [f"uid {uid} ({name})" for name, value in users.items() if value == uid and name != CHROOT_USER]
    clash += [f"gid {gid} ({name})" for name, value in groups.items() if value == gid and name != CHROOT_GROUP]
    if clash:
        raise LabError(f"host user {HOST_USER}'s ids are taken inside the chroot: {', '.join(clash)}")
    return IdPlan((users[CHROOT_USER], groups[CHROOT_GROUP]), host_ids)


def ensure_host_user(chroot_passwd: str, chroot_group: str, report: Report) -> tuple[int, int]:
    """The host user's (uid, gid); created (system, no home, nologin) with ids free on both sides."""
    try:
        entry = pwd.getpwnam(HOST_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    try:
        gid = grp.getgrnam(HOST_USER).gr_gid
    except KeyError:
        gid = pick_free_id((g.gr_gid for g in grp.getgrall()), entries(chroot_group).values())
        procs.run(["groupadd", "--system", "--gid", str(gid), HOST_USER], timeout=30)
    uid = pick_free_id((p.pw_uid for p in pwd.getpwall()), entries(chroot_passwd).values(),
                       candidates=[gid, *SYSTEM_IDS])
    procs.run(["useradd", "--system", "--uid", str(uid), "--gid", HOST_USER, "--no-create-home",
               "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
               "--comment", "Asterisk of the hotline lab (chroot)", HOST_USER], timeout=30)
    report(f"lab user: created host system user {HOST_USER} (uid {uid}, gid {gid}) for the chroot's Asterisk")
    return uid, gid


def chown_tree(root: Path, plan: IdPlan) -> int:
    """Every file on the chroot's filesystem owned by an old id gets the new one; the count."""
    (old_uid, old_gid), (new_uid, new_gid) = plan.old, plan.new
    device = root.stat().st_dev
    changed = 0
    for directory, dirs, files in os.walk(root):
        # never cross into another filesystem (the bind-mounted /proc and /dev of a running lab)
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(directory, d)).st_dev == device]
        for name in (".", *dirs, *files):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if name == "." and directory != str(root):
                continue  # each directory is handled once, as an entry of its parent
            if st.st_uid != old_uid and st.st_gid != old_gid:
                continue
            uid = new_uid if st.st_uid == old_uid else -1
            gid = new_gid if st.st_gid == old_gid else -1
            os.lchown(path, uid, gid)
            changed += 1
    return changed


def ensure_dedicated_user(root: Path, report: Report) -> IdPlan:
    """Create the host user if needed and renumber the chroot's asterisk user to it (idempotent)."""
    passwd, group = root / "etc" / "passwd", root / "etc" / "group"
    host_ids = ensure_host_user(passwd.read_text(), group.read_text(), report)
    plan = plan_migration(passwd.read_text(), group.read_text(), host_ids)
    if not plan.needed:
        return plan
    # an Asterisk still running under the old uid would lose its own files: stop it first
    for pid in procs.pids_in_root(root, "asterisk"):
        report(f"lab user: stopping Asterisk (pid {pid}) before renumbering its user")
        procs.stop_pid(pid)
    # files first, the user last: a run cut short is finished by the next one (ids still differ)
    count = chown_tree(root, plan)
    _replace(passwd, with_id(passwd.read_text(), CHROOT_USER, plan.new[0], plan.new[1]))
    _replace(group, with_id(group.read_text(), CHROOT_GROUP, plan.new[1]))
    report(f"lab user: chroot user {CHROOT_USER} uid/gid {plan.old[0]}/{plan.old[1]} -> "
           f"{plan.new[0]}/{plan.new[1]} ({HOST_USER}); {count} file(s) re-owned")
    return plan


def _replace(path: Path, text: str) -> None:
    """Write next to the file and rename over it (a crash leaves the old or the new file)."""
    mode = path.stat().st_mode & 0o7777
    tmp = path.with_name(path.name + ".hotline-lab")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
