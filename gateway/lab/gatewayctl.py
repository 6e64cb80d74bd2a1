"""The gateway (``python -m gateway run``) as a lab subprocess."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from . import procs
from .errors import LabError

__all__ = ["GatewayProcess"]

Report = Callable[[str], None]


class GatewayProcess:
    def __init__(
        self,
        python: str,
        repo_root: Path,
        state_dir: Path,
        healthz_url: str,
        environment: Mapping[str, str],
    ) -> None:
        self.python = python
        self.repo_root = repo_root
        self.state_dir = state_dir
        self.healthz_url = healthz_url
        self.environment = dict(environment)
        self.pid_file = state_dir / "gateway.pid"
        self.log_file = state_dir / "gateway.log"
        self._child: subprocess.Popen | None = None

    def importable(self) -> bool:
        """Can the lab's Python import the gateway's composition root?"""
        result = procs.run([self.python, "-c", "import gateway.app"], timeout=60, check=False)
        return result.returncode == 0

    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        if pid is None or not procs.pid_alive(pid):
            return None
        args = procs.process_cmdline(pid)
        return pid if "gateway" in args and "run" in args else None

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(self.healthz_url, timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, report: Report, extra_args: tuple[str, ...] = (), timeout: float = 30.0) -> int:
        current = self.pid()
        if current is not None and self.healthy():
            report(f"gateway: already running (pid {current}), {self.healthz_url} ok")
            return current
        if current is not None:
            report(f"gateway: pid {current} does not answer {self.healthz_url}; restarting it")
            procs.stop_pid(current)
        procs.remove_pid(self.pid_file)
        if not self.importable():
            raise LabError(
                f"the gateway is not importable with {self.python} (`import gateway.app` fails); "
                "install the project (pip install -e .) or run `hotline-lab up --no-gateway`"
            )
        if self.healthy():
            raise LabError(f"something else already answers {self.healthz_url}; stop it or change HOTLINE_HTTP_PORT")
        env = {**os.environ, **self.environment}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as log, open("/dev/null", "rb") as null:
            log.write(f"\n--- hotline-lab: starting the gateway at {time.strftime('%F %T')}\n")
            log.flush()
            self._child = subprocess.Popen(
                [self.python, "-m", "gateway", "run", *extra_args],
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
                raise LabError(f"the gateway exited with code {self._child.returncode}:\n{self.log_tail()}")
            if self.healthy():
                report(f"gateway: started (pid {pid}), {self.healthz_url} ok, log {self.log_file}")
                return pid
            time.sleep(0.2)
        raise LabError(f"the gateway did not answer {self.healthz_url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, report: Report) -> None:
        pid = self.pid()
        if pid is None:
            procs.remove_pid(self.pid_file)
            return
        outcome = procs.stop_pid(pid)
        if self._child is not None:
            self._child.poll()
            self._child = None
        procs.remove_pid(self.pid_file)
        report(f"gateway: stopped (pid {pid}, {outcome})")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
