"""Small process helpers: commands with timeouts, pid files, stopping by pid.

Processes are only ever signalled by a pid the lab recorded itself (or found
running inside the lab's own chroot), never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import LabError

__all__ = [
    "pid_alive",
    "read_pid",
    "remove_pid",
    "run",
    "stop_pid",
    "wait_pid_gone",
    "write_pid",
]


def run(
    cmd: Sequence[str],
    timeout: float,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and fail with a readable message."""
    try:
        result = subprocess.run(
            list(cmd),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise LabError(f"command not found: {cmd[0]}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-3000:]
        raise LabError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{detail}")
    return result


def pid_alive(pid: int | None) -> bool:
    """True if the process exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return False
    # state is the field after the ")" that closes the command name
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def remove_pid(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def wait_pid_gone(pid: int, timeout: float, reap: subprocess.Popen | None = None) -> bool:
    """Wait until ``pid`` has exited; reap it if it is our child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reap is not None:
            reap.poll()
        else:
            _try_reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def _try_reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pid(pid: int, term_timeout: float = 10.0, kill_timeout: float = 5.0) -> str:
    """SIGTERM, then SIGKILL; returns how the process ended."""
    if not pid_alive(pid):
        return "not running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    if wait_pid_gone(pid, term_timeout):
        return "terminated"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "terminated"
    if wait_pid_gone(pid, kill_timeout):
        return "killed"
    raise LabError(f"process {pid} survived SIGKILL")


def process_root(pid: int) -> str | None:
    """The root directory of a process (its chroot), or None."""
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def pids_in_root(root: Path, name: str) -> list[int]:
    """Pids of processes called ``name`` whose root directory is ``root``."""
    wanted = str(root.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm != name or not pid_alive(pid):
            continue
        if process_root(pid) == wanted:
            found.append(pid)
    return sorted(found)


__all__ += ["pids_in_root", "process_cmdline", "process_root"]
