"""Call records: a batch is one EVAL; a dead Redis costs the call nothing and loses nothing."""
import json

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.calls import CallRecord
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_store import APPLY_SCRIPT, RedisCallStore


def unpack_eval(command):
    """What one ``EVAL APPLY_SCRIPT`` does (as the Lua script does it), as the equivalent commands:
    per record ``HSET key f v …``, ``EXPIRE key ttl`` and, for a start, ``ZADD index score id``."""
    name, script, numkeys, ttl, prefix, index, *args = command
    assert (name, script, numkeys) == ("EVAL", APPLY_SCRIPT, 0)
    commands, i = [], 0
    while i < len(args):
        call_id, score, n = args[i], args[i + 1], args[i + 2]
        assert isinstance(n, int) and n > 0
        key, pairs = prefix + call_id, args[i + 3:i + 3 + 2 * n]
        assert len(pairs) == 2 * n
        commands.append(("HSET", key, *pairs))
        commands.append(("EXPIRE", key, ttl))
        if score != "":
            commands.append(("ZADD", index, score, call_id))
        i += 3 + 2 * n
    return commands


class FakeRedis:
    """Stands for ``RespClient.execute``: runs EVAL (of the store's script) and PING, or fails fast when down.

    ``requests`` keeps what was sent; ``pipelines`` the same with each EVAL unpacked to the
    commands its script runs (HSET/EXPIRE/ZADD), so tests read what happened to Redis.
    """

    def __init__(self):
        self.down, self.hashes, self.ttls, self.index, self.executions = False, {}, {}, {}, 0
        self.requests, self.pipelines = [], []

    def execute(self, commands):
        self.requests.append([tuple(c) for c in commands])
        self.pipelines.append([c for command in commands for c in
                               (unpack_eval(command) if command[0] == "EVAL" else [tuple(command)])])
        if self.down:
            return defer.fail(ConnectionError("Redis is not connected"))
        replies = []
        for command in commands:
            if command[0] == "PING":
                replies.append(b"PONG")
                continue
            assert command[0] == "EVAL", f"unexpected command {command[0]}"
            records = 0
            for name, *args in unpack_eval(command):
                if name == "HSET":
                    key, pairs = args[0], args[1:]
                    self.hashes.setdefault(key, {}).update(zip(pairs[::2], pairs[1::2], strict=True))
                    records += 1
                elif name == "EXPIRE":
                    self.ttls[args[0]] = args[1]
                else:
                    self.index.setdefault(args[0], {})[args[2]] = float(args[1])
            replies.append(records)
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
    [request] = redis.requests
    assert len(request) == 1 and request[0][0] == "EVAL"  # one command (one reply) for the whole batch
    assert redis.hashes["hotline:call:c1"]["outcome"] == "handoff_queue"
    assert "hotline:call:c2" in redis.hashes


#: the hash a call's start writes for ``record()`` (as written before a batch became one EVAL)
START_HASH = {
    "call_id": "c1", "channel": "Local/x", "caller": "13800138000", "caller_masked": "138****8000",
    "script": "main", "flow": "", "flow_version": "", "started_at": "1001.000", "outcome": "in_progress",
    "handoff": "", "path": "[]",
}


def test_a_record_is_a_hash_with_a_ttl_and_an_index_entry():
    redis = FakeRedis()
    store, clock, _ = make(redis, ttl=3600)
    rec = record()
    store.call_started(rec)
    clock.advance(0.05)
    [[command]] = redis.requests
    assert command[:9] == ("EVAL", APPLY_SCRIPT, 0, 3600, "hotline:call:", "hotline:calls", "c1", "1001.000", 11)
    fields = command[9:]
    assert len(fields) == 22 and dict(zip(fields[::2], fields[1::2], strict=True)) == START_HASH
    assert redis.pipelines[0][0][:2] == ("HSET", "hotline:call:c1")
    assert redis.pipelines[0][1:] == [("EXPIRE", "hotline:call:c1", 3600), ("ZADD", "hotline:calls", "1001.000", "c1")]
    assert redis.hashes["hotline:call:c1"] == START_HASH == rec.as_hash()
    assert redis.ttls == {"hotline:call:c1": 3600}
    assert redis.index == {"hotline:calls": {"c1": 1001.0}}


def test_keys_follow_the_prefix():
    redis = FakeRedis()
    store, clock, _ = make(redis, key_prefix="hl")
    store.call_started(record())
    clock.advance(0.05)
    assert redis.requests[0][0][4:6] == ("hl:call:", "hl:calls")
    assert list(redis.hashes) == ["hl:call:c1"] == [store.call_key("c1")]
    assert list(redis.index) == ["hl:calls"] == [store.index_key]


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
    assert redis.requests[1][0][6:9] == ("c1", "", 7)  # empty score: no ZADD
    assert redis.hashes["hotline:call:c1"] == {
        **START_HASH, "outcome": "handoff_queue", "ended_at": "1010.000", "handoff": "queue:12345",
        "path": '["menu", "1"]', "flow": "main", "flow_version": "7",
    } == rec.as_hash()


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
    assert redis.hashes["hotline:call:c1"] == {**START_HASH, "outcome": "completed", "ended_at": "1020.000"}
    assert redis.ttls == {"hotline:call:c1": 90 * 24 * 3600}
    assert redis.index == {}  # as before: an end write never adds the index entry


def test_while_the_backlog_is_non_empty_writes_do_not_touch_redis():
    redis = FakeRedis()
    redis.down = True
    store, clock, _ = make(redis)
    store.call_started(record(1))
    clock.advance(0.05)
    tried = len(redis.pipelines)
    redis.down = False  # back, but the retry has not come yet
    assert results(store.call_started(record(2))) == [False]
    ended = record(3)
    ended.outcome, ended.ended_at = "caller_hangup", 1010.0
    assert results(store.call_ended(ended)) == [False]
    clock.advance(0.05)
    assert len(redis.pipelines) == tried and store.backlog_length == 3
    clock.advance(5)
    assert store.backlog_length == 0
    assert len(redis.requests) == tried + 1  # the whole backlog in one EVAL
    assert list(redis.index["hotline:calls"]) == ["c1", "c2"]
    assert redis.hashes["hotline:call:c3"] == ended.as_hash()  # the whole record, not just the end's fields
    assert redis.hashes["hotline:call:c3"]["caller"] == "13800138000"


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


def test_a_backlogged_start_replays_the_hash_as_it_was_at_the_start():
    redis = FakeRedis()
    redis.down = True
    store, clock, _ = make(redis)
    rec = record()
    store.call_started(rec)
    clock.advance(0.05)
    rec.flow, rec.outcome = "later", "later"  # changed after the start (no end write yet)
    redis.down = False
    clock.advance(5)
    assert redis.hashes["hotline:call:c1"] == START_HASH


def test_the_backlog_is_replayed_in_order_one_eval_per_chunk_of_500():
    redis = FakeRedis()
    redis.down = True
    store, clock, registry = make(redis, batch_size=1000)
    for n in range(1203):
        store.call_started(record(n))  # the first 1000 fail as one batch, the rest join the backlog
    clock.advance(0.05)
    assert store.backlog_length == 1203 and len(redis.requests) == 1
    redis.down = False
    clock.advance(5)
    clock.advance(0)
    clock.advance(0)
    assert store.backlog_length == 0
    replays = redis.requests[1:]
    assert [len(request) for request in replays] == [1, 1, 1]  # one command each
    assert [sum(c[0] == "HSET" for c in pipeline) for pipeline in redis.pipelines[1:]] == [500, 500, 203]
    assert list(redis.index["hotline:calls"]) == [f"c{n}" for n in range(1203)]
    assert registry.get_sample_value("hotline_redis_backlog_records") == 0
    assert registry.get_sample_value("hotline_redis_failures_total", {"operation": "call_start"}) == 1000


# -- the record's fields --------------------------------------------------------------
def reference_hash(rec: CallRecord) -> dict[str, str]:
    """``CallRecord.as_hash`` as it was written before the flat field lists (the contract)."""
    data = {
        "call_id": rec.call_id, "channel": rec.channel, "caller": rec.caller,
        "caller_masked": rec.caller_masked, "script": rec.script, "flow": rec.flow,
        "flow_version": rec.flow_version, "started_at": f"{rec.started_at:.3f}", "outcome": rec.outcome,
        "handoff": rec.handoff, "path": json.dumps(rec.path, ensure_ascii=False) if rec.path else "[]",
    }
    if rec.ended_at is not None:
        data["ended_at"] = f"{rec.ended_at:.3f}"
    return data


text = st.text(max_size=12)


@given(call_id=text, channel=text, caller=text, script=text, flow=text, flow_version=text, outcome=text,
       handoff=text, started_at=st.floats(0, 4e9), ended_at=st.none() | st.floats(0, 4e9),
       path=st.lists(text | st.integers(-10, 10), max_size=5))
def test_the_flat_fields_are_the_hash_as_before(call_id, channel, caller, script, flow, flow_version, outcome,
                                                handoff, started_at, ended_at, path):
    rec = CallRecord(call_id=call_id, channel=channel, caller=caller, script=script, started_at=started_at,
                     flow=flow, flow_version=flow_version, ended_at=ended_at, outcome=outcome, handoff=handoff,
                     path=path)
    expected = reference_hash(rec)
    fields = rec.hash_fields()
    assert len(fields) == 2 * len(expected) and dict(zip(fields[::2], fields[1::2], strict=True)) == expected
    assert rec.as_hash() == expected
    assert fields[:2] == ("call_id", call_id)
    assert fields[CallRecord.STARTED_AT_VALUE - 1:CallRecord.STARTED_AT_VALUE + 1] == ("started_at",
                                                                                          expected["started_at"])
    end = rec.end_fields()
    wanted = {key: expected[key] for key in ("call_id", *CallRecord.END_FIELDS) if key in expected}
    assert len(end) == 2 * len(wanted) and dict(zip(end[::2], end[1::2], strict=True)) == wanted
    assert rec.end_hash() == wanted


def test_records_queued_while_a_full_backlog_is_being_replayed_are_not_lost():
    """Drops from a full backlog during a replay take the replay's own (oldest) entries;
    when the replay lands, only what is still queued from it is removed — not the newer records."""
    redis = FakeRedis()
    redis.down = True
    store, clock, registry = make(redis, backlog_size=3)
    for n in range(3):
        store.call_started(record(n))
    clock.advance(0.05)
    assert store.backlog_length == 3
    redis.down = False
    in_flight = []

    def slow_execute(commands):
        d = defer.Deferred()
        in_flight.append((commands, d))
        return d

    store._execute = slow_execute
    clock.advance(5)  # the replay of c0, c1, c2 is sent and waits for Redis
    assert len(in_flight) == 1
    store.call_started(record(3))  # circuit breaker: to the full backlog, dropping c0
    store.call_started(record(4))  # … and c1
    assert registry.get_sample_value("hotline_redis_backlog_dropped_total") == 2
    commands, d = in_flight.pop()
    d.callback(redis.execute(commands).result)  # Redis stores c0, c1, c2
    assert store.backlog_length == 2, "c3 and c4 are still waiting"
    store._execute = redis.execute
    clock.advance(0)
    assert sorted(redis.hashes) == [f"hotline:call:c{n}" for n in range(5)]
    assert store.backlog_length == 0
