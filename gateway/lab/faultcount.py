"""Counting what a fault did, shared by the two-node run (:mod:`.faults`) and the single-node
run (:mod:`.faults_single`): the row of a fault table, queue_log marks (who reached a queue),
the dials a job should not have had, and small waiting helpers.

Everything here counts from the parts' own records (queue_log, the job store's histories, the
carrier's step counts), never from the gateway's opinion of itself.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..monitor.queue_log import parse_lines
from .errors import LabError

__all__ = ["FaultRow", "QueueLog", "doubled_dials", "format_table", "kill9", "wait_until", "write_rows"]

Report = Callable[[str], None]


@dataclass
class FaultRow:
    fault: str
    #: calls placed through the front door during the scenario
    calls: int = 0
    #: of those, calls that reached an agent or the queue (ENTERQUEUE on some node)
    reached: int = 0
    #: callbacks (or other jobs) in flight
    jobs: int = 0
    lost: int = 0
    doubled: int = 0
    notes: list[str] = field(default_factory=list)
    #: the work in flight in words ("3 citizens queued, 2 callbacks, 2 surveys") — the single-node table
    in_flight: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def format_table(rows: Iterable[FaultRow]) -> str:
    lines = ["| fault | calls placed | reached agent/queue | jobs in flight | lost | doubled | notes |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.fault} | {row.calls} | {row.reached} | {row.jobs} | {row.lost} | {row.doubled} | "
                     f"{'; '.join(row.notes)} |")
    return "\n".join(lines)


def format_work_table(rows: Iterable[FaultRow]) -> str:
    """fault | work in flight | lost | doubled | note (the single-node table)."""
    lines = ["| fault | work in flight | lost | doubled | note |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.fault} | {row.in_flight} | {row.lost} | {row.doubled} | {'; '.join(row.notes)} |")
    return "\n".join(lines)


def write_rows(rows: Iterable[FaultRow], path: Path) -> None:
    path.write_text("".join(json.dumps(row.as_json(), ensure_ascii=False) + "\n" for row in rows))


class QueueLog:
    """Where each queue_log ended when the scenario started; what was added since."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = dict(paths)
        self.offsets = {name: (path.stat().st_size if path.exists() else 0) for name, path in self.paths.items()}

    def entries(self, name: str) -> list:
        path = self.paths[name]
        if not path.exists():
            return []
        with open(path, "rb") as handle:
            handle.seek(self.offsets[name])
            lines = handle.read().decode("utf-8", "replace").splitlines()
        return list(parse_lines(lines))

    def entered(self) -> dict[str, Counter]:
        """{node: Counter(caller number → ENTERQUEUE count)} since the mark."""
        return {name: Counter(e.field(2) for e in self.entries(name) if e.event == "ENTERQUEUE")
                for name in self.paths}

    def reached(self, callers: Iterable[str]) -> tuple[int, int, dict[str, int]]:
        """(callers that reached a queue, callers that entered more than once, per-node counts)."""
        entered = self.entered()
        total: Counter = Counter()
        for counts in entered.values():
            total.update(counts)
        wanted = set(callers)
        per_node = {name: sum(n for caller, n in counts.items() if caller in wanted)
                    for name, counts in entered.items()}
        return (sum(1 for c in wanted if total[c] > 0), sum(1 for c in wanted if total[c] > 1), per_node)


def doubled_dials(history: list[dict]) -> int:
    """A job's dials that should not have happened: an attempt dialled while another was still
    open, an attempt id dialled twice, or a dial after an attempt that was answered (the citizen
    pressed 1 and talked). A retry after an attempt the citizen was not served on is policy."""
    doubled, open_attempt, seen, served = 0, None, set(), False
    for entry in history:
        if entry.get("event") == "dialing":
            doubled += open_attempt is not None or entry.get("attempt_id") in seen or served
            seen.add(entry.get("attempt_id"))
            open_attempt = entry.get("attempt_id")
        elif entry.get("event") == "attempt":
            served = served or entry.get("outcome") == "answered"
            open_attempt = None
    return doubled


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def kill9(pid: int | None, what: str) -> int:
    if pid is None:
        raise LabError(f"{what} is not running")
    os.kill(pid, signal.SIGKILL)
    return pid
