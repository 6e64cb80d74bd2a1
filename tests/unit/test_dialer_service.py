"""The dispatch loop with task.Clock, a scripted AMI session and the real job store (private Redis).

The AMI side is a fake that records actions and lets each test answer them
and send the events Asterisk would (OriginateResponse, the dialplan's
HotlineCallback UserEvents, Hangup, DBGet/CoreShowChannels replies).
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.ami.codec import AmiMessage
from gateway.ami.protocol import AmiActionError, AmiConnectionLost
from gateway.dialer.jobs import JobStore, NewJob
from gateway.dialer.pacing import Pacer, TrunkLimit
from gateway.dialer.policy import NumberPolicy
from gateway.dialer.retry import RetryPolicy
from gateway.dialer.service import Dialer, DialerMetrics, DialerSettings
from gateway.dialer.windows import CallWindows

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

TZ = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ).timestamp()  # a Monday morning


def msg(**headers) -> AmiMessage:
    return AmiMessage(headers=dict(headers), lines=tuple(headers.items()))


class FakeAmi:
    def __init__(self) -> None:
        self.logged_in = True
        self.sent: list[tuple[str, object, defer.Deferred]] = []
        self.db: dict[str, str] = {}
        self.channels: set[str] = set()
        self._ids = 0

    def send_action(self, action, fields=None, event_list=False, timeout=None):
        if not self.logged_in:
            return defer.fail(AmiConnectionLost("down"))
        if action == "DBGet":
            value = self.db.get(fields["Key"])
            if value is None:
                return defer.fail(AmiActionError(msg(Response="Error", Message="Database entry not found")))
            return defer.succeed([msg(Response="Success", EventList="start"),
                                  msg(Event="DBGetResponse", Family=fields["Family"], Key=fields["Key"], Val=value),
                                  msg(Event="DBGetComplete", EventList="Complete")])
        if action == "CoreShowChannels":
            return defer.succeed([msg(Response="Success")] + [msg(Event="CoreShowChannel", Uniqueid=u)
                                                              for u in self.channels])
        d = defer.Deferred()
        self.sent.append((action, fields, d))
        return d

    def originates(self):
        return [(dict((k, v) for k, v in fields if k != "Variable"), [v for k, v in fields if k == "Variable"], d)
                for action, fields, d in self.sent if action == "Originate"]

    def queue(self, index=-1) -> str:
        """Answer an Originate with 'successfully queued'; returns its ActionID."""
        _, _, d = self.originates()[index]
        self._ids += 1
        action_id = f"hl-{self._ids}"
        d.callback(msg(Response="Success", ActionID=action_id, Message="Originate successfully queued"))
        return action_id


class Rig:
    def __init__(self, client, owner="gw-a", clock=None, settings=None, ami=None, policy=None, **limits):
        self.clock = clock or task.Clock()
        if clock is None:
            self.clock.advance(START)
        self.ami = ami or FakeAmi()
        self.store = JobStore(client, key_prefix="t", owner=owner)
        self.registry = CollectorRegistry()
        self.finals = []
        self.broken = False

        def run_blocking(fn):
            if self.broken:
                return defer.fail(ConnectionError("redis down"))
            return defer.maybeDeferred(fn)

        self.pacer = Pacer(self.clock, {"carrier": TrunkLimit(**{"channels": 30, "reserve": 10, "max_outbound": 5,
                                                                 "rate": 100.0, **limits})})
        self.dialer = Dialer(
            clock=self.clock, run_blocking=run_blocking, store=self.store, ami=self.ami, pacer=self.pacer,
            windows=CallWindows("08:00", "21:00", holidays="statutory"), retry=RetryPolicy(max_attempts=3),
            metrics=DialerMetrics(self.registry), settings=settings or DialerSettings(min_talk=10, lease=60),
            policy=policy,
        )
        self.dialer.add_final_listener(lambda job, final, outcome, at: self.finals.append((job.id, final)))

    def add(self, job_id, number="13800138000", original=None, expires=None, mode="citizen-first"):
        original = START - 60 if original is None else original
        e164 = "+86" + number.lstrip("0")
        self.store.add(NewJob(job_id, "callback", number, e164, original, original,
                              expires or original + 86400, caller_id="02112345", mode=mode), self.clock.seconds())

    def tick(self):
        self.dialer._next_housekeeping = 0.0
        return self.dialer.tick()

    def sample(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0.0


def test_a_due_callback_is_originated_into_the_fixed_context_with_the_attempt_id_as_channel(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1", "13800138000")
    rig.tick()
    [(fields, variables, _)] = rig.ami.originates()
    assert fields["Channel"] == "Local/13800138000@hotline-callback-out/n"
    assert fields["Context"] == "hotline-callback" and fields["Async"] == "true"
    assert fields["ChannelId"].startswith("hlcb-") and fields["CallerID"] == "12345 <02112345>"
    assert f"__HOTLINE_CB_ID={fields['ChannelId']}" in variables
    assert rig.store.get("cb-1").phase == "dialing"


def test_busy_from_the_dialplan_event_schedules_a_retry_with_the_busy_backoff(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    action_id = rig.ami.queue()
    rig.dialer.on_user_event(msg(Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt,
                                 Step="dial-failed", Data="dial,BUSY,17"))
    rig.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Failure",
                                         Reason="1", Uniqueid=attempt))
    job = rig.store.get("cb-1")
    assert job.state == "pending" and job.due_at == rig.clock.seconds() + 300
    assert rig.store.history("cb-1")[-1]["outcome"] == "busy"
    assert rig.sample("hotline_dialer_attempts_total", campaign="callback", outcome="busy") == 1
    assert rig.pacer.active("carrier") == 0


def test_the_reason_code_alone_gives_the_outcome_when_no_dialplan_event_came(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    action_id = rig.ami.queue()
    rig.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Failure",
                                         Reason="3"))
    assert rig.store.get("cb-1").state == "leased"  # waiting briefly for the trunk leg's record
    rig.clock.advance(2)
    assert rig.store.history("cb-1")[-1]["outcome"] == "no_answer"


def test_a_dial_record_arriving_after_the_originate_failure_still_decides_the_outcome(dialer_redis):
    """The far end's 486 can end the originated leg before the trunk leg reports BUSY."""
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    action_id = rig.ami.queue()
    rig.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Failure",
                                         Reason="0", Uniqueid=attempt))
    rig.dialer.on_user_event(msg(Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt,
                                 Step="dial-failed", Data="dial,BUSY,17"))
    assert rig.store.history("cb-1")[-1]["outcome"] == "busy"


def test_a_dial_record_only_in_astdb_is_found_after_the_originate_failure(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    action_id = rig.ami.queue()
    rig.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Failure",
                                         Reason="0", Uniqueid=attempt))
    rig.ami.db[attempt] = "dial,CONGESTION,34"
    rig.clock.advance(2)
    assert rig.store.history("cb-1")[-1]["outcome"] == "congestion"


def test_pressing_1_and_talking_long_enough_connects_the_callback_once(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    action_id = rig.ami.queue()
    rig.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Success",
                                         Reason="4", Uniqueid=attempt))
    rig.clock.advance(200)  # a long call: no timer fires, the lease is renewed
    rig.tick()
    assert rig.store.get("cb-1").state == "leased"
    rig.dialer.on_user_event(msg(Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt, Step="done",
                                 Data="result,1,45"))
    rig.dialer.on_hangup(msg(Event="Hangup", Uniqueid=attempt))
    rig.clock.advance(5)
    assert rig.finals == [("cb-1", "connected")]
    assert rig.store.get("cb-1").outcome == "connected"
    assert len(rig.ami.originates()) == 1


def test_voicemail_or_a_short_talk_is_unconfirmed_and_retried(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    rig.ami.queue()
    rig.dialer.on_user_event(msg(Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt, Step="done",
                                 Data="result,1,4"))
    assert rig.store.get("cb-1").state == "pending"
    assert rig.store.history("cb-1")[-1]["outcome"] == "unconfirmed"


def test_an_answered_call_whose_events_were_missed_is_settled_from_astdb_after_its_hangup(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    rig.ami.queue()
    rig.ami.db[attempt] = "result,1,30"
    rig.dialer.on_hangup(msg(Event="Hangup", Uniqueid=attempt))
    rig.clock.advance(2)
    assert rig.finals == [("cb-1", "connected")]


def test_an_attempt_with_no_response_and_no_channel_left_is_failed_not_lost(dialer_redis):
    rig = Rig(dialer_redis, settings=DialerSettings(ring_timeout=30, response_grace=30))
    rig.add("cb-1")
    rig.tick()
    rig.ami.queue()
    rig.clock.advance(61)
    job = rig.store.get("cb-1")
    assert job.state == "pending" and rig.store.history("cb-1")[-1]["outcome"] == "failed"


def test_a_channel_still_up_is_left_alone_until_it_ends(dialer_redis):
    rig = Rig(dialer_redis, settings=DialerSettings(ring_timeout=30, response_grace=30))
    rig.add("cb-1")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    rig.ami.channels.add(attempt)
    rig.clock.advance(61)
    assert rig.store.get("cb-1").state == "leased"
    rig.ami.channels.clear()
    rig.ami.db[attempt] = "result,0,0"
    rig.tick()
    rig.clock.advance(1)
    assert rig.store.history("cb-1")[-1]["outcome"] == "unconfirmed"


def test_no_calls_while_ami_is_down_or_outside_the_window(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.ami.logged_in = False
    rig.tick()
    assert rig.ami.originates() == [] and rig.dialer.pause_reason == "ami"
    rig.ami.logged_in = True
    rig.clock.advance(12 * 3600)  # 22:00
    rig.tick()
    assert rig.ami.originates() == [] and rig.dialer.pause_reason == "window"
    assert rig.sample("hotline_dialer_paused", reason="window") == 1


def test_redis_down_pauses_the_dialer_without_an_error_and_it_resumes(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.broken = True
    rig.tick()
    assert rig.dialer.pause_reason == "redis" and rig.ami.originates() == []
    assert rig.sample("hotline_dialer_store_failures_total") >= 1
    rig.broken = False
    rig.clock.advance(6)
    rig.tick()
    assert len(rig.ami.originates()) == 1 and rig.dialer.pause_reason is None


def test_pacing_limits_calls_in_flight(dialer_redis):
    rig = Rig(dialer_redis, max_outbound=2)
    for i in range(5):
        rig.add(f"cb-{i}", f"1380000000{i}")
    rig.tick()
    rig.clock.advance(1)
    rig.tick()
    assert len(rig.ami.originates()) == 2
    assert rig.store.counts()["due"] == 3


def test_an_expired_callback_is_finished_without_a_call(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1", original=START - 7200, expires=START - 1)
    rig.tick()
    assert rig.ami.originates() == [] and rig.finals == [("cb-1", "expired")]


def test_a_gateway_restart_mid_call_settles_the_attempt_once_and_never_redials(dialer_redis):
    clock = task.Clock()
    clock.advance(START)
    ami = FakeAmi()
    first = Rig(dialer_redis, owner="gw-before", clock=clock, ami=ami)
    first.add("cb-1")
    first.tick()
    attempt = ami.originates()[0][0]["ChannelId"]
    ami.queue()
    first.dialer.stop()  # the process dies (its timers with it); Asterisk carries the call on
    del first
    ami.channels.add(attempt)
    clock.advance(30)
    second = Rig(dialer_redis, owner="gw-after", clock=clock, ami=ami)
    second.tick()
    assert ami.originates()[1:] == []  # the lease is still the dead instance's: nothing happens
    clock.advance(31)  # the old lease (60 s) has expired
    second.tick()
    clock.advance(1)
    assert second.store.get("cb-1").state == "leased"  # taken over, channel still up
    ami.channels.clear()
    ami.db[attempt] = "result,1,90"
    second.tick()
    clock.advance(1)
    assert second.finals == [("cb-1", "connected")]
    assert len(ami.originates()) == 1
    assert second.sample("hotline_dialer_leases_recovered_total") == 1


def test_an_originate_refused_by_asterisk_is_a_failed_attempt(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")
    rig.tick()
    _, _, d = rig.ami.originates()[0]
    d.errback(AmiActionError(msg(Response="Error", Message="Permission denied")))
    assert rig.store.history("cb-1")[-1]["outcome"] == "failed"


def test_agent_first_waits_for_a_free_agent_and_keeps_its_place(dialer_redis):
    rig = Rig(dialer_redis)
    agents = {"n": 0}
    rig.pacer._available_agents = lambda queue: agents["n"]
    rig.add("cb-1", mode="agent-first")
    rig.tick()
    assert rig.ami.originates() == [] and rig.store.get("cb-1").state == "pending"
    agents["n"] = 1
    rig.clock.advance(1)
    rig.tick()
    [(fields, variables, _)] = rig.ami.originates()
    assert fields["Channel"] == "Local/12345@hotline-callback-agent/n"
    assert "__HOTLINE_CB_DIAL=13800138000" in variables


def test_a_number_the_policy_refuses_now_is_never_dialled_and_its_job_ends_rejected(dialer_redis):
    """A 400 number that reached the store without the policy (or before it was tightened)."""
    from twisted.logger import formatEvent, globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        rig = Rig(dialer_redis, policy=NumberPolicy())
        attempts = []
        rig.dialer.add_attempt_listener(lambda job, outcome: attempts.append((job.id, outcome.outcome)))
        rig.add("cb-1", "4001234567")
        rig.tick()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert rig.ami.originates() == [] and rig.pacer.active("carrier") == 0
    job = rig.store.get("cb-1")
    assert job.state == "done" and job.outcome == "rejected" and job.attempts == 0
    assert rig.store.history("cb-1")[-2]["outcome"] == "rejected_by_policy"
    assert rig.finals == [("cb-1", "rejected")] and attempts == [("cb-1", "rejected_by_policy")]
    assert rig.sample("hotline_dialer_attempts_total", campaign="callback", outcome="rejected_by_policy") == 1
    assert rig.sample("hotline_dialer_jobs_finished_total", campaign="callback", outcome="rejected") == 1
    [line] = [formatEvent(e) for e in events if "number policy" in formatEvent(e)]
    assert "400***4567" in line and "4001234567" not in line


def test_a_policy_tightened_after_scheduling_stops_the_next_attempt(dialer_redis):
    rig = Rig(dialer_redis, policy=NumberPolicy({"landline"}))
    rig.add("cb-mobile", "13800138000")
    rig.add("cb-landline", "02088889999", original=START - 30)
    rig.tick()
    rig.clock.advance(1)
    rig.tick()
    [(fields, _, _)] = rig.ami.originates()
    assert fields["Channel"] == "Local/02088889999@hotline-callback-out/n"
    assert rig.store.get("cb-mobile").outcome == "rejected"
