"""SIPp (Debian sip-tester) as the cluster tests' stand-ins for the carrier and the nodes,
on gateway.lab.sipp's command line and statistics parser.

* :class:`SippNode` — a UAS playing one Asterisk node (scenarios/node_*.xml) until it is
  killed; it logs every message, and :meth:`SippNode.invites` counts the calls (distinct
  Call-IDs of the INVITEs) it received.
* :func:`run_calls` — a UAC making a bounded number of calls; SIPp's own count of
  successful and failed calls (:class:`gateway.lab.sipp.SippResult`).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from gateway.lab.errors import LabError
from gateway.lab.kamailio import options_ping
from gateway.lab.sipp import SippFiles, SippResult, SippRun, build_command, run_sipp

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
#: a node's SIPp ends by itself after this long (s) should a test leave it behind
NODE_LIFETIME_S = 600

__all__ = ["SCENARIOS", "SippNode", "invites_in_message_log", "run_calls"]


def invites_in_message_log(text: str) -> set[str]:
    """Call-IDs of the INVITE requests a SIPp message log (-trace_msg) shows as received."""
    call_ids = set()
    for block in text.split("\n-----------------------------------------------"):
        head, _, message = block.partition("\n\n")
        if "message received" not in head or not message.startswith("INVITE "):
            continue
        for line in message.splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() in ("call-id", "i"):
                call_ids.add(value.strip())
                break
    return call_ids


class SippNode:
    """One SIPp UAS on ``host:port`` running ``scenario`` until killed."""

    def __init__(self, scenario: str, host: str, port: int, media_port: int, workdir: Path) -> None:
        # every dispatcher probe is a "call" of the UAS too: -m high enough never to end it
        self.run = SippRun(SCENARIOS / scenario, "", local_ip=host, local_port=port, media_port=media_port,
                           calls=1_000_000, timeout_s=NODE_LIFETIME_S, auto_answer=False)
        self.address = (host, port)
        self.workdir = workdir
        self.message_logs: list[Path] = []
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, after a kill) and wait until it answers OPTIONS."""
        rundir = self.workdir / f"run-{len(self.message_logs) + 1}"
        rundir.mkdir(parents=True)
        self.message_logs.append(rundir / "messages.log")
        files = SippFiles.in_dir(rundir)
        run = replace(self.run, extra_args=("-trace_msg", "-message_file", str(self.message_logs[-1])))
        with files.stderr.open("wb") as out:
            self._process = subprocess.Popen(build_command(run, files), cwd=rundir, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LabError(f"sipp node {self.address} exited with {self._process.returncode}; see {rundir}")
            if options_ping(self.address, self.address[0], 0.3) == 200:
                return
        self.kill()
        raise LabError(f"sipp node {self.address} did not answer OPTIONS within {timeout:.0f} s")

    def invites(self) -> int:
        """Calls (distinct INVITE Call-IDs) received over all runs of this node."""
        call_ids: set[str] = set()
        for log in self.message_logs:
            if log.exists():
                call_ids |= invites_in_message_log(log.read_text(errors="replace"))
        return len(call_ids)

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a word (a crashed Asterisk)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    stop = kill


def run_calls(scenario: str, target: tuple[str, int], source: str, calls: int, workdir: Path, *,
              media_port: int, rate: float = 10, limit: int | None = None, call_length_ms: int = 100,
              recv_timeout_ms: int = 5000, timeout_s: int = 60) -> SippResult:
    """``calls`` calls from ``source`` to ``target`` (the proxy), at most ``limit`` at a time."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = SippRun(SCENARIOS / scenario, f"{target[0]}:{target[1]}", local_ip=source, local_port=5070,
                  media_port=media_port, calls=calls, rate=rate, concurrency=limit, timeout_s=timeout_s,
                  auto_answer=False, extra_args=("-d", str(call_length_ms), "-recv_timeout", str(recv_timeout_ms)))
    return run_sipp(run, Path(tempfile.mkdtemp(prefix="uac-", dir=workdir)))
