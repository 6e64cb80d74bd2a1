"""AMI parse rate (events/s) on one captured stream, against pyst2 and panoramisk.

The stream: the real sessions recorded on the lab's Asterisk 22
(tests/lab/fixtures/*.ami), repeated with new call identities per repetition
to ``--events`` events (~500 bytes each, all event classes as recorded; see
bench/ami_stream.py), after the AMI banner. Every target parses the same bytes
and must count every event.

The machine is a shared VM whose speed drifts by up to 2x within seconds, so
the stream is cut into segments of ``--segment`` events (at event boundaries)
and the targets take turns segment by segment (rotating who goes first); a
round is one pass of every fast target over the whole stream (each target keeps
its own session across the segments). pyst2 is slow: pyst2-parse runs only on
the first segments (``--pyst2-events``), pyst2-manager on the first
(``--pyst2-socket-events``), in round 1, interleaved like the others — and
each target's ratio is taken against ``codec`` on *the same segments of the
same round*.

  codec         gateway.ami.codec.parse_messages, fed 4 KiB reads the way
                AmiProtocol feeds it (buffer += read; parse; keep the rest) — the baseline
  codec-64k     the same, fed 64 KiB reads (Twisted's TCP read size under load)
  client        the gateway's whole client path: AmiProtocol.dataReceived (codec +
                dispatch) → EventRouter → monitor adapters → state model + metrics,
                as built by gateway.monitor.service.build_monitor; 4 KiB reads
  codec-sub,    codec and client on the *subscribed* stream instead (``--sub-events``; the events
  client-sub    the gateway's AMI user receives: each one reaches the state model);
                client-sub's ratio is against codec-sub — the model's own cost
  panoramisk    panoramisk's AMIProtocol.data_received (decode, split on blank
                lines, Message.from_line, handle_message; factory.dispatch only counts)
  pyst2-parse   pyst2 0.5.1 asterisk.manager, single thread, no sockets: its own
                Manager._receive_data framing loop reading lines from an in-memory
                file, then what its message_loop does per message (ManagerMsg, Event)
  pyst2-manager pyst2's real Manager with its three threads, on one end of a
                socketpair (its own makefile('rwb', buffering=0), so one recv of 1 byte
                per byte, as on its TCP socket); a writer thread sends the stream in
                4 KiB pieces; timed until its '*' callback has seen every event

Printed per target: events per round, events/s (wall; median of rounds, and
the rounds' range), the ratio to ``codec`` (median of rounds) and CPU µs per
event (whole process, so pyst2-manager's includes its writer thread).

    .venv/bin/python bench/ami_parse_bench.py                   # 200k events, ~1.5 min
    .venv/bin/python bench/ami_parse_bench.py --events 50000 --rounds 1   # a quick look
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import socket
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ami_stream import BANNER, Stream, build_stream, chunks
from gateway.ami import codec
from gateway.config import DEFAULT_MONITOR_NODE

READ = 4096


@dataclass
class Sample:
    run: int
    segment: int
    events: int
    wall: float
    cpu: float


@dataclass
class Result:
    target: str
    samples: list[Sample]
    #: events/s of ``codec`` on the same segments of the same run, per run
    codec_rates: dict[int, float]

    def _per_run(self) -> dict[int, list[Sample]]:
        runs: dict[int, list[Sample]] = {}
        for sample in self.samples:
            runs.setdefault(sample.run, []).append(sample)
        return runs

    @property
    def events(self) -> int:
        """Events parsed per run."""
        return sum(s.events for s in self._per_run()[0])

    @property
    def run_rates(self) -> list[float]:
        return [sum(s.events for s in run) / sum(s.wall for s in run) for run in self._per_run().values()]

    @property
    def rate(self) -> float:
        return statistics.median(self.run_rates)

    @property
    def ratio(self) -> float:
        return statistics.median(rate / self.codec_rates[run] for run, rate in zip(self._per_run(), self.run_rates))

    @property
    def cpu_us_per_event(self) -> float:
        return statistics.median(
            1e6 * sum(s.cpu for s in run) / sum(s.events for s in run) for run in self._per_run().values()
        )


def timed(run: Callable[[], int], run_index: int = 0, segment: int = 0) -> Sample:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    events = run()
    return Sample(run_index, segment, events, time.perf_counter() - wall, time.process_time() - cpu)


# -- targets: a session is fed reads and returns how many events they completed ---------
class CodecSession:
    """gateway.ami.codec.parse_messages fed the way AmiProtocol feeds it."""

    def __init__(self) -> None:
        self.buffer = b""
        self.banner = True

    def feed(self, reads: list[bytes]) -> int:
        events = 0
        buffer = self.buffer
        for data in reads:
            buffer += data
            messages, buffer = codec.parse_messages(buffer, expect_banner=self.banner)
            self.banner = False
            for message in messages:
                if message.kind == "event":
                    events += 1
        self.buffer = buffer
        return events


def make_client_path():
    """A fresh AmiProtocol wired to a fresh monitor (state model, router, metrics)."""
    from prometheus_client import CollectorRegistry
    from twisted.internet import task
    from twisted.internet.testing import StringTransport

    from gateway.ami.protocol import AmiProtocol
    from gateway.config import load_config
    from gateway.monitor.service import build_monitor

    clock = task.Clock()
    clock.advance(1795307400.0)
    registry = CollectorRegistry()
    config = load_config(environ={"HOTLINE_AMI_SECRET": "bench"})
    monitor = build_monitor(config, clock=clock, endpoint=None, registry=registry)
    proto = AmiProtocol(clock=clock, action_timeout=config.ami.action_timeout)
    seen = [0]
    route = monitor.router.dispatch

    def on_event(message: codec.AmiMessage) -> None:
        seen[0] += 1
        route(message)

    proto.on_event = on_event
    proto.makeConnection(StringTransport())
    return proto, seen, registry


class ClientSession:
    """AmiProtocol.dataReceived → EventRouter → adapters → state model + metrics."""

    def __init__(self) -> None:
        self.proto, self.seen, self.registry = make_client_path()

    def feed(self, reads: list[bytes]) -> int:
        before = self.seen[0]
        for data in reads:
            self.proto.dataReceived(data)
        return self.seen[0] - before

    def check(self) -> dict:
        node = {"node": DEFAULT_MONITOR_NODE}  # the bench sets no HOTLINE_MONITOR_NODE
        return {
            "offered": self.registry.get_sample_value("hotline_queue_calls_offered_total", {**node, "queue": "12345"}),
            "handled": self.registry.get_sample_value("hotline_ami_events_total", node),
        }


class PanoramiskSession:
    """panoramisk's AMIProtocol.data_received; its factory only counts dispatched events."""

    def __init__(self) -> None:
        from panoramisk.ami_protocol import AMIProtocol

        class Factory:
            events = 0

            def dispatch(self, message) -> None:
                self.events += 1

        class Transport:
            def write(self, data: bytes) -> None:
                pass

            def close(self) -> None:
                pass

        self.proto = AMIProtocol()
        self.proto.connection_made(Transport())
        self.proto.factory = Factory()

    def feed(self, reads: list[bytes]) -> int:
        before = self.proto.factory.events
        for data in reads:
            self.proto.data_received(data)
        return self.proto.factory.events - before


def run_codec(reads: list[bytes]) -> int:
    return CodecSession().feed(reads)


def run_client(reads: list[bytes], check: dict) -> int:
    session = ClientSession()
    events = session.feed(reads)
    check.update(session.check())
    return events


def run_panoramisk(reads: list[bytes]) -> int:
    return PanoramiskSession().feed(reads)


def _pyst2():
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # isSet/setDaemon in pyst2
    from asterisk import manager

    return manager


def run_pyst2_parse(data: bytes) -> int:
    manager = _pyst2()
    mgr = manager.Manager()
    mgr._sock = io.BytesIO(data)  # iterated line by line, as it iterates its socket file
    mgr._connected.set()
    mgr._running.set()
    try:
        mgr._receive_data()  # its framing loop, until EOF; messages land in its queue
        events = 0
        queue = mgr._message_queue
        while True:
            lines = queue.get_nowait()
            if not lines:
                break
            message = manager.ManagerMsg(lines)  # what message_loop does with each
            if message.has_header("Event"):
                manager.Event(message)
                events += 1
        return events
    finally:
        mgr._running.clear()  # nothing left to stop (its __del__ would try)


def run_pyst2_manager(data: bytes, expected: int, timeout: float) -> int:
    manager = _pyst2()
    ours, theirs = socket.socketpair()
    mgr = manager.Manager()
    # what Manager.connect() does after its TCP connect
    mgr._sock = theirs.makefile(mode="rwb", buffering=0)
    theirs.close()
    seen = [0]
    done = threading.Event()

    def on_event(event, _manager) -> None:
        seen[0] += 1
        if seen[0] >= expected:
            done.set()

    mgr.register_event("*", on_event)
    mgr._connected.set()
    mgr._running.set()
    mgr.message_thread.start()
    mgr.event_dispatch_thread.start()

    def writer() -> None:
        try:
            for piece in chunks(data, READ):
                ours.sendall(piece)
        except OSError:
            pass  # the reader went away (timeout path): nothing more to send

    feeder = threading.Thread(target=writer, daemon=True)
    feeder.start()
    try:
        greeting = mgr._response_queue.get(timeout=timeout)  # as connect() returns it
        if greeting is None or greeting.get_header("Response") != "Generated Header":
            raise RuntimeError(f"pyst2 did not read the banner: {greeting!r}")
        if not done.wait(timeout):
            raise RuntimeError(f"pyst2 saw {seen[0]} of {expected} events in {timeout} s")
        return seen[0]
    finally:
        ours.close()  # EOF: its reader thread puts None, the other threads follow
        mgr.message_thread.join(10)
        mgr.event_dispatch_thread.join(10)
        mgr._running.clear()
        feeder.join(10)


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


# -- run -----------------------------------------------------------------------------
FAST = ("codec", "codec-64k", "client", "panoramisk")


def bench(args) -> tuple[list[Result], dict]:
    started = time.perf_counter()
    stream: Stream = build_stream(args.events, "all")
    sub: Stream = build_stream(args.sub_events, "subscribed")
    for s in (stream, sub):
        print(f"{s.kind} stream: {s.events} events, {len(s.data) / 1e6:.1f} MB ({len(s.data) / s.events:.0f} B/event)")
    print(f"built in {time.perf_counter() - started:.1f} s", flush=True)

    def cut(s: Stream, size: int) -> tuple[list[tuple[int, int]], list[list[bytes]]]:
        bounds = [(a, min(a + args.segment, s.events)) for a in range(0, s.events, args.segment)]
        return bounds, [chunks((BANNER if k == 0 else b"") + s.slice(a, b), size) for k, (a, b) in enumerate(bounds)]

    bounds, reads = cut(stream, READ)
    _, reads_64k = cut(stream, 65536)
    sub_bounds, sub_reads = cut(sub, READ)
    segments = [stream.slice(a, b) for a, b in bounds]
    samples: dict[str, list[Sample]] = {}
    check: dict = {}
    try:
        import panoramisk  # noqa: F401 — not a gateway dependency: `.venv/bin/pip install panoramisk`
    except ImportError:
        with_panoramisk = False
        print("panoramisk is not installed: its row is left out", flush=True)
    else:
        with_panoramisk = True
    for run in range(args.rounds):
        sessions = {
            "codec": CodecSession(), "codec-64k": CodecSession(), "client": ClientSession(),
            "codec-sub": CodecSession(), "client-sub": ClientSession(),
        }
        if with_panoramisk:
            sessions["panoramisk"] = PanoramiskSession()
        for k, (a, b) in enumerate(bounds):
            todo: list[tuple[str, Callable[[], int]]] = [
                ("codec", partial(sessions["codec"].feed, reads[k])),
                ("codec-64k", partial(sessions["codec-64k"].feed, reads_64k[k])),
                ("client", partial(sessions["client"].feed, reads[k])),
            ]
            if with_panoramisk:
                todo.append(("panoramisk", partial(sessions["panoramisk"].feed, reads[k])))
            if k < len(sub_bounds):
                todo.append(("codec-sub", partial(sessions["codec-sub"].feed, sub_reads[k])))
                todo.append(("client-sub", partial(sessions["client-sub"].feed, sub_reads[k])))
            if run == 0 and a < args.pyst2_events:
                todo.append(("pyst2-parse", partial(run_pyst2_parse, BANNER + segments[k])))
            if run == 0 and a < args.pyst2_socket_events:
                todo.append(("pyst2-manager", partial(run_pyst2_manager, BANNER + segments[k], b - a, args.timeout)))
            shift = (k + run) % len(todo)  # nobody always goes first
            for name, feed in todo[shift:] + todo[:shift]:
                sample = timed(feed, run, k)
                expected = (sub_bounds[k][1] - sub_bounds[k][0]) if name.endswith("-sub") else b - a
                if sample.events != expected:
                    raise RuntimeError(f"{name} counted {sample.events} of {expected} events (segment {k})")
                samples.setdefault(name, []).append(sample)
        check = sessions["client"].check()
        check_sub = sessions["client-sub"].check()
        line = ", ".join(
            f"{name} {sum(s.events for s in samples[name] if s.run == run) / sum(s.wall for s in samples[name] if s.run == run):,.0f}"
            for name in samples if any(s.run == run for s in samples[name])
        )
        print(f"  round {run + 1}: events/s {line}", flush=True)

    results = []
    for name, target_samples in samples.items():
        base = "codec-sub" if name.endswith("-sub") else "codec"
        base_samples = {(s.run, s.segment): s for s in samples[base]}
        codec_rates: dict[int, float] = {}
        for run in {s.run for s in target_samples}:
            same = [base_samples[(s.run, s.segment)] for s in target_samples if s.run == run]
            codec_rates[run] = sum(s.events for s in same) / sum(s.wall for s in same)
        results.append(Result(name, target_samples, codec_rates))
    meta = {
        "events": stream.events,
        "bytes": len(stream.data),
        "rounds": args.rounds,
        "segment": args.segment,
        "client_offered_calls": check.get("offered"),
        "client_subscribed_events_handled": check.get("handled"),
        "sub_events": sub.events,
        "panoramisk": _version("panoramisk") if with_panoramisk else None,
        "pyst2": _version("pyst2"),
        "client_sub_offered_calls": check_sub.get("offered"),
        "client_sub_events_handled": check_sub.get("handled"),
        "seconds": time.perf_counter() - started,
    }
    return results, meta


def report(results: list[Result]) -> str:
    lines = [
        "| target | events per round | events/s (median of rounds) | rounds' range | × codec (same events, same round)¹ | CPU µs/event |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rates = r.run_rates
        spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if len(rates) > 1 else "one round"
        lines.append(
            f"| {r.target} | {r.events} | {r.rate:,.0f} | {spread} | {r.ratio:.3f} | {r.cpu_us_per_event:.1f} |"
        )
    lines.append("")
    lines.append("¹ codec-sub and client-sub: × codec-sub (they parse the subscribed-only stream)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events in the captured stream")
    parser.add_argument("--rounds", type=int, default=3, help="passes of the fast targets over the stream (median)")
    parser.add_argument("--sub-events", type=int, default=100_000, help="events in the subscribed-only stream")
    parser.add_argument("--segment", type=int, default=10_000, help="events per interleaving segment")
    parser.add_argument("--pyst2-events", type=int, default=50_000,
                        help="pyst2-parse runs on the segments starting below this event, first round only")
    parser.add_argument("--pyst2-socket-events", type=int, default=10_000,
                        help="pyst2-manager runs on the segments starting below this event, first round only")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up on a pyst2-manager segment after this")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    results, meta = bench(args)
    print(report(results))
    print(
        f"client path: {meta['client_subscribed_events_handled']:.0f} subscribed events handled, "
        f"{meta['client_offered_calls']:.0f} calls offered to queue 12345 (per round); client-sub: "
        f"{meta['client_sub_events_handled']:.0f} handled, {meta['client_sub_offered_calls']:.0f} calls offered; "
        f"pyst2 {meta['pyst2']}, panoramisk {meta['panoramisk']}, Python {sys.version.split()[0]}; "
        f"whole bench {meta['seconds']:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    **meta,
                    "results": [
                        {
                            "target": r.target,
                            "events_per_round": r.events,
                            "events_per_s": r.rate,
                            "events_per_s_by_round": r.run_rates,
                            "ratio_to_codec": r.ratio,
                            "cpu_us_per_event": r.cpu_us_per_event,
                        }
                        for r in results
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
