"""Python CPU per FastAGI call, without sockets or a running reactor: gateway vs bare.

One call = the fixed 12-command bench script (``gateway/scripts/bench.py``)
driven synchronously: the header, then each command's reply handed to
``dataReceived`` as soon as the command is written, then ``connectionLost``.
No I/O, no scheduling, no other process, so what is left is the servers' own
Python work per call, and taking the fastest of many short rounds filters out
this shared machine's noise (``bench/fastagi_cpu_bench.py`` and
``bench/fastagi_bench.py`` measure the whole picture with sockets and the real
Asterisk; this one is for finding where the gateway's Python time goes).

* ``bare``: ``bench/baselines/bare_twisted.py``'s ``BareAgi`` (the baseline).
* ``gateway``: the factory ``hotline-gateway run --bench`` builds (flows
  loaded, metrics, RTT samples, a ``CallRecord`` per call written through the
  real ``RedisCallStore`` batching, whose Redis ``EVAL`` is answered at once
  by a stub: no Redis here).
* ``flow-api floor``: what the flow API itself costs per command: a Deferred
  awaited through two coroutine levels (flow → session method → command) and
  driven by ``gateway.agi.flowrun``, against a plain callback per command.

Printed: µs per call (min and median of the rounds) and gateway / bare.

    .venv/bin/python bench/fastagi_call_cost.py            # 40 rounds of 100 calls
    .venv/bin/python bench/fastagi_call_cost.py --rounds 100
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from bench.fastagi_cpu_bench import REPLIES, bare_factory, header  # noqa: E402

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


def one_call(factory, number: int) -> None:
    transport = StringTransport(peerAddress=ADDRESS)
    proto = factory.buildProtocol(ADDRESS)
    proto.makeConnection(transport)
    proto.dataReceived(header(number))
    while not transport.disconnecting:
        data = transport.value()
        if not data:
            raise RuntimeError("the server neither wrote a command nor closed the call")
        transport.clear()
        proto.dataReceived(REPLIES[data[:3]])
    proto.connectionLost()


def gateway_factory():
    from gateway.app import build_gateway
    from gateway.config import load_config
    from gateway.logs import start_logging

    config = load_config(environ={"HOTLINE_REDIS_URL": "redis://127.0.0.1:1/0", "HOTLINE_LOG_LEVEL": "warn"})
    start_logging(config.log.level, config.log.format, stream=io.StringIO())
    gw = build_gateway(reactor, config, enable_bench=True)
    # the EVAL of each batch is answered at once (one reply: the number of records)
    gw.factory.store._execute = lambda commands: defer.succeed([len(commands)])
    return gw.factory


def measure(factory, rounds: int, calls: int, first: int, after_round=lambda: None) -> list[float]:
    per_call = []
    number = first
    for _ in range(rounds):
        started = time.process_time()
        for i in range(calls):
            one_call(factory, number + i)
        per_call.append((time.process_time() - started) / calls)
        number += calls
        after_round()
    return per_call


def flow_api_floor(commands: int = 1000, rounds: int = 30) -> tuple[float, float]:
    """µs per command: a Deferred awaited through two coroutine levels, and a plain callback."""
    from gateway.agi.flowrun import run_flow

    pending: list[defer.Deferred] = []

    async def command():
        d: defer.Deferred = defer.Deferred()
        pending.append(d)
        return await d

    async def session_method():
        return await command()

    async def flow():
        for _ in range(commands):
            await session_method()

    def with_deferreds():
        run_flow(flow())
        while pending:
            pending.pop().callback(1)

    callbacks = []

    def plain():
        left = [commands]

        def step(_reply):
            left[0] -= 1
            if left[0]:
                callbacks.append(step)

        callbacks.append(step)
        while callbacks:
            callbacks.pop()(1)

    def best(fn):
        times = []
        for _ in range(rounds):
            started = time.process_time()
            fn()
            times.append(time.process_time() - started)
        return min(times) / commands

    return best(with_deferreds), best(plain)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=100, help="calls per round")
    args = parser.parse_args(argv)

    from gateway.app import tune_gc

    gateway = gateway_factory()
    bare = bare_factory()
    from bench.baselines.bare_twisted import RTTS

    def clear():
        RTTS.clear()
        gateway.rtt_samples.clear()
        reactor.runUntilCurrent()  # drop the cancelled timers (no reactor is running)

    for factory in (bare, gateway):  # warm-up
        measure(factory, 3, args.calls, 10**7, clear)
    tune_gc()
    results = {"bare": [], "gateway": []}
    number = 0
    for r in range(args.rounds):  # the targets take turns, round by round
        for target in (("bare", "gateway") if r % 2 == 0 else ("gateway", "bare")):
            factory = bare if target == "bare" else gateway
            results[target] += measure(factory, 1, args.calls, number, clear)
            number += args.calls
    deferred, plain = flow_api_floor()
    print(f"python {sys.version.split()[0]}; {args.rounds} rounds of {args.calls} calls per target")
    for target, values in results.items():
        print(f"{target:8s} {1e6 * min(values):7.1f} µs/call min, {1e6 * statistics.median(values):7.1f} median")
    print(f"gateway / bare: {min(results['gateway']) / min(results['bare']):.2f} (min), "
          f"{statistics.median(results['gateway']) / statistics.median(results['bare']):.2f} (median)")
    print(f"flow API per command: {1e6 * deferred:.2f} µs (Deferred + 2 coroutine levels + flowrun) "
          f"vs {1e6 * plain:.2f} µs (plain callback); × 12 commands = {12e6 * (deferred - plain):.1f} µs per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
