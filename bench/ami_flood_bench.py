"""Reactor stall under an AMI event flood: the gateway's real AMI client + monitor.

A fake Asterisk (bench/fake_ami_server.py, its own process, an ephemeral
127.0.0.1 port — none of the lab's) greets, accepts the MD5 login, answers the
resync lists and then, on request, floods recorded events (bench/ami_stream.py)
into this process, where the gateway's monitor runs exactly as the composition
root builds it (gateway.monitor.service.build_monitor: AmiClient with
ClientService, login, keepalive, resync; AmiProtocol → EventRouter → adapters →
state model → Prometheus metrics), on the real reactor.

A LoopingCall every 10 ms measures reactor lag: actual firing time minus the
time its DelayedCall was due. Phases, in one run:

  baseline        logged in, no events, ``--baseline`` seconds
  flood-max       ``--events`` subscribed events (what the gateway's AMI user gets:
                  queue/agent/channel/HotlinePath events) as fast as the client reads
  flood-max-all   the same count of the full recorded stream (all event classes,
                  incl. dialplan VarSet/Newexten the router ignores)
  flood-paced     subscribed events at ``--rate`` events/s for ``--paced-seconds``

Each flood stops by itself (fixed event count; server-side time limit
``--limit``). Printed per phase: lag ticks, p50/p99/max lag, events/s
processed (events / time from the flood request to its reply, which arrives
after the last event because TCP keeps the order), events the router handed
to the model, and the longest single ``AmiProtocol.dataReceived`` call with
its size (bench-only timing wrapper), the longest garbage-collector pause and
how many full (generation 2) collections ran. Ratios are against the baseline
phase of the same run.

Like the gateway as shipped (``gateway/app.py`` ``_run``), the bench calls
``gc.freeze()`` once the monitor is built and before its service starts, so
the start-up objects leave the collector's generations. ``--no-gc-freeze``
skips it, for comparison with a process that does not freeze.

    .venv/bin/python bench/ami_flood_bench.py
    .venv/bin/python bench/ami_flood_bench.py --no-gc-freeze
    .venv/bin/python bench/ami_flood_bench.py --events 50000 --baseline 3
"""
from __future__ import annotations

import argparse
import gc
import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry
from twisted.internet import defer, endpoints, task

from bench.ami_stream import percentile
from gateway.ami.protocol import AmiProtocol
from gateway.config import DEFAULT_MONITOR_NODE, load_config
from gateway.monitor.service import build_monitor

SECRET = "bench-flood"
#: the monitor's ``node`` label (the bench sets no HOTLINE_MONITOR_NODE)
NODE = {"node": DEFAULT_MONITOR_NODE}
INTERVAL = 0.010


# -- instruments ---------------------------------------------------------------------------
class _RecordingClock:
    """The reactor's clock for the probe's LoopingCall, remembering when its next call is due."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self.due: float | None = None

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay, f, *args, **kwargs):
        call = self._clock.callLater(delay, f, *args, **kwargs)
        self.due = call.getTime()
        return call


class LagProbe:
    """A LoopingCall every ``interval``; each tick records (due time, actual − due)."""

    def __init__(self, clock, interval: float = INTERVAL) -> None:
        self.clock = _RecordingClock(clock)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.loop = task.LoopingCall(self._tick)
        self.loop.clock = self.clock

    def start(self) -> None:
        self.loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        due = self.clock.due
        if due is not None:
            self.samples.append((due, now - due))

    def lags(self, start: float, end: float) -> list[float]:
        return [lag for due, lag in self.samples if start <= due < end]


class ReadTimer:
    """Bench-only wrapper timing each AmiProtocol.dataReceived call (size, duration)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, float]] = []  # (start, bytes, seconds)
        self._original = AmiProtocol.dataReceived

    def install(self) -> None:
        original, calls, clock = self._original, self.calls, time.perf_counter

        def dataReceived(proto, data: bytes) -> None:
            started = clock()
            original(proto, data)
            calls.append((started, len(data), clock() - started))

        AmiProtocol.dataReceived = dataReceived

    def uninstall(self) -> None:
        AmiProtocol.dataReceived = self._original

    def longest(self, start: float, end: float) -> tuple[float, int]:
        window = [(seconds, size) for at, size, seconds in self.calls if start <= at < end]
        return max(window) if window else (0.0, 0)

    def count(self, start: float, end: float) -> int:
        return sum(1 for at, _, _ in self.calls if start <= at < end)


class GcTimer:
    """Longest garbage-collector pause (gc.callbacks), per window."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (start, generation, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, info.get("generation", -1), time.perf_counter() - self._started))

    def longest(self, start: float, end: float) -> tuple[float, int]:
        window = [(seconds, gen) for at, gen, seconds in self.pauses if start <= at < end]
        return max(window) if window else (0.0, -1)

    def full_collections(self, start: float, end: float) -> int:
        return sum(1 for at, gen, _ in self.pauses if start <= at < end and gen == 2)


@dataclass
class Phase:
    name: str
    wall: float
    lags: list[float]
    events: int = 0
    handled: int = 0
    server_seconds: float = 0.0
    reason: str = ""
    longest_read: tuple[float, int] = (0.0, 0)
    reads: int = 0
    longest_gc: tuple[float, int] = (0.0, -1)
    full_gcs: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.wall if self.events and self.wall else 0.0

    def lag_ms(self, q: float) -> float:
        return 1000 * percentile(self.lags, q)

    @property
    def max_ms(self) -> float:
        return 1000 * max(self.lags) if self.lags else float("nan")

    def late(self, threshold: float) -> int:
        return sum(1 for lag in self.lags if lag > threshold)


# -- the fake Asterisk -------------------------------------------------------------------------
def start_server(events: int, deadline: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "fake_ami_server.py"), "--events", str(events),
         "--secret", SECRET, "--deadline", str(deadline)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=None, text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"fake AMI server did not start (said {line!r})")
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- phases --------------------------------------------------------------------------------------
def handled(registry: CollectorRegistry) -> int:
    return int(registry.get_sample_value("hotline_ami_events_total", NODE) or 0)


async def wait_for(reactor, condition, timeout: float, what: str) -> None:
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)


async def bench(reactor, args, port: int) -> tuple[list[Phase], dict]:
    registry = CollectorRegistry()
    config = load_config(environ={"HOTLINE_AMI_SECRET": SECRET, "HOTLINE_LOG_LEVEL": "warn"})
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    monitor = build_monitor(config, clock=reactor, endpoint=endpoint, registry=registry)
    reads, gcs = ReadTimer(), GcTimer()
    reads.install()
    gc.callbacks.append(gcs)
    probe = LagProbe(reactor)
    phases: list[Phase] = []
    if not args.no_gc_freeze:
        gc.freeze()  # where gateway/app.py does it: everything built, before the services start
    try:
        monitor.client.startService()
        await wait_for(reactor, lambda: monitor.client.logged_in, 15, "the AMI login")
        await wait_for(
            reactor, lambda: sum(registry.get_sample_value("hotline_ami_resyncs_total", {**NODE, "outcome": o}) or 0
                                 for o in ("ok", "partial", "failed")) > 0, 15, "the resync",
        )
        resync_ok = registry.get_sample_value("hotline_ami_resyncs_total", {**NODE, "outcome": "ok"}) == 1
        probe.start()
        await task.deferLater(reactor, 1.0, lambda: None)  # settle

        start = reactor.seconds()
        pstart = time.perf_counter()
        await task.deferLater(reactor, args.baseline, lambda: None)
        end, pend = reactor.seconds(), time.perf_counter()
        phases.append(Phase("baseline", end - start, probe.lags(start, end), longest_read=reads.longest(pstart, pend),
                            reads=reads.count(pstart, pend), longest_gc=gcs.longest(pstart, pend),
                            full_gcs=gcs.full_collections(pstart, pend)))
        print(f"  baseline       max lag {phases[-1].max_ms:.2f} ms", flush=True)

        plan = [
            ("flood-max", "subscribed", args.events, 0.0),
            ("flood-max-all", "all", args.events, 0.0),
            ("flood-paced", "subscribed", int(args.rate * args.paced_seconds), args.rate),
        ]
        for name, kind, count, rate in plan:
            if name not in args.phases:
                continue
            await task.deferLater(reactor, 1.0, lambda: None)  # settle between phases
            before = handled(registry)
            start, pstart = reactor.seconds(), time.perf_counter()
            reply = await monitor.client.send_action(
                "BenchFlood", {"Stream": kind, "Events": count, "Rate": rate, "Limit": args.limit},
                timeout=args.limit + 30,
            )
            end, pend = reactor.seconds(), time.perf_counter()
            phase = Phase(
                name, end - start, probe.lags(start, end), events=int(reply.get("Events", "0")),
                handled=handled(registry) - before, server_seconds=float(reply.get("Seconds", "0")),
                reason=reply.get("Reason"), longest_read=reads.longest(pstart, pend), reads=reads.count(pstart, pend),
                longest_gc=gcs.longest(pstart, pend), full_gcs=gcs.full_collections(pstart, pend), extra={"stream": kind, "asked": count, "rate": rate},
            )
            phases.append(phase)
            print(f"  {name:<14} max lag {phase.max_ms:.2f} ms, {phase.rate:,.0f} events/s ({phase.reason})", flush=True)
        state = monitor.state
        meta = {
            "resync_ok": resync_ok,
            "offered_calls": registry.get_sample_value("hotline_queue_calls_offered_total", {**NODE, "queue": "12345"}),
            "still_waiting": len(state.waiting_calls()),
            "ami_still_logged_in": monitor.client.logged_in,
            "reconnects": registry.get_sample_value("hotline_ami_reconnects_total", NODE),
            "keepalive_timeouts": registry.get_sample_value("hotline_ami_keepalive_timeouts_total", NODE),
            "handler_errors": registry.get_sample_value("hotline_ami_handler_errors_total", NODE),
            "gc_tracked_objects": len(gc.get_objects()),
            "gc_frozen_objects": gc.get_freeze_count(),
        }
        return phases, meta
    finally:
        probe.stop()
        gc.callbacks.remove(gcs)
        reads.uninstall()
        await monitor.client.stopService()


def report(phases: list[Phase]) -> str:
    base = phases[0]
    header = (
        "| phase | events | events/s | handled by model | lag ticks | lag p50 ms | lag p99 ms | × baseline p99 "
        "| max lag ms | ticks > 10 ms | longest dataReceived | longest GC pause | full GCs |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        read_ms, read_bytes = p.longest_read
        gc_s, gen = p.longest_gc
        lines.append(
            f"| {p.name} | {p.events or '—'} | {f'{p.rate:,.0f}' if p.events else '—'} | {p.handled or '—'} "
            f"| {len(p.lags)} | {p.lag_ms(0.5):.2f} | {p.lag_ms(0.99):.2f} | {p.lag_ms(0.99) / base.lag_ms(0.99):.1f} "
            f"| {p.max_ms:.2f} | {p.late(0.010)} | {1000 * read_ms:.2f} ms / {read_bytes} B ({p.reads} reads) "
            f"| {1000 * gc_s:.2f} ms (gen {gen}) | {p.full_gcs} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events per max-rate flood")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of the no-flood baseline")
    parser.add_argument("--rate", type=float, default=20_000, help="events/s of the paced flood")
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--limit", type=float, default=45.0, help="server-side time limit per flood (s)")
    parser.add_argument("--phases", type=lambda s: s.split(","), default=["flood-max", "flood-max-all", "flood-paced"])
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="skip the gc.freeze() the gateway does before its services start (for comparison)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    proc, port = start_server(max(args.events, int(args.rate * args.paced_seconds)), deadline=170)
    print(f"fake AMI server pid {proc.pid} on 127.0.0.1:{port}", flush=True)
    out: dict = {}

    async def run(reactor):
        out["phases"], out["meta"] = await bench(reactor, args, port)

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    except SystemExit as exit_:
        if exit_.code:
            raise
    finally:
        stop_server(proc)
    phases, meta = out["phases"], out["meta"]
    print(report(phases))
    print(f"resync ok: {meta['resync_ok']}; calls offered to queue 12345: {meta['offered_calls']:.0f}; "
          f"still waiting at the end: {meta['still_waiting']}; reconnects {meta['reconnects']:.0f}, "
          f"keepalive timeouts {meta['keepalive_timeouts']:.0f}, handler errors {meta['handler_errors']:.0f}; "
          f"GC-tracked objects {meta['gc_tracked_objects']} (frozen {meta['gc_frozen_objects']}); "
          f"whole bench {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "meta": meta, "gc_freeze": not args.no_gc_freeze,
            "phases": [
                {
                    "phase": p.name, **p.extra, "events": p.events, "events_per_s": p.rate, "handled": p.handled,
                    "wall_s": p.wall, "server_s": p.server_seconds, "reason": p.reason, "lag_ticks": len(p.lags),
                    "lag_p50_ms": p.lag_ms(0.5), "lag_p99_ms": p.lag_ms(0.99), "lag_max_ms": p.max_ms,
                    "longest_data_received_ms": 1000 * p.longest_read[0], "longest_data_received_bytes": p.longest_read[1],
                    "data_received_calls": p.reads, "longest_gc_ms": 1000 * p.longest_gc[0], "longest_gc_generation": p.longest_gc[1],
                    "full_gcs": p.full_gcs, "ticks_over_10ms": p.late(0.010),
                }
                for p in phases
            ],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
