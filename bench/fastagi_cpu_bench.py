"""In-process CPU micro-benchmark: gateway FastAGI server vs the bare Twisted one.

What it measures
----------------
CPU time (``time.process_time``: user + system of this process, all its
threads) per call of two FastAGI servers running the same fixed 12-command
script (``gateway/scripts/bench.py``) against a scripted fake Asterisk:

* ``bare``: ``bench/baselines/bare_twisted.py``'s ``BareAgi`` (LineOnlyReceiver,
  no records, no metrics), with its in-memory RTT list cleared between rounds.
* ``gateway``: the factory built by ``gateway.app.build_gateway`` exactly as
  ``hotline-gateway run --bench`` builds it (flows loaded, ``bench`` script
  registered, RTT samples kept, ``start_logging`` at level ``warn`` with its
  output thrown away, ``tune_gc()`` (``gc.freeze()`` and the gen-0 threshold) after start-up, the Redis thread pool
  running). Call records go through the real ``RedisCallStore`` (batched
  pipelines written from the reactor by the non-blocking ``RespClient``) to a
  **private ``redis-server``** this script starts on a free port (``--redis
  auto``, the default; killed at exit); the measurement starts once that client
  is connected. The Redis server's own CPU does not count (another process, as
  in the real bench). ``--redis unreachable`` points the store at a closed port
  instead: the first batch fails at once (no connection), every later record
  goes to the in-memory backlog (a cheaper path than a real write), retried
  every 5 s.

The fake Asterisk sends a realistic ``agi_*`` header block (Asterisk 22's 22
variables, a unique id per call) and answers each command as Asterisk does:
``200 result=0`` (ANSWER), ``200 result=1`` (SET VARIABLE, VERBOSE),
``200 result=1 (value N)`` (GET VARIABLE), ``200 result=0 endpos=800`` (STREAM
FILE), ``200 result=49`` (WAIT FOR DIGIT: key ``1``), ``200 result=1`` then the
``HANGUP`` notice (HANGUP).

Two transports (``--transport``):

* ``memory`` (default): no sockets. Each call is a protocol on an in-memory
  transport; a driver interleaves ``--concurrency`` calls, handing every
  command's reply to ``dataReceived`` from inside the running reactor (so the
  gateway's timers and thread pool work as in production). The driver's own
  work (a dict lookup and a deque push per command) is in both targets' CPU.
* ``tcp``: both servers listen on loopback ports of the running reactor; the
  fake Asterisk runs in a **child process** (asyncio, ``--concurrency``
  connections at once), so this process's CPU is the server side only,
  including Twisted's accept/read/write work, as in the real bench.

Targets alternate within each round (the order flips every round); a warm-up
round is not counted. Printed: CPU µs per call of each target per round (with
its system-time part, and for the gateway the part spent in worker threads:
``process_time`` minus the reactor thread's ``thread_time``; the call records
no longer use one, so this is about 0), the ratio
gateway / bare per round (same round, same conditions) and its median.

What it omits versus ``bench/fastagi_bench.py`` (real Asterisk):

* Asterisk itself: its timing, its reads coalescing differently, the real
  0.1 s beep and DTMF waits (replies here come at once; nothing sleeps).
* The gateway's AMI client: in the lab the gateway also holds an AMI session
  (queue monitor) that receives the bench calls' channel events; here no AMI
  secret is set, so the monitor is off. That cost is not FastAGI and not here.
* The HTTP server's /bench/rtt fetches and SIGUSR1 dumps (done between runs).
* CPU competition with Asterisk on the same two cores (memory mode has none).

Run (from the repository root)::

    python bench/fastagi_cpu_bench.py                       # memory, 3000 calls, 5 rounds
    python bench/fastagi_cpu_bench.py --transport tcp --calls 2000
    python bench/fastagi_cpu_bench.py --profile /tmp/gw.prof   # cProfile the gateway rounds
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Asterisk's replies, keyed by the first three bytes of the command.
REPLIES = {
    b"ANS": b"200 result=0\n",
    b"SET": b"200 result=1\n",
    b"GET": b"200 result=1 (value 0)\n",
    b"STR": b"200 result=0 endpos=800\n",
    b"WAI": b"200 result=49\n",
    b"VER": b"200 result=1\n",
    b"HAN": b"200 result=1\nHANGUP\n",
}

HEADER = (
    "agi_network: yes\n"
    "agi_network_script: bench\n"
    "agi_request: agi://127.0.0.1:4576/bench\n"
    "agi_channel: Local/s@bench-agi-{n:08x};2\n"
    "agi_language: en\n"
    "agi_type: Local\n"
    "agi_uniqueid: bcpu-{n}-b\n"
    "agi_version: 22.10.0\n"
    "agi_callerid: 13800138000\n"
    "agi_calleridname: unknown\n"
    "agi_callingpres: 0\n"
    "agi_callingani2: 0\n"
    "agi_callington: 0\n"
    "agi_callingtns: 0\n"
    "agi_dnid: unknown\n"
    "agi_rdnis: unknown\n"
    "agi_context: bench-agi\n"
    "agi_extension: s\n"
    "agi_priority: 2\n"
    "agi_enhanced: 0.0\n"
    "agi_accountcode: \n"
    "agi_threadid: 140245678901{n:04d}\n"
    "\n"
)


def header(n: int) -> bytes:
    return HEADER.format(n=n % 10**8).encode()


# -- the fake Asterisk, in memory ------------------------------------------------
class MemoryTransport:
    """Just enough of ITCPTransport for both servers; writes go to the driver."""

    def __init__(self, driver: MemoryDriver, call: MemoryCall) -> None:
        self.driver = driver
        self.call = call
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        if not self.disconnecting:
            self.driver.ready.append((self.call, data))

    def writeSequence(self, seq) -> None:
        self.write(b"".join(seq))

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.driver.closing.append(self.call)

    abortConnection = loseConnection

    def getPeer(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 40000)

    getHost = getPeer


class MemoryCall:
    __slots__ = ("number", "proto", "transport")


class MemoryDriver:
    """Runs ``calls`` calls, ``concurrency`` at a time, on one factory."""

    def __init__(self, reactor, factory, calls: int, concurrency: int, first_id: int) -> None:
        self.reactor = reactor
        self.factory = factory
        self.calls = calls
        self.concurrency = concurrency
        self.next_id = first_id
        self.started = 0
        self.finished = 0
        self.ready: deque = deque()
        self.closing: deque = deque()

    def run(self):
        from twisted.internet import defer

        self.done = defer.Deferred()
        for _ in range(min(self.concurrency, self.calls)):
            self._start_call()
        self.reactor.callLater(0, self._pump)
        return self.done

    def _start_call(self) -> None:
        from twisted.internet.address import IPv4Address

        call = MemoryCall()
        call.number = self.next_id
        call.transport = MemoryTransport(self, call)
        call.proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        call.proto.makeConnection(call.transport)
        self.started += 1
        self.next_id += 1
        self.ready.append((call, None))

    def _pump(self) -> None:
        from twisted.internet.protocol import connectionDone

        ready, closing = self.ready, self.closing
        for _ in range(500):  # then let the reactor run timers and thread results
            if closing:
                call = closing.popleft()
                call.proto.connectionLost(connectionDone)
                self.finished += 1
                if self.started < self.calls:
                    self._start_call()
            elif ready:
                call, data = ready.popleft()
                if call.transport.disconnecting:
                    continue
                if data is None:
                    call.proto.dataReceived(header(call.number))
                else:
                    call.proto.dataReceived(REPLIES[data[:3]])
            else:
                break
        if self.finished >= self.calls:
            self.done.callback(None)
        elif ready or closing:
            self.reactor.callLater(0, self._pump)
        else:
            self.done.errback(RuntimeError("calls stalled: no command and no close pending"))


# -- the fake Asterisk, over TCP in a child process ----------------------------------
async def _asterisk_side(port: int, calls: int, concurrency: int, first_id: int) -> int:
    loop = asyncio.get_running_loop()
    ids = iter(range(first_id, first_id + calls))
    good = 0

    class Call(asyncio.Protocol):
        def __init__(self, done: asyncio.Future) -> None:
            self.done = done
            self.buffer = b""

        def connection_made(self, transport) -> None:
            self.transport = transport
            transport.write(header(next(ids)))

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                newline = self.buffer.find(b"\n")
                if newline < 0:
                    return
                line, self.buffer = self.buffer[:newline], self.buffer[newline + 1 :]
                self.transport.write(REPLIES[line[:3]])

        def connection_lost(self, exc) -> None:
            if not self.done.done():
                self.done.set_result(True)

    async def worker(count: int) -> None:
        nonlocal good
        for _ in range(count):
            done = loop.create_future()
            await loop.create_connection(lambda done=done: Call(done), "127.0.0.1", port)
            finished = await done  # (not "good += await done": that reads good before awaiting)
            good += finished

    share = [calls // concurrency + (1 if i < calls % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(worker(n) for n in share if n))
    return good


def asterisk_side_main() -> None:
    """Child process: one ``PORT CALLS CONCURRENCY FIRST_ID`` line in, ``done N`` out."""
    for line in sys.stdin:
        port, calls, concurrency, first_id = (int(x) for x in line.split())
        good = asyncio.run(_asterisk_side(port, calls, concurrency, first_id))
        print(f"done {good}", flush=True)


class TcpAsterisk:
    """The child process, driven from the reactor thread."""

    def __init__(self, reactor) -> None:
        from twisted.internet import protocol

        driver = self

        class Child(protocol.ProcessProtocol):
            def outReceived(self, data: bytes) -> None:
                driver.buffer += data
                if b"\n" in driver.buffer:
                    line, driver.buffer = driver.buffer.split(b"\n", 1)
                    waiter, driver.waiter = driver.waiter, None
                    waiter.callback(int(line.split()[1]))

            def errReceived(self, data: bytes) -> None:
                sys.stderr.write(data.decode(errors="replace"))

        self.buffer = b""
        self.waiter = None
        self.proto = Child()
        self.process = reactor.spawnProcess(
            self.proto, sys.executable, [sys.executable, __file__, "--asterisk-side"], env=dict(os.environ)
        )

    def run(self, port: int, calls: int, concurrency: int, first_id: int):
        from twisted.internet import defer

        self.waiter = defer.Deferred()
        self.process.write(f"{port} {calls} {concurrency} {first_id}\n".encode())
        return self.waiter

    def stop(self) -> None:
        self.process.closeStdin()


# -- the servers -------------------------------------------------------------------
def start_redis() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("private redis-server did not start")


def build_gateway_factory(reactor, redis_url: str):
    """The FastAGI factory as ``hotline-gateway run --bench`` builds it (no listener)."""
    from gateway.app import build_gateway
    from gateway.config import load_config
    from gateway.logs import start_logging

    environ = {"HOTLINE_REDIS_URL": redis_url, "HOTLINE_LOG_LEVEL": "warn"}
    config = load_config(environ=environ)
    # app._run logs to stdout at the configured level; keep warnings out of the report
    start_logging(config.log.level, config.log.format, stream=io.StringIO())
    from gateway.storage.resp import RespClient

    gw = build_gateway(reactor, config, enable_bench=True)
    # Start only the Redis services (the thread pool, the call records' pipeline
    # client): the AGI/HTTP listeners are not needed here
    for svc in gw.services:
        if type(svc).__name__ == "_Pool" or isinstance(svc, RespClient):
            svc.startService()
            reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    return gw


def records_client(gw):
    """The call records' pipeline client among the gateway's services."""
    from gateway.storage.resp import RespClient

    return next(svc for svc in gw.services if isinstance(svc, RespClient))


def bare_factory():
    from twisted.internet.protocol import Factory

    from bench.baselines.bare_twisted import BareAgi

    return Factory.forProtocol(BareAgi)


def clear_samples(gw) -> None:
    from bench.baselines.bare_twisted import RTTS

    RTTS.clear()
    if gw.factory.rtt_samples is not None:
        gw.factory.rtt_samples.clear()


async def sleep(reactor, seconds: float) -> None:
    from twisted.internet import task

    await task.deferLater(reactor, seconds, lambda: None)


async def measure(reactor, args, factories, ports, asterisk, gw, profiler) -> list[dict]:
    next_id = 1
    results = []
    for round_no in range(args.rounds + 1):  # round 0 is a warm-up
        calls = max(args.calls // 10, 100) if round_no == 0 else args.calls
        order = ["bare", "gateway"] if round_no % 2 else ["gateway", "bare"]
        row = {"round": round_no, "calls": calls}
        for target in order:
            clear_samples(gw)
            gc.collect()
            await sleep(reactor, 0.1)
            use_profiler = profiler is not None and target == args.profile_target and round_no > 0
            if use_profiler:
                profiler.enable()
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
            if asterisk is None:
                await MemoryDriver(reactor, factories[target], calls, args.concurrency, next_id).run()
            else:
                good = await asterisk.run(ports[target], calls, args.concurrency, next_id)
                if good != calls:
                    raise RuntimeError(f"{target}: {good} of {calls} calls completed")
            # let the batched call records (50 ms timer, one pipeline round trip) land inside this target's time
            await sleep(reactor, args.settle)
            cpu = time.process_time() - cpu0
            main = time.thread_time() - main0  # the reactor thread alone
            usage = resource.getrusage(resource.RUSAGE_SELF)
            wall = time.perf_counter() - wall0
            if use_profiler:
                profiler.disable()
            next_id += calls
            row[target] = 1e6 * cpu / calls
            row[f"{target}_threads"] = 1e6 * (cpu - main) / calls
            row[f"{target}_sys"] = 1e6 * (usage.ru_stime - usage0.ru_stime) / calls
            row[f"{target}_wall"] = wall
        row["ratio"] = row["gateway"] / row["bare"]
        label = "warm-up" if round_no == 0 else f"round {round_no}"
        print(
            f"{label:>8}: {calls} calls each, bare {row['bare']:7.1f} µs/call (system {row['bare_sys']:5.1f}), "
            f"gateway {row['gateway']:7.1f} µs/call (system {row['gateway_sys']:5.1f}, "
            f"worker threads {row['gateway_threads']:5.1f}), "
            f"gateway/bare {row['ratio']:.2f}",
            flush=True,
        )
        if round_no:
            results.append(row)
    return results


def report(results: list[dict], args, store) -> None:
    ratios = [row["ratio"] for row in results]
    bare = statistics.median(row["bare"] for row in results)
    gateway = statistics.median(row["gateway"] for row in results)
    print()
    print(f"transport={args.transport} calls/round={args.calls} concurrency={args.concurrency} rounds={len(results)}")
    threads = statistics.median(row["gateway_threads"] for row in results)
    print(f"median CPU per call: bare {bare:.1f} µs, gateway {gateway:.1f} µs (of which worker threads {threads:.1f} µs)")
    print(
        f"gateway/bare CPU ratio: median {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print(f"call-record backlog at the end: {store.backlog_length} (0 = every record reached Redis)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per target per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (plus one warm-up)")
    parser.add_argument("--concurrency", type=int, default=50, help="calls in progress at once")
    parser.add_argument("--transport", choices=("memory", "tcp"), default="memory")
    parser.add_argument(
        "--redis",
        default="auto",
        help="'auto': start a private redis-server; 'unreachable': a closed port; or a redis:// URL",
    )
    parser.add_argument("--settle", type=float, default=0.2, help="seconds after each target's calls, measured")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the measured rounds of one target into FILE")
    parser.add_argument("--profile-target", choices=("gateway", "bare"), default="gateway")
    parser.add_argument("--asterisk-side", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.asterisk_side:
        asterisk_side_main()
        return 0
    from twisted.internet import defer, reactor

    redis_proc = None
    if args.redis == "auto":
        redis_proc, redis_url = start_redis()
    elif args.redis == "unreachable":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            redis_url = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    else:
        redis_url = args.redis
    print(f"call records: {redis_url} ({args.redis})", flush=True)

    gw = build_gateway_factory(reactor, redis_url)
    factories = {"bare": bare_factory(), "gateway": gw.factory}
    ports = {}
    asterisk = None
    if args.transport == "tcp":
        for target, factory in factories.items():
            ports[target] = reactor.listenTCP(0, factory, backlog=1024, interface="127.0.0.1").getHost().port
        asterisk = TcpAsterisk(reactor)
    from gateway.app import tune_gc

    tune_gc()  # as app._run does after start-up (gc.freeze, gen-0 threshold)
    profiler = cProfile.Profile() if args.profile else None
    outcome: list = []

    async def run() -> None:
        try:
            if args.redis != "unreachable":
                await records_client(gw).when_connected(fail_after_failures=5)
            results = await measure(reactor, args, factories, ports, asterisk, gw, profiler)
            report(results, args, gw.store)
            outcome.append(0)
        except BaseException:
            import traceback

            traceback.print_exc()
            raise
        finally:
            if asterisk is not None:
                asterisk.stop()
            reactor.stop()

    def failed(failure):
        failure.printTraceback()
        outcome.append(1)

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(run()).addErrback(failed))
    try:
        reactor.run()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"profile of the {args.profile_target} rounds: {args.profile}")
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
