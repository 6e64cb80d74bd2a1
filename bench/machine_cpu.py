"""Where the machine's CPU goes during a bench round: the whole machine, Asterisk, Redis, the driver.

The FastAGI benches run Asterisk, Redis, the load driver and the server under test on the same two
cores. When the machine is saturated (busy ≈ 100 %), calls/s is set by the machine's CPU per call,
so a target's rate against native is roughly native's machine CPU per call over the target's. This
module reads ``/proc`` before and after a round so the report can say where each call's CPU went:

* machine: the ``cpu`` line of ``/proc/stat`` (all but idle and iowait), over the round's wall time;
* ``asterisk``: every process named ``asterisk`` (the lab's main instance; the lab carrier is idle);
* ``redis``: every ``redis-server`` process;
* ``driver``: this process (the AMI originates and the BenchDone events).

No sampling, no threads: two reads of a few small files per round.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Snapshot", "Usage", "snapshot", "usage"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUPS = {"asterisk": "asterisk", "redis": "redis-server"}


@dataclass(frozen=True)
class Snapshot:
    busy: int
    total: int
    groups: dict[str, float]
    driver: float


@dataclass(frozen=True)
class Usage:
    """CPU seconds used between two snapshots, and the machine's busy fraction."""

    machine: float
    busy_fraction: float
    groups: dict[str, float]
    driver: float


def _proc_cpu(pid: str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _group_cpu() -> dict[str, float]:
    totals = dict.fromkeys(GROUPS, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
            for group, name in GROUPS.items():
                if comm == name:
                    totals[group] += _proc_cpu(entry.name)
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return totals


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def snapshot() -> Snapshot:
    busy, total = _machine()
    times = os.times()
    return Snapshot(busy, total, _group_cpu(), times.user + times.system)


def usage(before: Snapshot, after: Snapshot) -> Usage:
    total = after.total - before.total
    busy = after.busy - before.busy
    return Usage(
        machine=busy / CLK_TCK,
        busy_fraction=busy / total if total else 0.0,
        groups={g: after.groups.get(g, 0.0) - before.groups.get(g, 0.0) for g in GROUPS},
        driver=after.driver - before.driver,
    )
