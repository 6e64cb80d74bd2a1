"""CPU per call of the call-record store (``RedisCallStore``): both writes, the flush, the reply.

Each call is two writes (``call_started`` then, ``--lag`` calls later,
``call_ended`` with a realistic end: outcome, ended_at, handoff, a 4-step path,
flow and version), so batches mix starts and ends as under load. Batches are
exactly ``--batch`` writes (``batch_size``; the 50 ms timer is started and
cancelled as in production). Three layers:

* ``fake``: ``execute`` is a stub returning ``defer.succeed([1] * len(commands))``:
  the store's own Python (records → commands, Deferreds, batching) only.
* ``wire``: the real ``RespProtocol`` on a transport that throws bytes away; the
  replies (``:1`` per command) are fed to ``dataReceived`` at once: adds RESP
  encoding (``hiredis.pack_command``), hiredis parsing and reply pairing.
* ``redis``: a real ``RespClient`` to a private ``redis-server`` on a free port,
  driven by a private ``SelectReactor``; one batch in flight at a time. Adds the
  socket work and the reactor loop (both the same before/after). Also printed:
  the Redis server's own CPU per call (from /proc, 10 ms ticks: coarse).

CPU is ``time.process_time`` of this process; GC is disabled while measuring.
Printed: the best and the median µs per call over ``--rounds`` rounds.

    .venv/bin/python bench/call_store_bench.py            # ~20 s
    .venv/bin/python bench/call_store_bench.py --modes fake wire --batch 4
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.calls import CallRecord
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_store import RedisCallStore
from gateway.storage.resp import RespClient, RespProtocol


def make_records(n: int, first: int) -> list[CallRecord]:
    return [
        CallRecord(call_id=f"1700000000.{first + i}", channel=f"PJSIP/carrier-{first + i:08x}",
                   caller="13800138000", script="main", started_at=1700000000.0 + (first + i) * 0.037)
        for i in range(n)
    ]


def end(record: CallRecord) -> None:
    record.flow, record.flow_version = "main", "7"
    record.path = ["greeting", "menu", "1", "queue:sales"]
    record.outcome, record.handoff = "handoff_queue", "queue:12345"
    record.ended_at = record.started_at + 42.5


def drive(store: RedisCallStore, records: list[CallRecord], lag: int, after_batch, batch: int,
          written: list) -> None:
    """Start every record, end each ``lag`` records later; ``after_batch()`` after every ``batch`` writes;
    then ``stop()`` (sends the last, partial batch). The writes' Deferreds go to ``written`` (as in the
    gateway, nothing is added to them: the FastAGI server ignores them)."""
    writes = 0
    for i, record in enumerate(records):
        written.append(store.call_started(record))
        writes += 1
        if writes % batch == 0:
            after_batch()
        if i >= lag:
            ended = records[i - lag]
            end(ended)
            written.append(store.call_ended(ended))
            writes += 1
            if writes % batch == 0:
                after_batch()
    for ended in records[len(records) - lag:]:
        end(ended)
        written.append(store.call_ended(ended))
        writes += 1
        if writes % batch == 0:
            after_batch()
    store.stop()


def all_stored(written: list) -> bool:
    return all(d.called and d.result is True for d in written)


def measure(run) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        run()
        return time.process_time() - t0
    finally:
        gc.enable()


class DiscardTransport:
    disconnecting = False

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data) -> None:
        pass

    def abortConnection(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass


def round_fake_or_wire(mode: str, calls: int, lag: int, batch: int, first: int) -> float:
    clock = task.Clock()
    if mode == "fake":
        def execute(commands):
            return defer.succeed([1] * len(commands))
    else:
        proto = RespProtocol(clock=clock, timeout=0.5)
        proto.makeConnection(DiscardTransport())
        reply = b":1\r\n"

        def execute(commands):
            d = proto.execute(commands)
            proto.dataReceived(reply * len(commands))
            return d
    store = RedisCallStore(execute, clock, GatewayMetrics(CollectorRegistry()), batch_size=batch)
    records = make_records(calls, first)
    written: list = []
    cpu = measure(lambda: drive(store, records, lag, lambda: None, batch, written))
    assert len(written) == 2 * calls and all_stored(written) and store.backlog_length == 0
    return cpu


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RealRedis:
    def __init__(self) -> None:
        from twisted.internet.selectreactor import SelectReactor

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.reactor = SelectReactor()
        self.client = RespClient(f"redis://127.0.0.1:{self.port}/0", reactor=self.reactor, timeout=5.0,
                                 reconnect_initial=0.05, reconnect_max=0.2)
        self.client.startService()
        deadline = time.monotonic() + 10
        while not self.client.connected:
            if time.monotonic() > deadline:
                self.close()
                raise SystemExit("private redis-server did not answer")
            self.reactor.iterate(0.02)

    def run_until(self, condition) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting on Redis")
            self.reactor.iterate(0.01)

    def round(self, calls: int, lag: int, batch: int, first: int) -> tuple[float, float]:
        store = RedisCallStore(self.client.execute, self.reactor, GatewayMetrics(CollectorRegistry()),
                               batch_size=batch, batch_interval=10.0, key_prefix="bench", ttl=600)
        records = make_records(calls, first)
        written: list = []

        def after_batch():  # one batch in flight: wait for its reply before the next writes
            self.run_until(lambda: written[-1].called)

        def run():
            drive(store, records, lag, after_batch, batch, written)
            self.run_until(lambda: written[-1].called)

        server_before = proc_cpu_seconds(self.proc.pid)
        cpu = measure(run)
        server = proc_cpu_seconds(self.proc.pid) - server_before
        assert len(written) == 2 * calls and all_stored(written) and store.backlog_length == 0
        return cpu, server

    def close(self) -> None:
        d = self.client.stopService()
        deadline = time.monotonic() + 5
        while not d.called and time.monotonic() < deadline:
            self.reactor.iterate(0.01)
        self.proc.kill()
        self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=50, help="writes per batch (batch_size)")
    parser.add_argument("--lag", type=int, default=25, help="a call ends this many calls after it started")
    parser.add_argument("--modes", nargs="+", default=["fake", "wire", "redis"], choices=["fake", "wire", "redis"])
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; {args.calls} calls/round, {args.rounds} rounds (+1 warm-up), "
          f"batch {args.batch} writes, end {args.lag} calls after start")
    first = 0
    for mode in args.modes:
        server_cpu: list[float] = []
        per_call: list[float] = []
        real = RealRedis() if mode == "redis" else None
        try:
            for n in range(args.rounds + 1):
                if real is None:
                    cpu = round_fake_or_wire(mode, args.calls, args.lag, args.batch, first)
                else:
                    cpu, server = real.round(args.calls, args.lag, args.batch, first)
                    if n:
                        server_cpu.append(server)
                first += args.calls
                if n:
                    per_call.append(cpu / args.calls * 1e6)
        finally:
            if real is not None:
                real.close()
        line = (f"{mode:5}: {min(per_call):6.2f} µs/call best, {statistics.median(per_call):6.2f} median "
                f"({' '.join(f'{v:.1f}' for v in per_call)})")
        if server_cpu:
            line += f"; redis-server {sum(server_cpu) / (args.calls * len(server_cpu)) * 1e6:.1f} µs/call"
        print(line, flush=True)


if __name__ == "__main__":
    main()
