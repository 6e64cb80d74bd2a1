"""Our own Python services as lab subprocesses: the gateway (``python -m gateway
run``) and the ASR worker (``python -m asr worker``).

Each is started in its own session with stdout/stderr appended to a log in the
lab's state directory, recorded by pid, considered up once its health URL
answers 200, and stopped by that pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import procs
from .errors import LabError

__all__ = ["AsrWorkerProcess", "GatewayProcess", "ServiceProcess"]

Report = Callable[[str], None]


class ServiceProcess:
    """One long-running Python service of this repository, managed by pid."""

    #: the service's name in reports, pid and log file names
    name = "service"
    #: ``python -m MODULE ARGS...``
    command: tuple[str, ...] = ()
    #: seconds a SIGTERM may take before SIGKILL
    term_timeout = 10.0

    def __init__(
        self,
        python: str,
        repo_root: Path,
        state_dir: Path,
        healthz_url: str,
        environment: Mapping[str, str],
        name: str | None = None,
    ) -> None:
        if name is not None:
            #: several of one service (the several-node lab's gateway2, asr-worker2)
            self.name = name
        self.python = python
        self.repo_root = repo_root
        self.state_dir = state_dir
        self.healthz_url = healthz_url
        self.environment = dict(environment)
        self.pid_file = state_dir / f"{self.name}.pid"
        self.log_file = state_dir / f"{self.name}.log"
        self._child: subprocess.Popen | None = None

    def importable(self) -> bool:
        """Can the lab's Python import the service's module?"""
        module = self.command[1]
        result = procs.run([self.python, "-c", f"import {module}"], timeout=60, check=False)
        return result.returncode == 0

    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        if pid is None or not procs.pid_alive(pid):
            return None
        args = procs.process_cmdline(pid)
        return pid if all(word in args for word in self.command[1:]) else None

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(self.healthz_url, timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(
        self,
        report: Report,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
        environment: Mapping[str, str] | None = None,
    ) -> int:
        """Start unless already running and healthy; ``environment`` adds to the configured one."""
        current = self.pid()
        if current is not None and self.healthy():
            report(f"{self.name}: already running (pid {current}), {self.healthz_url} ok")
            return current
        if current is not None:
            report(f"{self.name}: pid {current} does not answer {self.healthz_url}; restarting it")
            procs.stop_pid(current, self.term_timeout)
        procs.remove_pid(self.pid_file)
        if not self.importable():
            raise LabError(
                f"{self.name}: `import {self.command[1]}` fails with {self.python}; "
                "install the project (pip install -e .)"
            )
        if self.healthy():
            raise LabError(f"something else already answers {self.healthz_url}; stop it or change its port")
        env = {**os.environ, **self.environment, **(environment or {})}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as log, open("/dev/null", "rb") as null:
            log.write(f"\n--- hotline-lab: starting {self.name} at {time.strftime('%F %T')}\n")
            log.flush()
            self._child = subprocess.Popen(
                [self.python, *self.command, *extra_args],
                cwd=self.repo_root,
                env=env,
                stdin=null,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid = self._child.pid
        procs.write_pid(self.pid_file, pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                procs.remove_pid(self.pid_file)
                raise LabError(f"{self.name} exited with code {self._child.returncode}:\n{self.log_tail()}")
            if self.healthy():
                report(f"{self.name}: started (pid {pid}), {self.healthz_url} ok, log {self.log_file}")
                return pid
            time.sleep(0.2)
        raise LabError(f"{self.name} did not answer {self.healthz_url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, report: Report) -> None:
        pid = self.pid()
        if pid is None:
            procs.remove_pid(self.pid_file)
            return
        outcome = procs.stop_pid(pid, self.term_timeout)
        self.reap()
        procs.remove_pid(self.pid_file)
        report(f"{self.name}: stopped (pid {pid}, {outcome})")

    def reap(self) -> None:
        """Collect our child's exit status (after a stop or a kill)."""
        if self._child is not None:
            self._child.poll()
            if self._child.returncode is not None:
                self._child = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class GatewayProcess(ServiceProcess):
    name = "gateway"
    command = ("-m", "gateway", "run")


class AsrWorkerProcess(ServiceProcess):
    """One ``hotline-asr worker`` consuming the IVR's voice-message jobs.

    It needs a Vosk model (``HOTLINE_ASR_MODEL_PATH`` in its environment); it
    reads recordings through the chroot (``HOTLINE_ASR_RECORDINGS_ROOT``).
    """

    name = "asr-worker"
    command = ("-m", "asr", "worker")
    #: SIGTERM lets the current job finish for shutdown_grace seconds (5 in the lab)
    term_timeout = 15.0

    def __init__(self, *args, model_path: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model_path = model_path

    def available(self) -> bool:
        return bool(self.model_path) and Path(self.model_path).is_dir()
