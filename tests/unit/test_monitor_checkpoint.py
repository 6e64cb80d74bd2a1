"""Restart recovery: the monitor's checkpoint in Redis and the queue_log replay on the
first connection of a new process — two gateway processes (build_monitor, as the
composition root wires it) against a scripted Asterisk, task.Clock, a fake Redis."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.logger import capturedLogs

from gateway.config import load_config
from gateway.monitor.checkpoint import Checkpoint, RedisCheckpointStore, decode, encode
from gateway.monitor.model import OpenCall
from gateway.monitor.service import build_monitor

from .ami_fakes import FakeEndpoint, event

Q = "12345"
SECRET = "s3cret"


class FakeRedis:
    """GET/SET of the blocking client; ``down`` makes every command fail as redis-py does."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ttl: dict[str, int] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def get(self, key: str) -> str | None:
        self._check()
        return self.data.get(key)

    def set(self, key: str, value: str, ex: int | None = None) -> bool:
        self._check()
        self.data[key] = value
        self.ttl[key] = ex
        return True


class Pool:
    """``run_blocking`` that records what it ran (the thread pool, run inline)."""

    def __init__(self) -> None:
        self.ran = 0

    def __call__(self, fn) -> defer.Deferred:
        self.ran += 1
        return defer.maybeDeferred(fn)


KEY = "hotline:monitor:checkpoint:ast1"


class Process:
    """One gateway process's monitor: its own clock, registry, AMI session; shared Redis and queue_log."""

    def __init__(self, start_at: float, redis: FakeRedis, queue_log: list[str], waiting=(), channels=(),
                 node: str = "ast1"):
        self.clock = task.Clock()
        self.clock.advance(start_at)
        self.redis = redis
        self.pool = Pool()
        self.queue_log = queue_log
        self.replays: list[float] = []
        self.endpoint = FakeEndpoint(secret=SECRET)
        self.endpoint.on_connect = lambda peer: peer.lists.update(
            QueueStatus=[{"Event": "QueueParams", "Queue": Q}] + [
                {"Event": "QueueEntry", "Queue": Q, "Position": i + 1, "Uniqueid": uid, "Wait": wait,
                 "CallerIDNum": "13800138000"} for i, (uid, wait) in enumerate(waiting)],
            CoreShowChannels=[{"Event": "CoreShowChannel", "Channel": f"PJSIP/carrier-{uid}", "Uniqueid": uid}
                              for uid in channels],
            PJSIPShowRegistrationsOutbound=[],
        )
        self.registry = CollectorRegistry()
        config = load_config(environ={"HOTLINE_AMI_SECRET": SECRET, "HOTLINE_MONITOR_CHECKPOINT_INTERVAL": "10",
                                      "HOTLINE_MONITOR_NODE": node})
        self.node = node
        self.monitor = build_monitor(
            config, clock=self.clock, endpoint=self.endpoint, registry=self.registry, read_queue_log=self._read,
            checkpoints=RedisCheckpointStore(redis, self.pool, config.redis.key_prefix, node=node),
        )

    def _read(self, since: float) -> defer.Deferred:
        self.replays.append(since)
        return defer.succeed([line for line in self.queue_log if float(line.split("|")[0]) >= since])

    def start(self) -> None:
        self.monitor.service.startService()
        self.endpoint.peer.pump()

    def advance(self, seconds: float) -> None:
        """Time passes, second by second; Asterisk answers what is asked (keepalive Pings, refreshes)."""
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            if self.endpoint.peers:
                self.endpoint.peer.pump()

    def live(self, data: bytes) -> None:
        self.endpoint.peer.send(data)

    def stop(self) -> defer.Deferred:
        return self.monitor.service.stopService()

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, {"node": self.node, **(labels or {"queue": Q})})

    def counts(self) -> dict[str, float]:
        return {what: self.value(f"hotline_queue_calls_{what}_total")
                for what in ("offered", "answered", "abandoned", "untracked")}


def join(uid: str, t: float) -> bytes:
    return (event("Newchannel", Channel=f"PJSIP/carrier-{uid}", Uniqueid=uid, Timestamp=t)
            + event("QueueCallerJoin", Uniqueid=uid, Queue=Q, Position=1, CallerIDNum="13800138000", Timestamp=t))


def test_abandon_while_the_gateway_was_down_is_counted_once_by_the_next_process():
    redis = FakeRedis()
    queue_log = [
        "1001|c1|12345|NONE|ENTERQUEUE||13800138000|1",
        "1002|c2|12345|NONE|ENTERQUEUE||13800138000|2",
        "1003|c3|12345|NONE|ENTERQUEUE||13800138000|3",
        "1005|c6|12345|NONE|ENTERQUEUE||13800138000|4",
        "1010|c2|12345|agent2|CONNECT|8|1010.5|1",
        "1011|c3|12345|NONE|ABANDON|2|3|8",              # seen live by A, inside B's replay window
    ]
    a = Process(1000.0, redis, queue_log)
    a.start()
    assert a.replays == [], "no checkpoint stored: a first start replays nothing"
    a.live(join("c1", 1001.0) + join("c2", 1002.0) + join("c3", 1003.0) + join("c6", 1005.0)
           + event("AgentConnect", Uniqueid="c2", Queue=Q, MemberName="agent2", HoldTime=8, Timestamp=1010.0)
           + event("Hangup", Uniqueid="c3", Timestamp=1011.0))
    a.advance(12.0)
    assert a.stop().called
    assert a.counts() == {"offered": 4, "answered": 1, "abandoned": 1, "untracked": 0}

    # while no gateway runs: c1 hangs up, c4 comes and goes, c5 arrives, c2's talk ends
    queue_log += [
        "1020|c1|12345|NONE|ABANDON|1|1|19",
        "1021|c4|12345|NONE|ENTERQUEUE||13800138001|2",
        "1025|c4|12345|NONE|ABANDON|1|2|4",
        "1030|c5|12345|NONE|ENTERQUEUE||13800138002|2",
        "1031|c2|12345|agent2|COMPLETEAGENT|8|21|1",
    ]
    b = Process(1040.0, redis, queue_log, waiting=[("c6", 35), ("c5", 10)], channels=["c6", "c5"])
    b.start()
    assert b.replays == [1011.0 - 2.0], "replayed from A's last event when its session closed, minus the margin"
    assert b.counts() == {"offered": 2, "answered": 0, "abandoned": 2, "untracked": 0}, \
        "c4 and c5 offered; c1 and c4 abandoned; c1, c2, c3, c6 not counted again"
    assert b.value("hotline_queue_talk_seconds_count") == 1, "c2's talk time, ended while down"
    (c1,) = [c for c in b.monitor.state.abandoned_calls if c.uniqueid == "c1"]
    assert c1.caller == "13800138000" and c1.wait == pytest.approx(19.0), "kept for the missed-call callback"
    assert sorted(b.monitor.state.waiting_calls()) == ["c5", "c6"]

    # still live at the start: counted once when they finish
    b.live(event("AgentConnect", Uniqueid="c6", Queue=Q, MemberName="agent1", HoldTime=45, Timestamp=1050.0)
           + event("Hangup", Uniqueid="c5", Timestamp=1051.0) + event("Hangup", Uniqueid="c6", Timestamp=1090.0))
    assert b.counts() == {"offered": 2, "answered": 1, "abandoned": 3, "untracked": 0}
    both = {k: a.counts()[k] + b.counts()[k] for k in a.counts()}
    assert both == {"offered": 6, "answered": 2, "abandoned": 4, "untracked": 0}, "each of c1…c6 once"


def test_each_node_resumes_from_its_own_checkpoint_in_the_shared_redis():
    """Two gateways, one per Asterisk node, share Redis: a restarted ast2 gateway replays ast2's
    queue_log from ast2's position and adopts only ast2's open calls, whatever ast1 wrote since."""
    redis = FakeRedis()
    log1 = ["1001|a1|12345|NONE|ENTERQUEUE||13800138000|1"]
    log2 = ["1001|b1|12345|NONE|ENTERQUEUE||13800138001|1"]
    gw1, gw2 = Process(1000.0, redis, log1, node="ast1"), Process(1000.0, redis, log2, node="ast2")
    for gw, uid in ((gw1, "a1"), (gw2, "b1")):
        gw.start()
        gw.live(join(uid, 1001.0))
    gw2.advance(10.0)
    assert gw2.stop().called
    gw1.advance(30.0)  # ast1's gateway keeps writing its own checkpoint, later than ast2's
    assert sorted(redis.data) == ["hotline:monitor:checkpoint:ast1", "hotline:monitor:checkpoint:ast2"]
    log2.append("1020|b1|12345|NONE|ABANDON|1|1|19")  # while ast2's gateway was down
    gw2b = Process(1040.0, redis, log2, node="ast2")
    gw2b.start()
    assert gw2b.replays == [1001.0 - 2.0], "from ast2's own last event, not ast1's later position"
    assert gw2b.counts() == {"offered": 0, "answered": 0, "abandoned": 1, "untracked": 0}, "b1 adopted, counted once"
    assert gw2b.registry.get_sample_value("hotline_queue_calls_abandoned_total", {"node": "ast1", "queue": Q}) is None


def test_no_stored_checkpoint_means_no_replay_on_the_first_connection():
    redis = FakeRedis()
    p = Process(1000.0, redis, ["990|c1|12345|NONE|ENTERQUEUE||1|1", "995|c1|12345|NONE|ABANDON|1|1|5"],
                waiting=[("c9", 12)], channels=["c9"])
    p.start()
    assert p.replays == []
    assert p.counts() == {"offered": 1, "answered": 0, "abandoned": 0, "untracked": 0}, "as before: c9 adopted"
    assert p.value("hotline_monitor_checkpoint_failures_total", operation="load") == 0


def test_checkpoint_is_written_through_the_pool_periodically_and_at_stop():
    redis = FakeRedis()
    p = Process(1000.0, redis, [])
    p.start()
    p.live(join("c1", 1001.0))
    ran = p.pool.ran
    p.advance(10.0)
    assert p.pool.ran == ran + 1 and redis.ttl[KEY] == 7 * 24 * 3600
    first = decode(redis.data[KEY])
    assert first.position == 1010.0 and [c.uniqueid for c in first.calls] == ["c1"]
    p.live(event("Hangup", Uniqueid="c1", Timestamp=1012.0))
    p.advance(3.0)
    assert p.stop().called
    last = decode(redis.data[KEY])
    # the session closed first: counted up to its last event (a real reactor closes it later: "now")
    assert (last.position, last.calls, last.finished) == (1012.0, (), ("c1",))
    p.advance(60.0)
    assert decode(redis.data[KEY]) == last, "nothing written after the stop"


def test_stored_checkpoint_is_not_overwritten_before_a_session_replayed_it():
    """AMI unreachable after the restart: the old position must survive for when it comes back."""
    redis = FakeRedis()
    stored = encode(Checkpoint(900.0, (OpenCall("c1", Q, 890.0),), ()))
    redis.data[KEY] = stored
    p = Process(1000.0, redis, [])
    p.endpoint.refuse = True
    p.monitor.service.startService()
    p.advance(60.0)
    assert p.stop().called
    assert redis.data[KEY] == stored


def test_redis_down_at_start_is_logged_and_counted_and_the_monitor_still_counts():
    redis = FakeRedis()
    redis.data[KEY] = encode(Checkpoint(900.0, (OpenCall("c1", Q, 890.0),), ()))
    redis.down = True
    p = Process(1000.0, redis, ["950|c1|12345|NONE|ABANDON|1|1|60"])
    with capturedLogs() as logs:
        p.start()
    assert [e["operation"] for e in logs if "checkpoint {operation} failed" in (e.get("log_format") or "")] \
        == ["load"]
    assert p.value("hotline_monitor_checkpoint_failures_total", operation="load") == 1
    assert p.replays == [], "without the checkpoint: a first start"
    assert p.monitor.client.logged_in
    p.live(join("c7", 1001.0) + event("Hangup", Uniqueid="c7", Timestamp=1004.0))
    assert p.counts() == {"offered": 1, "answered": 0, "abandoned": 1, "untracked": 0}


def test_failed_checkpoint_writes_are_logged_counted_and_retried_at_the_next_interval():
    redis = FakeRedis()
    p = Process(1000.0, redis, [])
    p.start()
    redis.down = True
    with capturedLogs() as logs:
        p.advance(20.0)
    assert [e["operation"] for e in logs if "checkpoint {operation} failed" in (e.get("log_format") or "")] \
        == ["save", "save"]
    assert p.value("hotline_monitor_checkpoint_failures_total", operation="save") == 2
    p.live(join("c1", 1021.0) + event("Hangup", Uniqueid="c1", Timestamp=1023.0))
    assert p.counts()["abandoned"] == 1 and p.monitor.client.logged_in
    redis.down = False
    p.advance(10.0)
    assert decode(redis.data[KEY]).position == 1030.0
    redis.down = True
    d = p.stop()
    assert d.called, "a failed last write does not hold the shutdown"
    assert p.value("hotline_monitor_checkpoint_failures_total", operation="save") == 3


def test_an_unreadable_stored_checkpoint_counts_as_a_failed_load():
    redis = FakeRedis()
    redis.data[KEY] = "{not json"
    p = Process(1000.0, redis, [])
    p.start()
    assert p.value("hotline_monitor_checkpoint_failures_total", operation="load") == 1
    assert p.replays == [] and p.monitor.client.logged_in


def test_checkpoint_encoding_round_trips():
    checkpoint = Checkpoint(
        1012.5,
        (OpenCall("c1", Q, 1001.0, caller="13800138000"),
         OpenCall("c2", Q, 1002.0, answered=True, completed=True, position=2, original_position=3,
                  abandon_hint=(1009.0, 1, 3))),
        ("c3",),
    )
    assert decode(encode(checkpoint)) == checkpoint
    with pytest.raises(ValueError):
        decode('{"v": 99, "position": 1}')
