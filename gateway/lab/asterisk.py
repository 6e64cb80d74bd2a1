"""The real Asterisk 22 inside the chroot: start, wait, ask, stop.

Started as LAB.md says — ``chroot DIR asterisk -U asterisk -G asterisk -f``
with stdin from /dev/null (never ``-c``) and its console output in
<state>/<name>.log. The pid is recorded; "stale" Asterisk processes are
the ones running inside this chroot that the lab cannot talk to or did not
record (a crashed earlier run).

Two Asterisks share the chroot: the hotline's (Debian's default
/etc/asterisk/asterisk.conf) and the lab carrier (``-C
/etc/asterisk-carrier/asterisk.conf``, its own run/log/spool/AstDB
directories). Each object only ever sees, signals and talks to its own: a
daemon is the carrier's exactly when its command line names the carrier's
asterisk.conf.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import procs
from .chroot import Chroot
from .errors import LabError

__all__ = ["Asterisk", "error_lines"]

Report = Callable[[str], None]

_ERROR = re.compile(r"\bERROR\[\d+\]")


def error_lines(text: str) -> list[str]:
    """Asterisk log lines at ERROR level (``... ERROR[1234]: file.c:...``)."""
    return [line for line in text.splitlines() if _ERROR.search(line)]


class Asterisk:
    def __init__(
        self,
        chroot: Chroot,
        state_dir: Path,
        name: str = "asterisk",
        config_file: str | None = None,
        run_dir: str = "/run/asterisk",
        log_dir: str = "/var/log/asterisk",
    ) -> None:
        self.chroot = chroot
        self.state_dir = state_dir
        self.name = name
        #: asterisk.conf inside the chroot (None: the default /etc/asterisk/asterisk.conf)
        self.config_file = config_file
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.pid_file = state_dir / f"{name}.pid"
        self.log_file = state_dir / f"{name}.log"
        self._child: subprocess.Popen | None = None
        #: console output up to "fully booted" of the last start by this object
        self.boot_log: str = ""
        #: size of the messages log when this object last started Asterisk
        self.messages_offset: int = 0

    @property
    def messages_log(self) -> Path:
        return self.chroot.path(f"{self.log_dir}/messages")

    @property
    def queue_log(self) -> Path:
        return self.chroot.path(f"{self.log_dir}/queue_log")

    # -- state ------------------------------------------------------------------------
    def _command(self, *args: str) -> list[str]:
        """``asterisk [-C CONF] ARGS`` (inside the chroot)."""
        return ["asterisk", *(("-C", self.config_file) if self.config_file else ()), *args]

    def daemon_pids(self) -> list[int]:
        """This instance's Asterisk daemons inside the chroot (not `asterisk -rx` clients)."""
        pids = []
        for pid in procs.pids_in_root(self.chroot.root, "asterisk"):
            args = procs.process_cmdline(pid)
            if any(arg.startswith(("-r", "-R")) for arg in args[1:]):
                continue
            if _config_of(args) != self.config_file:
                continue
            pids.append(pid)
        return pids

    def pid(self) -> int | None:
        """The recorded pid, if that process is still our Asterisk."""
        pid = procs.read_pid(self.pid_file)
        if pid is not None and pid in self.daemon_pids():
            return pid
        return None

    def cli(self, command: str, timeout: float = 20.0) -> str:
        """Run one CLI command over the control socket; the output as text."""
        result = self.chroot.run(self._command("-rx", command), timeout=timeout, check=False)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise LabError(f"asterisk -rx {command!r} failed: {detail or 'exit ' + str(result.returncode)}")
        return result.stdout

    def responsive(self) -> bool:
        try:
            return "fully booted" in self.cli("core waitfullybooted", timeout=10)
        except LabError:
            return False

    def version(self) -> str:
        return self.cli("core show version").strip()

    def channel_count(self) -> str:
        return self.cli("core show channels count").strip()

    def messages_since_start(self) -> str:
        """The messages log written since this object last started Asterisk."""
        try:
            with open(self.messages_log, "rb") as handle:
                handle.seek(self.messages_offset)
                return handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- lifecycle -------------------------------------------------------------------
    def cleanup_stale(self, report: Report) -> None:
        """Stop Asterisk daemons in this chroot that are not our healthy one."""
        recorded = self.pid()
        healthy = recorded is not None and self.responsive()
        for pid in self.daemon_pids():
            if healthy and pid == recorded:
                continue
            report(f"{self.name}: stopping stale Asterisk (pid {pid}) left by an earlier run")
            procs.stop_pid(pid)
        if not healthy:
            procs.remove_pid(self.pid_file)
            ctl = self.chroot.path(f"{self.run_dir}/asterisk.ctl")
            if ctl.exists() and not self.daemon_pids():
                ctl.unlink()

    def start(self, report: Report, boot_timeout: float = 90.0) -> int:
        if self.pid() is not None and self.responsive():
            report(f"{self.name}: already running (pid {self.pid()})")
            return self.pid()  # type: ignore[return-value]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.messages_offset = self.messages_log.stat().st_size if self.messages_log.exists() else 0
        with open(self.log_file, "w") as log, open("/dev/null", "rb") as null:
            self._child = subprocess.Popen(
                ["chroot", str(self.chroot.root), *self._command("-U", "asterisk", "-G", "asterisk", "-f")],
                stdin=null,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid = self._child.pid
        procs.write_pid(self.pid_file, pid)
        report(f"{self.name}: started (pid {pid}), log {self.log_file}")
        self._wait_booted(pid, boot_timeout)
        self.boot_log = self._read_boot_log()
        report(f"{self.name}: fully booted ({self.version().split(' built')[0]})")
        return pid

    def _read_boot_log(self, timeout: float = 10.0) -> str:
        """The console log up to "Asterisk Ready".

        ``core waitfullybooted`` answers as soon as the boot flag is set, which can be
        before the console's "Asterisk Ready" line reaches the log file (stdout is a
        pipe, written by another thread): wait for that line rather than race it.
        """
        deadline = time.monotonic() + timeout
        text = self.log_file.read_text(errors="replace")
        while "Asterisk Ready" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = self.log_file.read_text(errors="replace")
        return text

    def _wait_booted(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child is not None:
                self._child.poll()
            if not procs.pid_alive(pid):
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
                raise LabError(f"Asterisk exited during start-up; last lines of {self.log_file}:\n{tail}")
            try:
                if "fully booted" in self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic())):
                    return
            except LabError:
                time.sleep(0.3)
        raise LabError(f"Asterisk did not finish booting within {timeout:.0f} s; see {self.log_file}")

    def reload(self, report: Report) -> None:
        # synchronous once Asterisk is fully booted (loader.c ast_module_reload)
        output = self.cli("core reload")
        if "didn't finish" in output:
            raise LabError(f"Asterisk is still busy with an earlier reload: {output.strip()}")
        report(f"{self.name}: configuration reloaded")

    def stop(self, report: Report) -> None:
        pids = self.daemon_pids()
        recorded = procs.read_pid(self.pid_file)
        if not pids:
            if recorded:
                report(f"{self.name}: not running (removing stale pid file)")
            procs.remove_pid(self.pid_file)
            return
        try:
            self.cli("core stop now", timeout=15)
        except LabError as exc:
            report(f"{self.name}: `core stop now` failed ({exc}); signalling")
        for pid in pids:
            reap = self._child if self._child is not None and self._child.pid == pid else None
            if procs.wait_pid_gone(pid, 15.0, reap=reap):
                report(f"{self.name}: stopped (pid {pid})")
            else:
                report(f"{self.name}: pid {pid} {procs.stop_pid(pid)}")
        if self._child is not None:
            self._child.poll()
            self._child = None
        procs.remove_pid(self.pid_file)


def _config_of(args: list[str]) -> str | None:
    """The ``-C FILE`` of an Asterisk command line (None: the default config)."""
    for index, arg in enumerate(args[1:], start=1):
        if arg == "-C" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("-C") and len(arg) > 2:
            return arg[2:]
    return None
