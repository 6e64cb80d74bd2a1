"""SIPp (Debian sip-tester) as the cluster tests' stand-ins for the carrier and the nodes.

* :class:`SippNode` — a UAS playing one Asterisk node (scenarios/node_*.xml); it logs
  every message, and :meth:`SippNode.invites` counts the calls (distinct Call-IDs of the
  INVITEs) it received.
* :func:`run_calls` — a UAC making a bounded number of calls (``-m``, ``-r``, ``-l``,
  ``-timeout``) and returning SIPp's own count of successful and failed calls
  (``-trace_stat``).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .kamailio_proc import options_ping

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

__all__ = ["SCENARIOS", "CallCounts", "SippError", "SippNode", "invites_in_message_log", "run_calls"]


class SippError(RuntimeError):
    pass


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise SippError("sipp is not installed (Debian package sip-tester)")
    return path


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
    """One SIPp UAS on ``host:port`` running ``scenario`` until stopped or killed."""

    def __init__(self, scenario: str, host: str, port: int, media_port: int, workdir: Path) -> None:
        self.scenario = SCENARIOS / scenario
        self.host, self.port, self.media_port = host, port, media_port
        self.workdir = workdir
        self.runs = 0
        self._process: subprocess.Popen | None = None
        self.message_logs: list[Path] = []

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, after a kill) and wait until it answers OPTIONS."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        prefix = self.workdir / f"node-{self.host}-{self.runs}"
        self.message_logs.append(Path(f"{prefix}-messages.log"))
        command = [sipp_binary(), "-sf", str(self.scenario), "-i", self.host, "-p", str(self.port),
                   "-mp", str(self.media_port), "-nostdin", "-bind_local",
                   "-trace_msg", "-message_file", str(self.message_logs[-1]),
                   "-trace_err", "-error_file", f"{prefix}-errors.log"]
        with open(f"{prefix}-sipp.out", "wb") as out:
            self._process = subprocess.Popen(command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SippError(f"sipp node {self.host}:{self.port} exited with {self._process.returncode}")
            if options_ping(self.address, self.host, 0.3) == 200:
                return
        self.stop()
        raise SippError(f"sipp node {self.host}:{self.port} did not answer OPTIONS within {timeout:.0f} s")

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
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    stop = kill


@dataclass(frozen=True)
class CallCounts:
    successful: int
    failed: int
    returncode: int

    @property
    def total(self) -> int:
        return self.successful + self.failed


def _last_stats(stat_file: Path) -> dict[str, str]:
    with open(stat_file, newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if len(rows) < 2:
        raise SippError(f"{stat_file}: no statistics row")
    return dict(zip(rows[0], rows[-1]))


def run_calls(scenario: str, target: tuple[str, int], source: str, calls: int, workdir: Path, *,
              rate: float = 10, limit: int | None = None, media_port: int, local_port: int = 5070,
              call_length_ms: int = 100, recv_timeout_ms: int = 5000, timeout_s: int = 60,
              service: str = "12345") -> CallCounts:
    """``calls`` calls from ``source`` to ``target`` (the proxy); SIPp's count of successes and failures."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = workdir / f"uac-{source}-{time.monotonic_ns()}"
    stat_file = Path(f"{prefix}.csv")
    command = [sipp_binary(), f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario), "-s", service,
               "-i", source, "-p", str(local_port), "-mp", str(media_port), "-bind_local", "-nostdin",
               "-m", str(calls), "-r", str(rate), "-d", str(call_length_ms),
               "-recv_timeout", str(recv_timeout_ms), "-timeout", f"{timeout_s}s",
               "-trace_stat", "-stf", str(stat_file), "-trace_err", "-error_file", f"{prefix}-errors.log"]
    if limit is not None:
        command += ["-l", str(limit)]
    with open(f"{prefix}-sipp.out", "wb") as out:
        result = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                check=False, timeout=timeout_s + 30)
    if not stat_file.exists():
        raise SippError(f"sipp exited with {result.returncode} and wrote no statistics; see {prefix}-sipp.out")
    stats = _last_stats(stat_file)
    return CallCounts(int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"]), result.returncode)
