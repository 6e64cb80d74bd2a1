"""Call records: written in one pipeline; a dead Redis costs the call nothing and loses nothing."""
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.calls import CallRecord
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_store import RedisCallStore


class FakeRedis:
    """Stands for ``RespClient.execute``: runs HSET/EXPIRE/ZADD/PING pipelines, or fails fast when down."""

    def __init__(self):
        self.down, self.hashes, self.ttls, self.index, self.executions = False, {}, {}, {}, 0
        self.pipelines = []

    def execute(self, commands):
        self.pipelines.append([tuple(c) for c in commands])
        if self.down:
            return defer.fail(ConnectionError("Redis is not connected"))
        replies = []
        for name, *args in commands:
            if name == "HSET":
                key, pairs = args[0], args[1:]
                assert len(pairs) % 2 == 0
                self.hashes.setdefault(key, {}).update(zip(pairs[::2], pairs[1::2], strict=True))
                replies.append(len(pairs) // 2)
            elif name == "EXPIRE":
                self.ttls[args[0]] = args[1]
                replies.append(1)
            elif name == "ZADD":
                self.index.setdefault(args[0], {})[args[2]] = float(args[1])
                replies.append(1)
            elif name == "PING":
                replies.append(b"PONG")
            else:
                raise AssertionError(f"unexpected command {name}")
        self.executions += 1
        return defer.succeed(replies)


def make(redis, **kwargs):
    clock = task.Clock()
    registry = CollectorRegistry()
    kwargs.setdefault("retry_interval", 5)
    store = RedisCallStore(redis.execute, clock, GatewayMetrics(registry), **kwargs)
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


def test_a_record_is_a_hash_with_a_ttl_and_an_index_entry():
    redis = FakeRedis()
    store, clock, _ = make(redis, ttl=3600)
    rec = record()
    store.call_started(rec)
    clock.advance(0.05)
    assert redis.pipelines[0][0][:2] == ("HSET", "hotline:call:c1")
    assert redis.pipelines[0][1:] == [("EXPIRE", "hotline:call:c1", 3600), ("ZADD", "hotline:calls", "1001.000", "c1")]
    assert redis.hashes["hotline:call:c1"] == rec.as_hash()
    assert redis.ttls == {"hotline:call:c1": 3600}
    assert redis.index == {"hotline:calls": {"c1": 1001.0}}


def test_the_end_writes_only_what_a_call_end_changes():
    redis = FakeRedis()
    store, clock, _ = make(redis)
    rec = record()
    store.call_started(rec)
    clock.advance(0.05)
    rec.outcome, rec.ended_at, rec.handoff, rec.path = "handoff_queue", 1010.0, "queue:12345", ["menu", "1"]
    rec.flow, rec.flow_version = "main", "7"
    assert results(store.call_ended(rec)) == []
    clock.advance(0.05)
    hset, expire = redis.pipelines[1]
    fields = dict(zip(hset[2::2], hset[3::2], strict=True))
    assert set(fields) == {"call_id", "outcome", "ended_at", "handoff", "path", "flow", "flow_version"}
    assert expire == ("EXPIRE", "hotline:call:c1", 90 * 24 * 3600)  # no second index entry
    assert redis.hashes["hotline:call:c1"] == rec.as_hash()


def test_a_full_batch_is_written_at_once():
    redis = FakeRedis()
    store, _, _ = make(redis, batch_size=3)
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
    assert registry.get_sample_value("hotline_redis_failures_total", {"operation": "backlog_flush"}) == 1
    redis.down = False
    clock.advance(5)
    assert store.backlog_length == 0
    assert redis.hashes["hotline:call:c1"]["outcome"] == "handoff_queue"
    assert redis.hashes["hotline:call:c1"]["caller"] == "13800138000"  # the start's fields too
    assert redis.index == {"hotline:calls": {"c1": 1001.0}}
    assert registry.get_sample_value("hotline_redis_backlog_records") == 0


def test_a_failed_end_write_is_replayed_as_the_whole_record():
    """The backlog may have dropped the start write: the end's replay alone makes a complete hash."""
    redis = FakeRedis()
    store, clock, registry = make(redis)
    rec = record()
    redis.down = True
    rec.outcome, rec.ended_at = "completed", 1020.0
    ended = results(store.call_ended(rec))
    clock.advance(0.05)
    assert ended == [False]
    assert registry.get_sample_value("hotline_redis_failures_total", {"operation": "call_end"}) == 1
    redis.down = False
    clock.advance(5)
    assert store.backlog_length == 0
    assert redis.hashes["hotline:call:c1"] == rec.as_hash()


def test_while_the_backlog_is_non_empty_writes_do_not_touch_redis():
    redis = FakeRedis()
    redis.down = True
    store, clock, _ = make(redis)
    store.call_started(record(1))
    clock.advance(0.05)
    tried = len(redis.pipelines)
    redis.down = False  # back, but the retry has not come yet
    assert results(store.call_started(record(2))) == [False]
    clock.advance(0.05)
    assert len(redis.pipelines) == tried and store.backlog_length == 2
    clock.advance(5)
    assert store.backlog_length == 0
    assert list(redis.index["hotline:calls"]) == ["c1", "c2"]


def test_backlog_is_bounded_and_counts_drops():
    redis = FakeRedis()
    redis.down = True
    store, clock, registry = make(redis, backlog_size=3)
    for n in range(5):
        store.call_started(record(n))
        clock.advance(0.05)
    assert store.backlog_length == 3
    assert registry.get_sample_value("hotline_redis_backlog_dropped_total") == 2
    redis.down = False
    clock.advance(5)
    assert sorted(redis.hashes) == ["hotline:call:c2", "hotline:call:c3", "hotline:call:c4"]  # the oldest dropped


def test_a_write_that_raises_is_backlogged_not_lost():
    """An execute_pipeline that raises (instead of failing its Deferred) still only costs a retry."""
    redis = FakeRedis()
    store, clock, _ = make(redis)
    store._execute = lambda commands: 1 / 0
    done = results(store.call_started(record()))
    clock.advance(0.05)
    assert done == [False] and store.backlog_length == 1


def test_stop_sends_the_pending_batch_and_stops_retrying():
    redis = FakeRedis()
    store, clock, _ = make(redis)
    store.call_started(record(1))
    store.stop()
    assert redis.executions == 1
    redis.down = True
    store.call_started(record(2))
    store.stop()
    assert store.backlog_length == 1
    clock.advance(60)
    assert len(redis.pipelines) == 2  # no retry after stop


def test_ping_reports_false_when_down():
    redis = FakeRedis()
    store, _, _ = make(redis)
    assert results(store.ping()) == [True]
    redis.down = True
    assert results(store.ping()) == [False]


def test_ping_goes_through_the_given_client_ping():
    answers = []
    store = RedisCallStore(lambda commands: defer.fail(AssertionError("not for pings")), task.Clock(),
                           GatewayMetrics(CollectorRegistry()), ping=lambda: defer.succeed(answers.pop()))
    answers[:] = [False, True]
    assert results(store.ping()) == [True]
    assert results(store.ping()) == [False]
