"""Callback dialer bench: 10,000 abandons scheduled, then dispatched at a pacing limit.

One command, no lab needed (a private redis-server is started on a free port):

    .venv/bin/python bench/callback_bench.py            # writes bench/last-callback.txt and .json

Two figures, each as a ratio against a baseline measured in the same run on
the same Redis:

* scheduling overhead per job — ``CallbackService.schedule`` (number policy,
  idempotent Lua ADD with the merge index, history entry) against a bare
  ``ZADD`` per job (one round trip each, same client);
* dispatch lateness — job *i* is due at ``t0 + i / rate``, exactly the pacing
  rate, so a perfect dispatcher starts it on time; lateness = when its
  Originate was sent − its due time. The dialer (real ``Dialer`` on the real
  reactor and Redis thread pool: claim, write-ahead ``dialing`` with caps and
  do-not-call, Originate, outcome, ``finish``) against a bare dispatcher on
  the same reactor, poll interval and shared token bucket (``PaceStore``) that
  only pops due ids (``ZRANGEBYSCORE`` + ``ZREM``) and "sends".

The AMI side is a stand-in that accepts each Originate at once and reports
the call over (pressed 1, 30 s talk) 50 ms later, so the dialer's full
attempt path runs; Asterisk itself is not measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import redis  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from gateway.ami.codec import AmiMessage  # noqa: E402
from gateway.callbacks.metrics import CallbackMetrics  # noqa: E402
from gateway.callbacks.service import CallbackService, CallbackSettings  # noqa: E402
from gateway.dialer.jobs import JobStore  # noqa: E402
from gateway.dialer.pacestore import PaceStore, new_slot_id  # noqa: E402
from gateway.dialer.pacing import Pacer, QueueLoad, TrunkLimit  # noqa: E402
from gateway.dialer.policy import NumberPolicy  # noqa: E402
from gateway.dialer.retry import RetryPolicy  # noqa: E402
from gateway.dialer.service import Dialer, DialerMetrics, DialerSettings  # noqa: E402
from gateway.dialer.windows import CallWindows  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    for _ in range(200):
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def msg(**headers) -> AmiMessage:
    return AmiMessage(headers=headers, lines=tuple(headers.items()))


# -- scheduling -------------------------------------------------------------------------
def bench_schedule(client, n: int) -> dict:
    client.flushdb()
    t = time.perf_counter()
    for i in range(n):
        client.zadd("base:due", {f"job-{i}": 1000.0 + i})
    base = (time.perf_counter() - t) / n

    client.flushdb()
    clock = task.Clock()
    clock.advance(time.time())
    service = CallbackService(clock=clock, run_blocking=defer.maybeDeferred, store=JobStore(client, "bench"),
                              policy=NumberPolicy(), metrics=CallbackMetrics(CollectorRegistry()),
                              settings=CallbackSettings())
    t = time.perf_counter()
    for i in range(n):
        d = defer.Deferred.fromCoroutine(service.schedule(
            source="abandon", call_id=f"17000.{i}", caller=f"138{i:08d}", original_at=clock.seconds() - 60,
            queue="12345", details={"wait": 30}))
        assert d.called
    ours = (time.perf_counter() - t) / n
    return {"jobs": n, "baseline_zadd_us": base * 1e6, "schedule_us": ours * 1e6, "ratio": ours / base}


# -- dispatch ----------------------------------------------------------------------------
class InstantAmi:
    """Accepts each Originate at once; the call is over (pressed 1, 30 s talk) 50 ms later."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.logged_in = True
        self.sent: dict[str, float] = {}
        self.dialer: Dialer | None = None
        self.ids = 0

    def send_action(self, action, fields=None, event_list=False, timeout=None):
        if action != "Originate":
            return defer.fail(RuntimeError(action))
        now = time.perf_counter()
        values = dict((k, v) for k, v in fields if k != "Variable")
        variables = dict(v.split("=", 1) for k, v in fields if k == "Variable")
        self.sent[variables["__HOTLINE_CB_DIAL"]] = now
        attempt = values["ChannelId"]
        self.ids += 1
        self.reactor.callLater(0.05, self.dialer.on_user_event, msg(
            Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt, Step="done", Data="result,1,30"))
        return defer.succeed(msg(Response="Success", ActionID=f"hl-{self.ids}"))


async def run_dialer(reactor, client, pool_run, n, rate, poll, settle):
    client.flushdb()
    store = JobStore(client, "bench")
    ami = InstantAmi(reactor)
    t0_wall = time.time() + settle
    t0_perf = time.perf_counter() + settle
    from gateway.dialer.jobs import NewJob

    pipe_jobs = [NewJob(f"cb-{i}", "callback", f"138{i:08d}", f"+86138{i:08d}", t0_wall + i / rate,
                        t0_wall + i / rate, t0_wall + 3600) for i in range(n)]
    for job in pipe_jobs:
        store.add(job, time.time())
    assert time.perf_counter() < t0_perf, "jobs stored after t0: raise settle"
    # agents to spare: the bench measures the dialer, not the agent gate
    pacer = Pacer({"carrier": TrunkLimit(channels=10_000, reserve=0, max_outbound=5_000, rate=rate)},
                  queue_loads=lambda: {"12345": QueueLoad(available=10_000, waiting=0)})
    finals = []
    dialer = Dialer(clock=reactor, run_blocking=pool_run, store=store, ami=ami, pacer=pacer,
                    pace_store=PaceStore(client, "bench"),
                    windows=CallWindows("00:00", "24:00", holidays="allow"), retry=RetryPolicy(),
                    metrics=DialerMetrics(CollectorRegistry()),
                    settings=DialerSettings(poll_interval=poll, batch=200, lease=120, min_talk=10))
    dialer.add_final_listener(lambda job, final, outcome, at: finals.append(final))
    ami.dialer = dialer
    dialer.start()
    while len(finals) < n:
        await task.deferLater(reactor, 0.2, lambda: None)
    dialer.stop()
    lateness = [ami.sent[f"138{i:08d}"] - (t0_perf + i / rate) for i in range(n)]
    return {"lateness": lateness, "finals": finals, "originates": ami.ids}


async def run_baseline(reactor, client, pool_run, n, rate, poll, settle):
    client.flushdb()
    t0_wall = time.time() + settle
    t0_perf = time.perf_counter() + settle
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.zadd("base:due", {f"138{i:08d}": t0_wall + i / rate})
    pipe.execute()
    # the same shared token bucket as the dialer's (one Redis round trip to take slots, one to give back)
    limit = TrunkLimit(channels=10_000, reserve=0, max_outbound=10_000, rate=rate)
    paces = PaceStore(client, "base")
    sent: dict[str, float] = {}
    busy = {"on": False}

    async def tick():
        if busy["on"]:
            return
        busy["on"] = True
        try:
            now = time.time()
            ids = [new_slot_id() for _ in range(200)]
            slots, _ = await pool_run(lambda: paces.acquire("carrier", limit, now, ids, limit.channels, 120.0))
            if not slots:
                return

            def pop():
                ids = client.zrangebyscore("base:due", "-inf", now, start=0, num=len(slots))
                if ids:
                    client.zrem("base:due", *ids)
                return ids

            ids = await pool_run(pop)
            for member in ids:
                sent[member] = time.perf_counter()
            done = time.time()
            # unused slots back with their tokens; the "sent" ones end at once (nothing to hang up)
            await pool_run(lambda: paces.release("carrier", limit, done, refund=slots[len(ids):],
                                                 spent=slots[:len(ids)]))
        finally:
            busy["on"] = False

    loop = task.LoopingCall(lambda: defer.Deferred.fromCoroutine(tick()))
    loop.clock = reactor
    loop.start(poll, now=False)
    while len(sent) < n:
        await task.deferLater(reactor, 0.2, lambda: None)
    loop.stop()
    return {"lateness": [sent[f"138{i:08d}"] - (t0_perf + i / rate) for i in range(n)]}


def summarise(values):
    ms = [v * 1000 for v in values]
    return {"p50_ms": pct(ms, 0.50), "p99_ms": pct(ms, 0.99), "max_ms": max(ms), "mean_ms": statistics.fmean(ms)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0, help="pacing limit, calls per second")
    parser.add_argument("--poll", type=float, default=0.05, help="dispatcher poll interval (both)")
    parser.add_argument("--out", default=os.path.join(HERE, "last-callback"))
    args = parser.parse_args(argv)

    proc, client = start_redis()
    try:
        schedule = bench_schedule(client, args.jobs)
        from twisted.internet import reactor
        from twisted.internet.threads import deferToThreadPool
        from twisted.python.threadpool import ThreadPool

        pool = ThreadPool(minthreads=1, maxthreads=4, name="redis")
        pool.start()
        result: dict = {}

        async def both():
            run = lambda fn: deferToThreadPool(reactor, pool, fn)  # noqa: E731
            # the jobs are stored before t0 (one Lua ADD each, measured above): t0 is far enough
            # ahead that the first job is not already overdue when dispatching starts
            settle = 1.0 + 2.0 * args.jobs * schedule["schedule_us"] / 1e6
            result["baseline"] = await run_baseline(reactor, client, run, args.jobs, args.rate, args.poll, settle)
            result["dialer"] = await run_dialer(reactor, client, run, args.jobs, args.rate, args.poll, settle)

        def stop(outcome):
            pool.stop()
            reactor.stop()
            return outcome

        reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(both()).addBoth(stop))
        reactor.run()
        if "dialer" not in result:
            raise SystemExit("the dispatch run did not finish")
    finally:
        proc.terminate()
        proc.wait(10)

    base, ours = summarise(result["baseline"]["lateness"]), summarise(result["dialer"]["lateness"])
    finals = result["dialer"]["finals"]
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{platform.node()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "jobs": args.jobs, "rate": args.rate, "poll": args.poll,
        "schedule": schedule,
        "dispatch": {"baseline": base, "dialer": ours, "p99_ratio": ours["p99_ms"] / base["p99_ms"],
                     "originates": result["dialer"]["originates"],
                     "connected": finals.count("connected"), "finals": len(finals)},
    }
    lines = [
        f"callback bench {report['when']} — {report['machine']}",
        f"jobs {args.jobs}, pacing {args.rate:.0f} calls/s, poll {args.poll * 1000:.0f} ms",
        "",
        "scheduling (per job)",
        f"  baseline ZADD          {schedule['baseline_zadd_us']:8.1f} µs",
        f"  CallbackService        {schedule['schedule_us']:8.1f} µs   × {schedule['ratio']:.2f}",
        "",
        "dispatch lateness (Originate sent − due time; jobs due at exactly the pacing rate)",
        f"  baseline ZPOP loop     p50 {base['p50_ms']:7.1f} ms  p99 {base['p99_ms']:7.1f} ms  max {base['max_ms']:7.1f} ms",
        f"  dialer                 p50 {ours['p50_ms']:7.1f} ms  p99 {ours['p99_ms']:7.1f} ms  max {ours['max_ms']:7.1f} ms"
        f"   p99 × {report['dispatch']['p99_ratio']:.2f}",
        f"  originates {report['dispatch']['originates']}, jobs finished {len(finals)}, connected {finals.count('connected')}",
    ]
    text = "\n".join(lines)
    print(text)
    with open(args.out + ".txt", "w") as handle:
        handle.write(text + "\n")
    with open(args.out + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
