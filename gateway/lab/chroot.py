"""The Debian sid root that holds Asterisk 22: build once, reuse, mount.

Built with ``debootstrap --variant=minbase --include=asterisk,asterisk-modules``
into ``<root>.tmp`` and renamed into place only when complete, so a crashed
build never looks like a usable root. /proc and /dev are bind-mounted while
the lab runs; every mount is checked against /proc/mounts first.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from . import labuser, procs
from .errors import LabError

__all__ = ["Chroot"]

Report = Callable[[str], None]

BUILD_TIMEOUT = 1800.0
BIND_MOUNTS = ("proc", "dev")


#: Debian packages of the lab root: Asterisk, and Python for agi_scripts/ (pyst2 is copied in)
PACKAGES = ("asterisk", "asterisk-modules", "python3", "python3-redis", "python3-six")


def _unescape_mount_path(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
            continue
        out.append(field[i])
        i += 1
    return "".join(out)


def mount_points(mounts_file: Path = Path("/proc/mounts")) -> list[str]:
    """Every mount point, in mount order (a path may appear more than once)."""
    points = []
    for line in mounts_file.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            points.append(_unescape_mount_path(fields[1]))
    return points


class Chroot:
    def __init__(self, root: Path, mirror: str = "http://deb.debian.org/debian", suite: str = "sid") -> None:
        self.root = root.resolve() if root.exists() else root.absolute()
        self.mirror = mirror
        self.suite = suite

    # -- build ------------------------------------------------------------------
    @property
    def asterisk_binary(self) -> Path:
        return self.root / "usr" / "sbin" / "asterisk"

    def exists(self) -> bool:
        return self.asterisk_binary.exists()

    def ensure_built(self, report: Report) -> None:
        """Build the root if missing; either way its Asterisk runs as the lab's own host user."""
        self._build(report)
        labuser.ensure_dedicated_user(self.root, report)

    def _build(self, report: Report) -> None:
        if self.exists():
            report(f"chroot: reusing {self.root}")
            return
        if self.root.exists() and any(self.root.iterdir()):
            raise LabError(
                f"{self.root} exists but has no usr/sbin/asterisk; move it away (check it has no "
                "mounts left: grep asterisk-root /proc/mounts) and run `hotline-lab up` again"
            )
        self._ensure_debootstrap(report)
        tmp = self.root.with_name(self.root.name + ".tmp")
        if tmp.exists():
            self._remove_tree(tmp, report)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        report(f"chroot: debootstrap {self.suite} with asterisk into {tmp} (a few minutes)")
        procs.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                self.suite,
                str(tmp),
                self.mirror,
            ],
            timeout=BUILD_TIMEOUT,
        )
        if not (tmp / "usr" / "sbin" / "asterisk").exists():
            raise LabError(f"debootstrap finished but {tmp}/usr/sbin/asterisk is missing")
        if self.root.exists():
            self.root.rmdir()  # empty, checked above
        tmp.rename(self.root)
        report(f"chroot: built {self.root} ({self.version()})")

    def ensure_packages(self, report: Report) -> None:
        """Add what an older root lacks (python3 for the classic AGI scripts); needs /proc mounted."""
        wanted = ("redis", "six.py")
        if (self.root / "usr" / "bin" / "python3").exists() and all(
            (self.root / "usr/lib/python3/dist-packages" / name).exists() for name in wanted
        ):
            return
        report("chroot: installing python3, python3-redis, python3-six for the AGI safety-net scripts (pyst2)")
        # the mirror may serve a snapshot whose Release file has expired
        self.run(["apt-get", "-o", "Acquire::Check-Valid-Until=false", "update", "-q"], timeout=BUILD_TIMEOUT)
        self.run(
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends",
             "python3", "python3-redis", "python3-six"],
            timeout=BUILD_TIMEOUT,
        )

    def _ensure_debootstrap(self, report: Report) -> None:
        if shutil.which("debootstrap"):
            return
        report("chroot: installing debootstrap (apt-get)")
        procs.run(["apt-get", "install", "-y", "debootstrap"], timeout=600)

    def _remove_tree(self, path: Path, report: Report) -> None:
        """Remove a failed build, never while anything is mounted inside it."""
        for point in reversed(self.mounts_under(path)):
            report(f"chroot: unmounting stale {point}")
            self._umount(point)
        if self.mounts_under(path):
            raise LabError(f"{path} still has mounts; not removing it")
        shutil.rmtree(path)

    def version(self) -> str:
        result = self.run(["asterisk", "-V"], timeout=30, check=False)
        return result.stdout.strip() or result.stderr.strip()

    # -- mounts -------------------------------------------------------------------
    def mounts_under(self, path: Path | None = None) -> list[str]:
        base = str((path or self.root).absolute())
        return [p for p in mount_points() if p == base or p.startswith(base + "/")]

    def mount_count(self, name: str) -> int:
        target = str(self.root / name)
        return sum(1 for p in mount_points() if p == target)

    def mount(self, report: Report) -> None:
        for name in BIND_MOUNTS:
            target = self.root / name
            count = self.mount_count(name)
            # a crashed run may have stacked several mounts on one point
            while count > 1:
                report(f"chroot: removing stacked mount {target}")
                self._umount(str(target))
                count -= 1
            if count == 1:
                continue
            target.mkdir(exist_ok=True)
            procs.run(["mount", "--bind", f"/{name}", str(target)], timeout=30)
            report(f"chroot: mounted /{name} on {target}")

    def unmount(self, report: Report) -> None:
        for name in reversed(BIND_MOUNTS):
            target = str(self.root / name)
            while self.mount_count(name):
                self._umount(target)
                report(f"chroot: unmounted {target}")

    def _umount(self, target: str) -> None:
        result = procs.run(["umount", target], timeout=30, check=False)
        if result.returncode != 0:
            # busy (a process still has a file open there): detach lazily
            procs.run(["umount", "-l", target], timeout=30)

    def mounted(self) -> bool:
        return all(self.mount_count(name) >= 1 for name in BIND_MOUNTS)

    # -- commands -----------------------------------------------------------------
    def run(self, cmd: list[str], timeout: float, check: bool = True):
        return procs.run(["chroot", str(self.root), *cmd], timeout=timeout, check=check)

    def ids(self, user: str, group: str) -> tuple[int, int]:
        """uid/gid of a user and group inside the chroot (its own /etc/passwd)."""
        uid = gid = None
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                uid = int(fields[2])
        for line in (self.root / "etc" / "group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                gid = int(fields[2])
        if uid is None or gid is None:
            raise LabError(f"no user {user!r} / group {group!r} in {self.root}/etc (is asterisk installed?)")
        return uid, gid

    def path(self, inside: str) -> Path:
        """Host path of a path inside the chroot."""
        return self.root / inside.lstrip("/")
