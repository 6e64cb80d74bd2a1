"""The primary is killed (SIGKILL) while writes are in flight; Sentinel promotes the replica; every
client follows it and no write is lost: the call records (reactor client and store backlog), blocking
redis-py writes retried by their caller, and ASR jobs (the worker's own retry loop).

Real redis-server and redis-sentinel processes (tests/sentinel/cluster.py); integration tests.
"""
from __future__ import annotations

import threading
import time

import redis
from prometheus_client import CollectorRegistry
from twisted.internet import defer

from gateway.calls import CallRecord
from gateway.config import load_config
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_clients import blocking_client, sentinels_of
from gateway.storage.redis_store import RedisCallStore
from gateway.storage.resp import RespClient

from ..asr.test_worker_redis import StubDrafter, add_job, fake_transcribe, make_queue, run_sync
from ..reactor_helpers import run_until, wait

RECORDS = 300


def records_client(reactor, config) -> RespClient:
    return RespClient(config.redis.url, reactor=reactor, sentinels=sentinels_of(config.redis), timeout=0.5,
                      connect_timeout=0.5, reconnect_initial=0.05, reconnect_max=0.5)


def test_call_records_written_while_the_primary_dies_all_land_on_the_new_primary(cluster, private_reactor):
    """300 call starts, one every 20 ms; the primary is SIGKILLed after the 100th. Writes refused in the
    failover window wait in the store's backlog and are replayed to the promoted replica: all 300 there."""
    reactor = private_reactor
    registry = CollectorRegistry()
    config = load_config(environ=cluster.environment(db=2))
    client = records_client(reactor, config)
    store = RedisCallStore(client.execute, reactor, GatewayMetrics(registry), ttl=3600, retry_interval=0.2,
                           ping=client.ping)
    stored: list[bool] = []

    def call_starts(n: int) -> None:
        record = CallRecord(call_id=f"c{n}", channel=f"PJSIP/carrier-{n}", caller="13800138000", script="main",
                            started_at=1700000000.0 + n)
        store.call_started(record).addCallback(stored.append)

    client.startService()
    try:
        wait(reactor, client.when_connected())
        old = cluster.primary()
        assert "primary 127.0.0.1:6470" in client.target
        for n in range(RECORDS):
            reactor.callLater(n * 0.02, call_starts, n)
        run_until(reactor, lambda: len(stored) >= 100)
        assert cluster.kill_primary() == old
        run_until(reactor, lambda: len(stored) == RECORDS, timeout=30)
        run_until(reactor, lambda: cluster.primary() not in (None, old), timeout=30)
        new = cluster.primary()
        run_until(reactor, lambda: store.backlog_length == 0, timeout=30)
        assert stored.count(False) > 0, "no write fell into the failover window: the test proved nothing"
        check = cluster.client(new, db=2)
        assert check.zcard("hotline:calls") == RECORDS
        pipe = check.pipeline(transaction=False)
        for n in range(RECORDS):
            pipe.hget(f"hotline:call:c{n}", "channel")
        assert pipe.execute() == [f"PJSIP/carrier-{n}" for n in range(RECORDS)]
        assert registry.get_sample_value("hotline_redis_backlog_records") == 0
        assert registry.get_sample_value("hotline_redis_dropped_total") in (None, 0.0)
        assert client.connected and f"primary {new[0]}:{new[1]}" in client.target
    finally:
        store.stop()
        stopping = client.stopService()
        run_until(reactor, lambda: stopping.called)


def test_a_readonly_reply_from_a_real_replica_drops_the_connection(cluster, private_reactor):
    """Redis' own READONLY error (for the store's EVAL) is recognised: the write is backlogged and the
    connection dropped, so a client would ask the sentinels again (here, the URL names the replica)."""
    reactor = private_reactor
    replica = cluster.data_addresses[1]
    client = RespClient(f"redis://{replica[0]}:{replica[1]}/0", reactor=reactor, timeout=0.5,
                        reconnect_initial=0.05, reconnect_max=0.2)
    registry = CollectorRegistry()
    store = RedisCallStore(client.execute, reactor, GatewayMetrics(registry), retry_interval=60)
    client.startService()
    try:
        wait(reactor, client.when_connected())
        first = client._current
        record = CallRecord(call_id="r1", channel="Local/x", caller="1", script="main", started_at=1.0)
        assert wait(reactor, store.call_started(record)) is False
        assert store.backlog_length == 1 and (first.closed or first.dropping)
        run_until(reactor, lambda: client.connected and client._current is not first)
    finally:
        store.stop()
        stopping = client.stopService()
        run_until(reactor, lambda: stopping.called)


def write_with_retry(write, deadline: float = 30.0) -> int:
    """The caller's loop around a blocking write: retried while Redis fails over; returns the failures."""
    failures = 0
    give_up = time.monotonic() + deadline
    while True:
        try:
            write()
            return failures
        except (redis.ConnectionError, redis.TimeoutError):
            failures += 1
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def test_blocking_writes_retried_by_their_caller_land_once_each_on_the_new_primary(cluster):
    """redis-py through the sentinels (blocking_client): the primary dies after 100 of 300 writes; the
    caller retries each failed write (idempotent: SET NX + ZADD in one MULTI) until the replica is
    promoted; the new primary has each exactly once."""
    client = blocking_client(load_config(environ=cluster.environment(db=3)).redis, timeout=0.5)
    failures = 0
    old = cluster.primary()
    for n in range(RECORDS):
        if n == 100:
            assert cluster.kill_primary() == old

        def write(n=n) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.set(f"w:{n}", n, nx=True)
            pipe.zadd("w:index", {f"w:{n}": n})
            pipe.execute()

        failures += write_with_retry(write)
    new = cluster.primary()
    assert new != old and failures > 0
    check = cluster.client(new, db=3)
    assert check.zcard("w:index") == RECORDS
    assert check.mget([f"w:{n}" for n in range(RECORDS)]) == [str(n) for n in range(RECORDS)]
    assert client.connection_pool.master_address == new


def test_asr_jobs_in_flight_when_the_primary_dies_are_each_drafted_once(cluster, private_reactor, tmp_path):
    """The ASR worker's loop (its own Redis retry with backoff, reclaim of jobs left pending) on the
    sentinels' primary: the primary is SIGKILLed mid-run from another thread; afterwards every job has
    exactly one draft on the new primary, none is pending, none dead-lettered."""
    from asr.metrics import AsrMetrics
    from asr.worker import TranscriptionWorker

    reactor = private_reactor
    jobs = 60
    client = blocking_client(load_config(environ=cluster.environment()).redis, timeout=1.0)
    recording = tmp_path / "root" / "msg.wav"
    recording.parent.mkdir()
    recording.write_bytes(b"placeholder")

    def slow_transcribe(path, should_stop):
        time.sleep(0.02)  # a job takes a little while, so the kill falls mid-run
        return fake_transcribe(path, should_stop)

    registry = CollectorRegistry()
    queue = make_queue(client)
    worker = TranscriptionWorker(queue, slow_transcribe, StubDrafter(), clock=reactor, run_redis=run_sync,
                                 run_decode=run_sync, metrics=AsrMetrics(registry), recordings_root=str(tmp_path),
                                 reclaim_idle=1.0, read_block_ms=None)
    queue.ensure_group()
    for n in range(jobs):
        add_job(client, f"msg-{n}", "/root/msg.wav")
    assert client.execute_command("WAIT", 1, 5000) == 1  # the jobs are on the replica too
    old = cluster.primary()
    killer = threading.Timer(0.4, cluster.kill_primary)
    killer.start()
    try:
        deadline = time.monotonic() + 90
        while not (killer.finished.is_set() and _all_drafted(cluster, old, jobs)):
            assert time.monotonic() < deadline, "the jobs were not all drafted in time"
            if wait(reactor, defer.ensureDeferred(worker.run_once()), timeout=60) is None:
                reactor.iterate(0.05)  # nothing to do now: a job left pending is reclaimed once idle
    finally:
        killer.join()
    new = cluster.primary()
    check = cluster.client(new)
    assert new != old
    assert check.xlen("hotline:drafts") == jobs
    assert sum(check.exists(f"hotline:draft:msg-{n}") for n in range(jobs)) == jobs
    assert check.xpending("hotline:jobs:transcribe", "asr")["pending"] == 0
    assert check.xlen("hotline:jobs:transcribe:dead") == 0
    assert sum(s.value for m in registry.collect() if m.name == "hotline_asr_redis_errors" for s in m.samples
               if s.name.endswith("_total")) > 0


def _all_drafted(cluster, old, jobs: int) -> bool:
    new = cluster.primary()
    if new is None or new == old:
        return False
    check = cluster.client(new)
    try:
        return check.xlen("hotline:drafts") >= jobs and check.xpending("hotline:jobs:transcribe", "asr")["pending"] == 0
    except redis.RedisError:
        return False
