"""Kamailio, the several-node lab's SIP front door (Debian's kamailio, kamailio/kamailio.cfg).

Runs in the foreground (``-DD -E``) of its own session as the ``kamailio`` user,
with its runtime directory, pid file and dispatcher list in the lab's state
directory, so it shares nothing with a system Kamailio. The configuration is
the repository's file as is; what differs per deployment comes in as ``-A``
pre-processor defines. ``dispatcher_state()`` reads the destinations' flags
with ``kamcmd dispatcher.list`` (A = active, I = inactive, P = probing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from . import procs
from .errors import LabError

__all__ = ["KamailioProcess", "dispatcher_list", "parse_dispatcher_list"]

Report = Callable[[str], None]


def dispatcher_list(destinations: Iterable[str], set_id: int = 1) -> str:
    """A dispatcher.list: one destination URI per line in set ``set_id``."""
    lines = ["# written by hotline-lab: setid destination flags priority attributes"]
    lines += [f"{set_id} {uri} 0 0" for uri in destinations]
    return "\n".join(lines) + "\n"


_DEST = re.compile(r"URI:\s*(\S+)")
_FLAGS = re.compile(r"FLAGS:\s*(\S+)")


def parse_dispatcher_list(text: str) -> dict[str, str]:
    """``kamcmd dispatcher.list`` output → {uri: flags} (``AP`` active+probing, ``IP`` inactive ...)."""
    state: dict[str, str] = {}
    uri = None
    for line in text.splitlines():
        match = _DEST.search(line)
        if match:
            uri = match.group(1)
            continue
        match = _FLAGS.search(line)
        if match and uri is not None:
            state[uri] = match.group(1)
            uri = None
    return state


class KamailioProcess:
    name = "kamailio"

    def __init__(
        self,
        config: Path,
        state_dir: Path,
        defines: Mapping[str, str],
        destinations: Iterable[str],
        user: str = "kamailio",
    ) -> None:
        self.config = config
        self.dir = state_dir / "kamailio"
        self.defines = dict(defines)
        self.destinations = list(destinations)
        self.user = user
        self.pid_file = self.dir / "kamailio.pid"
        self.log_file = state_dir / "kamailio.log"
        self.list_file = self.dir / "dispatcher.list"
        #: kamcmd's socket: kamailio.cfg loads ctl with its default, <runtime dir (-Y)>/kamailio_ctl
        self.control = self.dir / "kamailio_ctl"
        self._child: subprocess.Popen | None = None

    def command(self) -> list[str]:
        argv = ["kamailio", "-f", str(self.config), "-DD", "-E", "-P", str(self.pid_file),
                "-Y", str(self.dir), "-u", self.user, "-g", self.user]
        for name, value in {**self.defines, "DISPATCHER_LIST": f'"{self.list_file}"'}.items():
            argv += ["-A", f"{name}={value}"]
        return argv

    def check_config(self) -> None:
        """``kamailio -c``: the configuration parses with these defines."""
        self._prepare()
        result = procs.run([*self.command(), "-c"], timeout=30, check=False)
        if result.returncode != 0:
            raise LabError(f"kamailio -c failed:\n{(result.stderr or result.stdout)[-2000:]}")

    def _prepare(self) -> None:
        if shutil.which("kamailio") is None:
            raise LabError("kamailio is not installed (apt-get install kamailio kamailio-extra-modules)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.list_file.write_text(dispatcher_list(self.destinations))
        import pwd

        entry = pwd.getpwnam(self.user)
        os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.list_file, 0o644)

    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        if pid is None or not procs.pid_alive(pid):
            return None
        return pid if "kamailio" in " ".join(procs.process_cmdline(pid)) else None

    def start(self, report: Report, timeout: float = 20.0) -> int:
        current = self.pid()
        if current is not None:
            report(f"kamailio: already running (pid {current})")
            return current
        self._prepare()
        with open(self.log_file, "a") as log, open("/dev/null", "rb") as null:
            log.write(f"\n--- hotline-lab: starting kamailio at {time.strftime('%F %T')}\n")
            log.flush()
            self._child = subprocess.Popen(self.command(), stdin=null, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-25:])
                raise LabError(f"kamailio exited with code {self._child.returncode}:\n{tail}")
            if self.pid() is not None and self.dispatcher_state():
                report(f"kamailio: started (pid {self.pid()}), log {self.log_file}")
                return self.pid()  # type: ignore[return-value]
            time.sleep(0.2)
        raise LabError(f"kamailio did not start within {timeout:.0f} s; see {self.log_file}")

    def kamcmd(self, *args: str, timeout: float = 5.0) -> str:
        result = procs.run(["kamcmd", "-s", f"unix:{self.control}", *args], timeout=timeout, check=False)
        if result.returncode != 0:
            raise LabError(f"kamcmd {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def dispatcher_state(self) -> dict[str, str]:
        """{destination URI: flags}; empty when Kamailio does not answer."""
        try:
            return parse_dispatcher_list(self.kamcmd("dispatcher.list"))
        except LabError:
            return {}

    def set_state(self, uri: str, state: str) -> None:
        """``dispatcher.set_state``: ``ap`` active (probed), ``ip`` inactive, ``d`` admin-disabled
        (kept out of rotation whatever the probes say)."""
        self.kamcmd("dispatcher.set_state", state, "1", uri)

    def wait_active(self, uris: Iterable[str], timeout: float) -> dict[str, str]:
        """Until every one of ``uris`` is active (probed alive) in the dispatcher."""
        wanted = list(uris)
        deadline = time.monotonic() + timeout
        state = self.dispatcher_state()
        while not all(state.get(uri, "").startswith("A") for uri in wanted):
            if time.monotonic() > deadline:
                raise LabError(f"kamailio: destinations not active within {timeout:.0f} s: {state}")
            time.sleep(0.3)
            state = self.dispatcher_state()
        return state

    def stop(self, report: Report) -> None:
        pid = self.pid()
        if pid is None:
            procs.remove_pid(self.pid_file)
            return
        outcome = procs.stop_pid(pid, 5.0)
        if self._child is not None:
            self._child.poll()
            self._child = None
        procs.remove_pid(self.pid_file)
        report(f"kamailio: stopped (pid {pid}, {outcome})")
