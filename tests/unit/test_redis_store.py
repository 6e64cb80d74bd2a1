"""Call records: written in one pipeline; a dead Redis costs the call nothing and loses nothing."""
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.calls import CallRecord
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_store import RedisCallStore


class FakePipe:
    def __init__(self, server):
        self.server, self.ops = server, []

    def hset(self, key, mapping):
        self.ops.append(("hset", key, dict(mapping)))

    def expire(self, key, ttl):
        self.ops.append(("expire", key, ttl))

    def zadd(self, key, mapping):
        self.ops.append(("zadd", key, mapping))

    def execute(self):
        if self.server.down:
            raise ConnectionError("Redis is down")
        for op in self.ops:
            if op[0] == "hset":
                self.server.hashes.setdefault(op[1], {}).update(op[2])
        self.server.executions += 1


class FakeRedis:
    def __init__(self):
        self.down, self.hashes, self.executions = False, {}, 0

    def pipeline(self, transaction=False):
        return FakePipe(self)

    def ping(self):
        if self.down:
            raise ConnectionError("down")
        return True


def make(redis):
    clock = task.Clock()
    registry = CollectorRegistry()
    store = RedisCallStore(redis, defer.maybeDeferred, clock, GatewayMetrics(registry), retry_interval=5)
    return store, clock, registry


def record(n=1):
    return CallRecord(call_id=f"c{n}", channel="Local/x", caller="13800138000", script="main", started_at=1000.0 + n)


def results(d):
    out = []
    d.addCallback(out.append)
    return out


def test_writes_are_batched_into_one_round_trip():
    redis = FakeRedis()
    store, clock, _ = make(redis)
    rec = record()
    started = results(store.call_started(rec))
    rec.outcome, rec.ended_at = "handoff_queue", 1010.0
    store.call_ended(rec)
    store.call_started(record(2))
    assert redis.executions == 0 and started == []
    clock.advance(0.05)
    assert redis.executions == 1 and started == [True]
    assert redis.hashes["hotline:call:c1"]["outcome"] == "handoff_queue"
    assert "hotline:call:c2" in redis.hashes


def test_a_full_batch_is_written_at_once():
    redis = FakeRedis()
    clock = task.Clock()
    store = RedisCallStore(redis, defer.maybeDeferred, clock, GatewayMetrics(CollectorRegistry()), batch_size=3)
    for n in range(3):
        store.call_started(record(n))
    assert redis.executions == 1


def test_redis_down_backlogs_then_replays_in_order():
    redis = FakeRedis()
    redis.down = True
    store, clock, registry = make(redis)
    rec = record()
    first = results(store.call_started(rec))
    clock.advance(0.05)
    assert first == [False]
    rec.outcome = "handoff_queue"
    assert results(store.call_ended(rec)) == [False]
    assert store.backlog_length == 2
    assert registry.get_sample_value("hotline_redis_failures_total", {"operation": "call_start"}) == 1
    assert registry.get_sample_value("hotline_redis_backlog_records") == 2
    clock.advance(5)  # still down: retried and kept
    assert store.backlog_length == 2
    redis.down = False
    clock.advance(5)
    assert store.backlog_length == 0
    assert redis.hashes["hotline:call:c1"]["outcome"] == "handoff_queue"
    assert registry.get_sample_value("hotline_redis_backlog_records") == 0


def test_backlog_is_bounded_and_counts_drops():
    redis = FakeRedis()
    redis.down = True
    clock = task.Clock()
    registry = CollectorRegistry()
    store = RedisCallStore(redis, defer.maybeDeferred, clock, GatewayMetrics(registry), backlog_size=3)
    for n in range(5):
        store.call_started(record(n))
        clock.advance(0.05)
    assert store.backlog_length == 3
    assert registry.get_sample_value("hotline_redis_backlog_dropped_total") == 2


def test_ping_reports_false_when_down():
    redis = FakeRedis()
    store, _, _ = make(redis)
    assert results(store.ping()) == [True]
    redis.down = True
    assert results(store.ping()) == [False]
