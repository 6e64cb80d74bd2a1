"""Callback rules: sources, short abandons, merging, cancellation, FIFO by original place, outcome metrics."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter
from twisted.internet import defer, task

from gateway.callbacks.metrics import CallbackMetrics
from gateway.callbacks.service import CallbackService, CallbackSettings
from gateway.callbacks.sources import StreamSource, ivr_request_handler, missed_call_handler
from gateway.dialer.jobs import JobStore
from gateway.dialer.originate import AttemptOutcome
from gateway.dialer.policy import NumberPolicy
from gateway.monitor.model import AbandonedCall, HotlineState

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

NOW = 1_800_000_000.0


class Rig:
    def __init__(self, client, **settings):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.client = client
        self.registry = CollectorRegistry()
        self.broken = False
        self.reserved = Counter("hotline_callbacks_connected", "reserved (monitor)", ["queue"], registry=self.registry)
        self.store = JobStore(client, key_prefix="t", owner="gw")
        self.service = CallbackService(
            clock=self.clock, run_blocking=self.run, store=self.store, policy=NumberPolicy(),
            metrics=CallbackMetrics(self.registry), settings=CallbackSettings(**settings),
            count_connected=lambda queue: self.reserved.labels(queue=queue).inc(),
        )

    def run(self, fn):
        if self.broken:
            return defer.fail(ConnectionError("redis down"))
        return defer.maybeDeferred(fn)

    def schedule(self, **kw):
        return self.resolve(defer.Deferred.fromCoroutine(self.service.schedule(**kw)))

    @staticmethod
    def resolve(d):
        box = []
        d.addBoth(box.append)
        return box[0]

    def sample(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0.0


def abandon(uniqueid="1700.1", caller="13800138000", joined=NOW - 120, wait=60.0):
    return AbandonedCall(uniqueid, "12345", joined, joined + wait, wait, 3, 5, wait < 5, caller=caller)


def test_an_abandon_from_the_monitor_becomes_a_callback_due_at_its_queue_entry_time(dialer_redis):
    rig = Rig(dialer_redis)
    rig.resolve(rig.service.on_abandon(abandon()))
    job = rig.store.get("cb-1700.1")
    assert job.number == "13800138000" and job.due_at == NOW - 120 and job.payload["source"] == "abandon"
    assert rig.sample("hotline_callbacks_scheduled_total", source="abandon") == 1


def test_the_monitor_listener_feeds_the_service_for_live_and_replayed_abandons(dialer_redis):
    rig = Rig(dialer_redis)
    state = HotlineState()
    state.add_abandon_listener(rig.service.on_abandon)
    state.caller_joined("u1", "12345", NOW - 30, position=1, caller="13900139000")
    state.channel_hungup("u1", NOW)
    state.call_abandoned("u2", "12345", NOW, wait=40)  # queue_log ABANDON during a replay (no number known)
    assert rig.store.get("cb-u1") is not None
    assert rig.sample("hotline_callbacks_ignored_total", reason="no_number") == 1


def test_a_citizen_lost_with_a_crashed_node_gets_a_callback_even_after_a_short_wait(dialer_redis):
    rig = Rig(dialer_redis, min_wait=5)
    rig.resolve(rig.service.on_lost(abandon(uniqueid="ast2-1.7", wait=2.0)))
    job = rig.store.get("cb-ast2-1.7")
    assert job is not None and job.payload["source"] == "lost" and job.due_at == NOW - 120
    assert rig.sample("hotline_callbacks_scheduled_total", source="lost") == 1


def test_short_abandons_are_ignored_when_configured(dialer_redis):
    rig = Rig(dialer_redis, min_wait=5)
    assert rig.service.on_abandon(abandon(wait=2.0)) is None
    assert rig.sample("hotline_callbacks_ignored_total", reason="short") == 1
    assert Rig(dialer_redis).service.on_abandon(abandon(wait=2.0)) is not None  # default: every abandon


def test_premium_or_short_numbers_are_refused_before_any_job_exists(dialer_redis):
    rig = Rig(dialer_redis)
    assert rig.schedule(source="api", call_id="x", caller="95598", original_at=NOW) == "ignored:policy"
    assert rig.store.list("callback") == []


def test_repeats_from_one_number_merge_into_one_callback(dialer_redis):
    rig = Rig(dialer_redis, merge_window=3600)
    rig.resolve(rig.service.on_abandon(abandon("a", joined=NOW - 300)))
    rig.resolve(rig.service.on_abandon(abandon("b", joined=NOW - 100)))
    assert [j.id for j in rig.store.list("callback")] == ["cb-a"]
    assert rig.store.get("cb-a").merged == 1
    assert rig.sample("hotline_callbacks_merged_total", source="abandon") == 1


def test_the_same_lost_call_from_every_source_is_one_callback(dialer_redis):
    rig = Rig(dialer_redis, merge_window=-1)
    rig.resolve(rig.service.on_abandon(abandon("1700.9")))
    handler = missed_call_handler(rig.service)
    rig.resolve(defer.Deferred.fromCoroutine(handler("1-0", {"call_id": "1700.9", "caller": "13800138000",
                                                             "missed_at": str(NOW), "wait_seconds": "60"})))
    assert len(rig.store.list("callback")) == 1


def test_cancel_when_the_citizen_calls_again_and_is_answered(dialer_redis):
    rig = Rig(dialer_redis)
    state = HotlineState()
    state.add_answer_listener(rig.service.on_answered)
    rig.resolve(rig.service.on_abandon(abandon("a")))
    state.caller_joined("u2", "12345", NOW, caller="+86 138 0013 8000")
    state.agent_connected("u2", "12345", NOW + 5)
    assert rig.store.get("cb-a").outcome == "cancelled"
    assert rig.sample("hotline_callbacks_cancelled_total", reason="answered-again") == 1



def test_calling_again_cancels_every_pending_callback_of_the_number_not_only_the_newest(dialer_redis):
    """Merge window 4 h, expiry 24 h: an abandon 5 h ago and one now are two callbacks; both stop."""
    rig = Rig(dialer_redis, merge_window=4 * 3600, expiry=24 * 3600)
    rig.clock.advance(-5 * 3600)
    rig.resolve(rig.service.on_abandon(abandon("early", joined=NOW - 5 * 3600 - 60)))
    rig.clock.advance(5 * 3600)
    rig.resolve(rig.service.on_abandon(abandon("late")))
    assert {j.id for j in rig.store.list("callback", state="pending")} == {"cb-early", "cb-late"}
    state = HotlineState()
    state.add_answer_listener(rig.service.on_answered)
    state.caller_joined("u2", "12345", NOW, caller="13800138000")
    state.agent_connected("u2", "12345", NOW + 5)
    assert rig.store.get("cb-early").outcome == rig.store.get("cb-late").outcome == "cancelled"
    assert rig.store.claim(NOW + 10, 10, 30) == []
    assert rig.sample("hotline_callbacks_cancelled_total", reason="answered-again") == 2

def test_ivr_requests_keep_their_original_place_among_abandons(dialer_redis):
    rig = Rig(dialer_redis)
    rig.resolve(rig.service.on_abandon(abandon("late", "13900000002", joined=NOW - 100)))
    request = {"call_id": "ivr-1", "caller": "13900000001", "queue": "12345", "position": 7,
               "requested_at": "2027-01-15T07:56:40+00:00"}  # NOW - 200
    handler = ivr_request_handler(rig.service)
    rig.resolve(defer.Deferred.fromCoroutine(handler("1-0", {"call_id": "ivr-1", "data": json.dumps(request)})))
    rig.resolve(rig.service.on_abandon(abandon("later", "13900000003", joined=NOW - 50)))
    assert [j.id for j in rig.store.claim(NOW, 10, 30)] == ["cb-ivr-1", "cb-late", "cb-later"]


def test_stream_sources_read_each_entry_once_and_resume_after_their_cursor(dialer_redis):
    rig = Rig(dialer_redis)
    seen = []

    async def handler(entry_id, fields):
        seen.append(fields["call_id"])

    source = StreamSource(name="safety-net", clock=rig.clock, run_blocking=rig.run, client=dialer_redis,
                          stream="t:missed:calls", cursor_key="t:cursor", handler=handler, batch=2)
    for i in range(3):
        dialer_redis.xadd("t:missed:calls", {"call_id": f"c{i}"})
    assert rig.resolve(source.poll()) == 3
    dialer_redis.xadd("t:missed:calls", {"call_id": "c3"})
    assert rig.resolve(source.poll()) == 1
    assert seen == ["c0", "c1", "c2", "c3"]


def test_a_stream_source_with_redis_away_retries_later_without_losing_entries(dialer_redis):
    rig = Rig(dialer_redis)
    handler = missed_call_handler(rig.service)
    source = StreamSource(name="safety-net", clock=rig.clock, run_blocking=rig.run, client=dialer_redis,
                          stream="t:missed:calls", cursor_key="t:cursor", handler=handler)
    dialer_redis.xadd("t:missed:calls", {"call_id": "c1", "caller": "13800138000", "missed_at": str(NOW)})
    rig.broken = True
    assert rig.resolve(source.poll()) == 0 and not source.healthy
    rig.broken = False
    assert rig.resolve(source.poll()) == 1
    assert rig.store.get("cb-c1").payload["source"] == "safety-net"


def test_a_connected_callback_counts_for_the_broad_connection_rate_and_its_latency_from_the_abandon(dialer_redis):
    """Latency starts when the caller gave up (joined 600 s ago, waited 60 s), not at queue entry."""
    rig = Rig(dialer_redis)
    rig.resolve(rig.service.on_abandon(abandon("a", joined=NOW - 600, wait=60.0)))
    job = rig.store.get("cb-a")
    rig.service.on_attempt(job, AttemptOutcome("answered"))
    rig.service.on_final(job, "connected", AttemptOutcome("answered"), NOW)
    assert rig.sample("hotline_callbacks_connected_total", queue="12345") == 1
    assert rig.sample("hotline_callbacks_connected_by_source_total", source="abandon") == 1
    assert rig.sample("hotline_callback_latency_seconds_sum", source="abandon") == 540
    assert rig.sample("hotline_callbacks_attempted_total", outcome="answered") == 1
    rig.service.on_final(job, "expired", None, NOW)
    assert rig.sample("hotline_callbacks_expired_total") == 1


def test_a_safety_net_callback_counts_for_the_broad_rate_with_latency_from_the_missed_call(dialer_redis):
    rig = Rig(dialer_redis)
    handler = missed_call_handler(rig.service)
    rig.resolve(defer.Deferred.fromCoroutine(handler("1-0", {"call_id": "m1", "caller": "13800138000",
                                                             "missed_at": str(NOW - 300), "wait_seconds": "90"})))
    job = rig.store.get("cb-m1")
    assert job.original_at == NOW - 390
    rig.service.on_final(job, "connected", AttemptOutcome("answered"), NOW)
    assert rig.sample("hotline_callbacks_connected_total", queue="12345") == 1
    assert rig.sample("hotline_callbacks_connected_by_source_total", source="safety-net") == 1
    assert rig.sample("hotline_callback_latency_seconds_sum", source="safety-net") == 300


def test_ivr_and_api_callbacks_never_count_for_the_broad_rate_but_are_counted_by_source(dialer_redis):
    """Their callers never abandoned a queue call (not in "offered"): counting them could pass 100 %."""
    rig = Rig(dialer_redis)
    handler = ivr_request_handler(rig.service)
    request = {"caller": "13900000001", "requested_at": NOW - 200}
    rig.resolve(defer.Deferred.fromCoroutine(handler("1-0", {"call_id": "ivr-1", "data": json.dumps(request)})))
    rig.schedule(source="api", call_id="api-1", caller="13900000002", original_at=NOW - 100)
    for job_id in ("cb-ivr-1", "cb-api-1"):
        rig.service.on_final(rig.store.get(job_id), "connected", AttemptOutcome("answered"), NOW)
    assert rig.sample("hotline_callbacks_connected_total", queue="12345") == 0
    assert rig.sample("hotline_callbacks_connected_by_source_total", source="ivr-request") == 1
    assert rig.sample("hotline_callbacks_connected_by_source_total", source="api") == 1
    assert rig.sample("hotline_callback_latency_seconds_sum", source="ivr-request") == 200
    assert rig.sample("hotline_callback_latency_seconds_sum", source="api") == 100
    assert rig.sample("hotline_callbacks_finished_total", outcome="connected") == 2


def test_a_callback_leg_that_leaves_the_queue_unanswered_is_never_called_back_itself(dialer_redis):
    rig = Rig(dialer_redis)
    assert rig.service.on_abandon(abandon("hlcb-0123456789abcdef", caller="02112345678")) is None
    assert rig.store.list("callback") == []
    assert rig.sample("hotline_callbacks_ignored_total", reason="callback-leg") == 1


def test_the_callback_legs_own_answer_in_the_queue_does_not_cancel_it(dialer_redis):
    rig = Rig(dialer_redis)
    state = HotlineState()
    state.add_answer_listener(rig.service.on_answered)
    rig.resolve(rig.service.on_abandon(abandon("a")))
    state.caller_joined("hlcb-0123456789abcdef", "12345", NOW, caller="13800138000")
    state.agent_connected("hlcb-0123456789abcdef", "12345", NOW + 5)
    assert rig.store.get("cb-a").state == "pending" and not rig.store.get("cb-a").cancel


def test_the_safety_nets_spool_is_read_once_resumed_after_its_cursor_and_restarted_after_rotation(dialer_redis,
                                                                                                   tmp_path):
    """Missed calls spooled while Redis was away become callbacks; a half-written line waits."""
    from gateway.callbacks.sources import SpoolSource

    rig = Rig(dialer_redis)
    spool = tmp_path / "missed.jsonl"
    line = lambda i: json.dumps({"call_id": f"s{i}", "caller": f"1390000000{i}", "missed_at": str(NOW),  # noqa: E731
                                 "wait_seconds": "30", "source": "agi-safety-net", "spool_reason": "ConnectionError"})
    spool.write_text(line(1) + "\n" + line(2) + "\n" + line(3)[:20])
    source = SpoolSource(clock=rig.clock, run_blocking=rig.run, client=dialer_redis, path=str(spool),
                         cursor_key="t:cursor:spool", handler=missed_call_handler(rig.service))
    assert rig.resolve(source.poll()) == 2
    with spool.open("a") as handle:
        handle.write(line(3)[20:] + "\n")
    assert rig.resolve(source.poll()) == 1
    assert rig.resolve(source.poll()) == 0
    assert {j.id for j in rig.store.list("callback")} == {"cb-s1", "cb-s2", "cb-s3"}
    spool.unlink()
    spool.write_text(line(4) + "\n")  # rotated: a new file
    assert rig.resolve(source.poll()) == 1
    assert rig.store.get("cb-s4").payload["source"] == "safety-net"


def test_a_missing_spool_file_is_nothing_to_do(dialer_redis, tmp_path):
    from gateway.callbacks.sources import SpoolSource

    rig = Rig(dialer_redis)
    source = SpoolSource(clock=rig.clock, run_blocking=rig.run, client=dialer_redis, path=str(tmp_path / "none"),
                         cursor_key="t:cursor:spool", handler=missed_call_handler(rig.service))
    assert rig.resolve(source.poll()) == 0
