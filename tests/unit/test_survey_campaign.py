"""Survey campaign rules with task.Clock and a private Redis (port 6395, no persistence):
delay after closure, combining and spacing one number's orders, idempotency, exactly one
result per order, reopen events, restart safety, and the whole path through the real dialer."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.dialer.jobs import JobStore
from gateway.dialer.originate import AttemptOutcome
from gateway.dialer.policy import NumberPolicy
from gateway.surveys.campaign import CampaignSettings, SurveyCampaign, channel_vars, final_status, topic_key
from gateway.surveys.metrics import SurveyMetrics
from gateway.surveys.model import ClosedOrder, EventError, parse_closed_event
from gateway.surveys.rules import SurveyRules
from gateway.surveys.store import SurveyStore

#: HOTLINE_TEST_SURVEY_REDIS_PORT moves it (two checkouts testing side by side)
PORT = int(os.environ.get("HOTLINE_TEST_SURVEY_REDIS_PORT", "6395"))
TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ).timestamp()  # a Monday morning
HOUR = 3600.0


@pytest.fixture(scope="session")
def _survey_redis_server():
    import redis

    client = redis.Redis(port=PORT, decode_responses=True, socket_timeout=2)
    try:
        client.ping()
        yield None
        return
    except redis.ConnectionError:
        pass
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen([binary, "--port", str(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip(f"redis-server did not start on port {PORT}")
            time.sleep(0.05)
    yield proc
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def survey_redis(_survey_redis_server):
    import redis

    client = redis.Redis(port=PORT, decode_responses=True, socket_timeout=5)
    client.flushdb()
    yield client
    client.close()


def resolve(d):
    box = []
    d.addBoth(box.append)
    assert box, "the deferred did not fire"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


class Rig:
    def __init__(self, client, clock=None, **rules):
        self.clock = clock or task.Clock()
        if clock is None:
            self.clock.advance(NOW)
        self.client = client
        self.registry = CollectorRegistry()
        self.metrics = SurveyMetrics(self.registry)
        self.store = SurveyStore(client, key_prefix="t", reopen_stream="t:workorders:reopen")
        self.jobs = JobStore(client, key_prefix="t", owner="gw")
        self.rules = SurveyRules(**{"delay": 2 * HOUR, "combine_ahead": 6 * HOUR, "max_orders_per_call": 3,
                                    "spacing": 24 * HOUR, "expiry": 72 * HOUR, **rules})
        self.campaign = SurveyCampaign(
            clock=self.clock, run_blocking=lambda fn: defer.maybeDeferred(fn), store=self.store, jobs=self.jobs,
            policy=NumberPolicy(), metrics=self.metrics, rules=self.rules,
            settings=CampaignSettings(caller_id="02112345", topics={"路灯": "streetlight"}),
        )

    def accept(self, order_id, phone="13800138000", closed_at=None, category="投诉", topic="路灯", unit="市政局",
               source="http"):
        closed = NOW if closed_at is None else closed_at
        order = ClosedOrder(order_id, phone, category, topic, unit, closed, closed - 86400)
        return resolve(defer.Deferred.fromCoroutine(self.campaign.accept(order, source)))

    def tick(self):
        return resolve(self.campaign.tick())

    def at(self, seconds):
        self.clock.advance(seconds - self.clock.seconds())

    def survey_jobs(self):
        return [j for j in self.jobs.list("survey", limit=1000)]

    def end_call(self, call_id, final):
        return resolve(defer.Deferred.fromCoroutine(self.campaign.call_ended(call_id, final)))

    def answer(self, order_id, **answers):
        now = self.clock.seconds()
        fields = {"reached": "1"}
        for q, a in answers.items():
            fields[q] = a
            fields[f"{q}_via"] = "key"
        assert self.store.update(order_id, now, fields)

    def sample(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0.0


# -- pure parts ---------------------------------------------------------------------------------------
def test_an_event_needs_an_order_id_phone_and_closure_time_and_reads_iso_times_as_local():
    order = parse_closed_event({"order_id": "GD-1", "phone": "138 0013 8000", "category": "投诉",
                                "topic": "路灯", "handling_unit": "市政局", "closed_at": "2026-11-23T08:00:00"}, TZ)
    assert order.closed_at == dt.datetime(2026, 11, 23, 8, 0, tzinfo=TZ).timestamp()
    assert order.unit == "市政局" and order.reported_at == order.closed_at
    for bad in ({"phone": "1", "closed_at": 1}, {"order_id": "a b", "phone": "1", "closed_at": 1},
                {"order_id": "A", "closed_at": 1}, {"order_id": "A", "phone": "1", "closed_at": "yesterday"}):
        with pytest.raises(EventError):
            parse_closed_event(bad, TZ)


def test_topics_map_to_prompt_keys_and_unknown_topics_to_other():
    topics = {"路灯": "streetlight", "噪音": "noise"}
    assert topic_key("路灯", topics) == "streetlight"
    assert topic_key("noise", topics) == "noise"
    assert topic_key("外星人", topics) == "other"
    assert topic_key("streetlight; DROP", topics) == "other"


def test_a_partial_or_silent_order_gets_its_status_from_what_was_answered():
    assert final_status({"status": "completed"}, "connected") is None
    assert final_status({"status": "calling", "solved": "solved", "satisfaction": "no_response"}, "connected") \
        == "completed"
    assert final_status({"status": "calling", "solved": "unsolved"}, "connected") == "partial"
    assert final_status({"status": "calling", "solved": "no_response", "reached": "1"}, "exhausted") == "refused"
    assert final_status({"status": "calling"}, "exhausted") == "no_answer"
    assert final_status({"status": "calling"}, "do_not_call") == "do_not_call"


# -- scheduling -------------------------------------------------------------------------------------
def test_an_order_is_called_only_after_the_delay_after_its_closure(survey_redis):
    rig = Rig(survey_redis)
    assert rig.accept("GD-1", closed_at=NOW - 30 * 60) == "added"
    rig.tick()
    assert rig.survey_jobs() == []
    rig.at(NOW + 90 * 60 - 1)
    rig.tick()
    assert rig.survey_jobs() == []
    rig.at(NOW + 90 * 60)
    rig.tick()
    [job] = rig.survey_jobs()
    assert job.mode == "survey" and job.caller_id == "02112345" and job.number == "13800138000"
    assert job.payload["orders"] == ["GD-1"]
    assert job.expires_at == NOW + 90 * 60 + 72 * HOUR


def test_the_call_carries_each_orders_id_topic_and_report_date_as_channel_variables(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.tick()
    [job] = rig.survey_jobs()
    assert job.payload["channel_vars"] == {
        "HOTLINE_SV_CALL": job.id, "HOTLINE_SV_COUNT": "1", "HOTLINE_SV_ORDER_1": "GD-1",
        "HOTLINE_SV_TOPIC_1": "streetlight", "HOTLINE_SV_DATE_1": "20261122",
    }


def test_the_same_closed_order_twice_schedules_one_survey(survey_redis):
    rig = Rig(survey_redis, delay=0)
    assert rig.accept("GD-1") == "added"
    assert rig.accept("GD-1", source="stream") == "exists"
    rig.tick()
    rig.tick()
    assert len(rig.survey_jobs()) == 1
    assert rig.sample("hotline_surveys_ignored_total", reason="duplicate") == 1


def test_five_orders_of_one_citizen_in_an_hour_are_one_call_then_one_more_a_day_later(survey_redis):
    rig = Rig(survey_redis)
    for n in range(5):
        rig.accept(f"GD-{n}", closed_at=NOW + n * 12 * 60)
    for minute in range(0, 24 * 60 + 1, 5):  # a day of ticks, every five minutes
        rig.at(NOW + 2 * HOUR + minute * 60)
        rig.tick()
    [call] = rig.survey_jobs()
    assert call.payload["orders"] == ["GD-0", "GD-1", "GD-2"]  # three per call, combined
    job = rig.jobs.get(call.id)
    rig.end_call(job.id, "connected")  # the citizen took the call; the rest wait for the spacing
    ended = rig.clock.seconds()
    rig.at(ended + 24 * HOUR - 1)
    rig.tick()
    assert len(rig.survey_jobs()) == 1
    rig.at(ended + 24 * HOUR)
    rig.tick()
    second = [j for j in rig.survey_jobs() if j.id != call.id]
    assert [j.payload["orders"] for j in second] == [["GD-3", "GD-4"]]
    assert rig.sample("hotline_surveys_orders_combined_total") == 5


def test_a_new_order_of_a_number_called_recently_waits_for_the_spacing(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.tick()
    [first] = rig.survey_jobs()
    rig.end_call(first.id, "connected")
    rig.at(NOW + HOUR)
    rig.accept("GD-2", closed_at=NOW + HOUR)
    rig.at(NOW + 23 * HOUR)
    rig.tick()
    assert len(rig.survey_jobs()) == 1
    rig.at(NOW + 24 * HOUR)
    rig.tick()
    assert len(rig.survey_jobs()) == 2


def test_different_numbers_are_not_combined(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1", phone="13800138000")
    rig.accept("GD-2", phone="13900139000")
    rig.tick()
    assert sorted(j.payload["orders"][0] for j in rig.survey_jobs()) == ["GD-1", "GD-2"]


def test_numbers_the_dialling_policy_refuses_and_stale_orders_are_not_surveyed(survey_redis):
    rig = Rig(survey_redis, delay=0)
    assert rig.accept("GD-1", phone="110") == "ignored:policy"
    assert rig.accept("GD-2", closed_at=NOW - 30 * 86400) == "ignored:too_old"
    rig.tick()
    assert rig.survey_jobs() == []


def test_a_crash_between_planning_a_call_and_adding_its_job_is_repaired_without_a_second_call(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.store.promote(NOW, NOW, 3)  # planned, then the gateway died before the dialer job was added
    assert rig.survey_jobs() == []
    restarted = Rig(survey_redis, clock=rig.clock, delay=0)
    restarted.tick()
    restarted.tick()
    [job] = restarted.survey_jobs()
    assert job.payload["orders"] == ["GD-1"]
    assert restarted.store.unsubmitted() == []


# -- results ---------------------------------------------------------------------------------------
def test_each_order_gets_exactly_one_result_and_is_counted_once(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.tick()
    rig.answer("GD-1", solved="solved", satisfaction="satisfied")
    assert resolve(defer.Deferred.fromCoroutine(rig.campaign.finish("GD-1", "completed"))) == "finished"
    assert resolve(defer.Deferred.fromCoroutine(rig.campaign.finish("GD-1", "completed"))) == "already"
    [job] = rig.survey_jobs()
    rig.end_call(job.id, "connected")  # the call's end does not overwrite it
    assert rig.store.order("GD-1")["status"] == "completed"
    assert not rig.store.update("GD-1", rig.clock.seconds(), {"solved": "unsolved"})  # closed for answers
    assert rig.sample("hotline_surveys_finished_total", status="completed") == 1
    assert rig.sample("hotline_survey_solved_total", category="complaint", answer="solved") == 1
    assert rig.sample("hotline_survey_satisfaction_total", category="complaint", answer="satisfied") == 1
    assert survey_redis.xlen("t:surveys:outbox") == 1
    assert survey_redis.xlen("t:workorders:reopen") == 0


@pytest.mark.parametrize("solved,satisfaction,reason", [
    ("unsolved", "satisfied", "unsolved"),
    ("solved", "dissatisfied", "dissatisfied"),
    ("unsolved", "dissatisfied", "unsolved+dissatisfied"),
])
def test_an_unsolved_or_dissatisfied_answer_emits_one_reopen_event(survey_redis, solved, satisfaction, reason):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.tick()
    rig.answer("GD-1", solved=solved, satisfaction=satisfaction)
    rig.store.update("GD-1", NOW, {"comment": "rec-1"})
    resolve(defer.Deferred.fromCoroutine(rig.campaign.finish("GD-1", "completed")))
    resolve(defer.Deferred.fromCoroutine(rig.campaign.finish("GD-1", "completed")))
    [(_, event)] = survey_redis.xrange("t:workorders:reopen")
    assert event["order_id"] == "GD-1" and event["reason"] == reason
    assert event["comment_recording_id"] == "rec-1" and event["unit"] == "市政局"
    assert rig.sample("hotline_surveys_reopened_total", category="complaint") == 1


def test_a_citizen_who_hangs_up_halfway_keeps_the_answers_given_as_a_partial_survey(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.tick()
    rig.answer("GD-1", solved="unsolved")
    [job] = rig.survey_jobs()
    assert rig.end_call(job.id, "connected") == [("GD-1", "partial")]
    order = rig.store.order("GD-1")
    assert order["status"] == "partial" and order["solved"] == "unsolved" and "satisfaction" not in order
    [(_, event)] = survey_redis.xrange("t:workorders:reopen")
    assert event["reason"] == "unsolved"
    assert rig.sample("hotline_survey_solved_total", category="complaint", answer="unsolved") == 1


def test_a_citizen_who_never_answers_is_no_answer_and_one_who_only_listened_is_refused(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1", phone="13800138000")
    rig.accept("GD-2", phone="13900139000")
    rig.tick()
    jobs = {j.payload["orders"][0]: j for j in rig.survey_jobs()}
    rig.store.update("GD-2", NOW, {"reached": "1"})
    assert rig.end_call(jobs["GD-1"].id, "exhausted") == [("GD-1", "no_answer")]
    assert rig.end_call(jobs["GD-2"].id, "exhausted") == [("GD-2", "refused")]
    assert rig.sample("hotline_surveys_finished_total", status="no_answer") == 1
    assert rig.sample("hotline_surveys_finished_total", status="refused") == 1
    outbox = [json.loads(f["data"]) for _, f in survey_redis.xrange("t:surveys:outbox")]
    assert sorted(o["status"] for o in outbox) == ["no_answer", "refused"]


def test_the_dialers_listeners_count_attempts_and_ignore_other_campaigns(survey_redis):
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.tick()
    [job] = rig.survey_jobs()
    rig.campaign.on_attempt(job, AttemptOutcome("no_answer"))
    other = job.__class__(**{**job.__dict__, "campaign": "callback"})
    rig.campaign.on_attempt(other, AttemptOutcome("no_answer"))
    rig.campaign.on_final(other, "exhausted", None, NOW)
    assert rig.sample("hotline_surveys_attempted_total", outcome="no_answer") == 1
    assert rig.store.order("GD-1")["status"] == "calling"


def test_channel_vars_name_at_most_the_orders_of_the_call():
    from gateway.surveys.store import CallPlan

    plan = CallPlan("sv-1", "+8613800138000", "13800138000",
                    ({"order_id": "A", "topic": "噪音", "reported_at": repr(NOW)},), NOW, NOW)
    assert channel_vars(plan, {"噪音": "noise"}, TZ)["HOTLINE_SV_TOPIC_1"] == "noise"


def test_a_call_whose_dialer_job_ended_while_the_gateway_was_down_is_finished_by_the_sweep(survey_redis):
    """The dialer wrote the job's final outcome, then the gateway died before the survey listener ran."""
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.accept("GD-2", phone="13900139000")
    rig.tick()
    jobs = {j.payload["orders"][0]: j for j in rig.survey_jobs()}
    assert len(rig.jobs.claim(NOW + 1, 10, 60)) == 2  # the dialer took both
    rig.answer("GD-1", solved="solved", satisfaction="satisfied")
    for job in jobs.values():
        rig.jobs.finish(job.id, NOW + 2, None, final="connected" if job.payload["orders"] == ["GD-1"] else "exhausted")
    restarted = Rig(survey_redis, clock=rig.clock, delay=0)
    restarted.tick()
    assert restarted.store.order("GD-1")["status"] == "completed"
    assert restarted.store.order("GD-2")["status"] == "no_answer"
    assert restarted.store.open_calls() == []
    restarted.clock.advance(120)
    restarted.tick()
    assert survey_redis.xlen("t:surveys:outbox") == 2  # once each


class _PlansBetweenReads:
    """Instance A's survey store: after A's ``at``-th store call (0: before the first), instance B plans a
    call (its Lua step), so B's call appears during A's sweep, before B has added its dialer job."""

    def __init__(self, store, at, plan):
        self._store, self._at, self._plan, self._calls = store, at, plan, 0

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self._calls == self._at == 0:
                self._plan()
            result = attr(*args, **kwargs)
            self._calls += 1
            if self._calls == self._at:
                self._plan()
            return result

        return call


@pytest.mark.parametrize("at", [0, 1])
def test_a_call_another_instance_plans_during_the_sweep_is_not_finished_as_no_answer(survey_redis, at):
    """Two gateways: B plans a call while A sweeps, before B's job is added; A must not end it (no job yet)."""
    a = Rig(survey_redis, delay=0)
    b = Rig(survey_redis, clock=a.clock, delay=0)
    b.accept("GD-1")
    plans = []
    a.campaign.store = _PlansBetweenReads(a.store, at, lambda: plans.extend(
        b.store.promote(a.clock.seconds(), a.clock.seconds(), 3)))
    assert resolve(defer.Deferred.fromCoroutine(a.campaign.sweep())) == 0
    assert [p.call_id for p in plans] and a.store.order("GD-1")["status"] == "calling"
    assert a.store.open_calls() == [plans[0].call_id]
    b.tick()  # B adds its job
    [job] = b.survey_jobs()
    assert job.id == plans[0].call_id
    a.clock.advance(120)
    assert resolve(defer.Deferred.fromCoroutine(a.campaign.sweep())) == 0  # the job is pending: still open
    assert len(a.jobs.claim(a.clock.seconds(), 10, 60)) == 1
    a.jobs.finish(job.id, a.clock.seconds(), None, final="exhausted")
    assert resolve(defer.Deferred.fromCoroutine(a.campaign.sweep())) == 1
    assert a.store.order("GD-1")["status"] == "no_answer"


def test_a_citizen_who_declines_joins_the_do_not_call_list_and_the_calls_orders_end_as_declined(survey_redis):
    """The flow's "don't call me again" key: the dialer's own do-not-call list (as `callbacks dnc` adds to)."""
    rig = Rig(survey_redis, delay=0)
    rig.accept("GD-1")
    rig.accept("GD-2")
    rig.tick()
    [job] = rig.survey_jobs()
    rig.answer("GD-1", solved="unsolved")
    assert resolve(defer.Deferred.fromCoroutine(rig.campaign.decline(["GD-1", "GD-2"]))) == 2
    assert rig.jobs.is_dnc("+8613800138000")
    assert [rig.store.order(i)["status"] for i in ("GD-1", "GD-2")] == ["declined", "declined"]
    assert survey_redis.xlen("t:workorders:reopen") == 0  # a decline reopens nothing
    statuses = [json.loads(f["data"])["status"] for _, f in survey_redis.xrange("t:surveys:outbox")]
    assert statuses == ["declined", "declined"]
    assert rig.sample("hotline_surveys_finished_total", status="declined") == 2
    assert resolve(defer.Deferred.fromCoroutine(rig.campaign.decline(["GD-1"]))) == 0  # once
    rig.end_call(job.id, "connected")
    assert rig.store.order("GD-1")["status"] == "declined"  # the call's end changes nothing
