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
from gateway.dialer.pacestore import PaceStore
from gateway.dialer.pacing import Pacer, QueueLoad, TrunkLimit
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
    def __init__(self, client, owner="gw-a", clock=None, settings=None, ami=None, policy=None, agent_margin=1,
                 **limits):
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

        #: the live monitor's view of the agent queue (plenty of agents unless a test says otherwise)
        self.queues = {"12345": QueueLoad(available=10, waiting=0)}
        self.trunk_channels = 0
        self.pacer = Pacer({"carrier": TrunkLimit(**{"channels": 30, "reserve": 10, "max_outbound": 5,
                                                     "rate": 100.0, **limits})},
                           trunk_channels=lambda trunk: self.trunk_channels, queue_loads=lambda: dict(self.queues),
                           agent_margin=agent_margin)
        self.paces = PaceStore(client, key_prefix="t")
        self.dialer = Dialer(
            clock=self.clock, run_blocking=run_blocking, store=self.store, ami=self.ami, pacer=self.pacer,
            pace_store=self.paces,
            windows=CallWindows("08:00", "21:00", holidays="statutory"), retry=RetryPolicy(max_attempts=3),
            metrics=DialerMetrics(self.registry), settings=settings or DialerSettings(min_talk=10, lease=60),
            policy=policy,
        )
        self.dialer.add_final_listener(lambda job, final, outcome, at: self.finals.append((job.id, final)))

    def add(self, job_id, number="13800138000", original=None, expires=None, mode="citizen-first",
            campaign="callback"):
        original = START - 60 if original is None else original
        e164 = "+86" + number.lstrip("0")
        self.store.add(NewJob(job_id, campaign, number, e164, original, original,
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
    assert rig.paces.in_flight("carrier", rig.clock.seconds()) == 0  # its slot is back in the shared store


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
    rig.queues["12345"] = QueueLoad(available=0, waiting=0)
    rig.add("cb-1", mode="agent-first")
    rig.tick()
    assert rig.ami.originates() == [] and rig.store.get("cb-1").state == "pending"
    rig.queues["12345"] = QueueLoad(available=1, waiting=0)
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
    assert rig.ami.originates() == [] and rig.paces.in_flight("carrier", rig.clock.seconds()) == 0
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


def dialled(rig):
    """The numbers originated so far, in order (agent-first calls carry it in HOTLINE_CB_DIAL)."""
    return [next(v.split("=", 1)[1] for v in variables if v.startswith("__HOTLINE_CB_DIAL="))
            for _, variables, _ in rig.ami.originates()]


def finish_call(rig, index, data="result,1,30"):
    attempt = rig.ami.originates()[index][0]["ChannelId"]
    rig.dialer.on_user_event(msg(Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt, Step="done",
                                 Data=data))


def test_a_waiting_inbound_caller_blocks_a_citizen_first_callback_until_an_agent_is_free(dialer_redis):
    rig = Rig(dialer_redis)
    rig.queues["12345"] = QueueLoad(available=1, waiting=1)  # the one free agent is the waiting caller's
    rig.add("cb-1", "13800000001")
    rig.tick()
    assert rig.ami.originates() == [] and rig.store.get("cb-1").state == "pending"
    rig.queues["12345"] = QueueLoad(available=0, waiting=0)  # the caller got the agent
    rig.clock.advance(1)
    rig.tick()
    assert rig.ami.originates() == []
    rig.queues["12345"] = QueueLoad(available=1, waiting=0)  # another agent is free, no one waits
    rig.clock.advance(1)
    rig.tick()
    assert dialled(rig) == ["13800000001"]


def test_surveys_are_not_held_back_by_callers_waiting_for_agents(dialer_redis):
    rig = Rig(dialer_redis)
    rig.queues["12345"] = QueueLoad(available=0, waiting=5)
    rig.add("cb-1", "13800000001")
    rig.add("sv-1", "13800000002", original=START - 30, mode="survey", campaign="survey")
    rig.tick()
    assert dialled(rig) == ["13800000002"]
    assert rig.ami.originates()[0][0]["Context"] == "hotline-survey"
    assert rig.store.get("cb-1").state == "pending"


def test_the_agent_margin_keeps_more_agents_free_for_inbound_callers(dialer_redis):
    rig = Rig(dialer_redis, agent_margin=2)
    rig.queues["12345"] = QueueLoad(available=2, waiting=1)
    rig.add("cb-1", "13800000001")
    rig.tick()
    assert rig.ami.originates() == []
    rig.queues["12345"] = QueueLoad(available=3, waiting=1)
    rig.clock.advance(1)
    rig.tick()
    assert dialled(rig) == ["13800000001"]


def test_a_callback_holds_its_agent_until_it_waits_in_the_queue(dialer_redis):
    """Ringing the citizen the callback is nowhere in the queue yet: it holds the free agent, then the
    monitor counts it as waiting."""
    rig = Rig(dialer_redis)
    rig.queues["12345"] = QueueLoad(available=1, waiting=0)
    rig.add("cb-1", "13800000001")
    rig.add("cb-2", "13800000002", original=START - 30)
    rig.tick()
    assert dialled(rig) == ["13800000001"]
    rig.clock.advance(1)
    rig.tick()
    assert len(rig.ami.originates()) == 1 and rig.paces.held("12345", rig.clock.seconds()) == 1
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    rig.dialer.on_queue_join(msg(Event="QueueCallerJoin", Queue="12345", Uniqueid=attempt, Position="1"))
    rig.queues["12345"] = QueueLoad(available=1, waiting=1)
    assert rig.paces.held("12345", rig.clock.seconds()) == 0
    rig.clock.advance(1)
    rig.tick()
    assert len(rig.ami.originates()) == 1  # the free agent is the waiting callback's
    rig.queues["12345"] = QueueLoad(available=1, waiting=0)  # answered by one agent, another one free
    rig.clock.advance(1)
    rig.tick()
    assert dialled(rig) == ["13800000001", "13800000002"]


def test_an_agent_first_call_holds_its_agent_until_its_waiting_leg_joins_the_queue(dialer_redis):
    rig = Rig(dialer_redis)
    rig.queues["12345"] = QueueLoad(available=1, waiting=0)
    rig.add("af-1", "13800000001", mode="agent-first")
    rig.tick()
    attempt = rig.ami.originates()[0][0]["ChannelId"]
    assert rig.paces.held("12345", rig.clock.seconds()) == 1
    rig.dialer.on_queue_join(msg(Event="QueueCallerJoin", Queue="12345", Uniqueid="someone-else", Position="1"))
    assert rig.paces.held("12345", rig.clock.seconds()) == 1
    rig.dialer.on_queue_join(msg(Event="QueueCallerJoin", Queue="12345", Uniqueid=f"{attempt}-2", Position="1"))
    assert rig.paces.held("12345", rig.clock.seconds()) == 0


def test_an_agent_first_job_without_an_agent_does_not_block_the_jobs_behind_it(dialer_redis):
    """One call per second, the head of the line waits for an agent: the surveys behind it take the
    tokens it cannot use; the agent-bound jobs keep their order among themselves."""
    rig = Rig(dialer_redis, rate=1.0)
    rig.queues["12345"] = QueueLoad(available=0, waiting=0)
    rig.add("af-1", "13800000001", original=START - 60, mode="agent-first")
    rig.add("sv-1", "13800000002", original=START - 50, mode="survey", campaign="survey")
    rig.add("cf-1", "13800000003", original=START - 40)
    rig.add("sv-2", "13800000004", original=START - 30, mode="survey", campaign="survey")
    rig.tick()
    assert dialled(rig) == ["13800000002"]
    rig.clock.advance(1)
    rig.tick()
    assert dialled(rig) == ["13800000002", "13800000004"]
    rig.clock.advance(1)
    rig.tick()
    assert len(rig.ami.originates()) == 2  # no agent: the callbacks wait, tokens unused
    rig.queues["12345"] = QueueLoad(available=1, waiting=0)
    rig.clock.advance(1)
    rig.tick()
    assert dialled(rig)[2:] == ["13800000001"]  # first in line among the agent-bound jobs
    assert rig.store.get("cf-1").state == "pending"
    rig.queues["12345"] = QueueLoad(available=2, waiting=0)
    rig.clock.advance(1)
    rig.tick()
    assert dialled(rig)[2:] == ["13800000001", "13800000003"]


def test_a_job_that_ends_without_a_call_gives_its_token_back_in_the_same_tick(dialer_redis):
    rig = Rig(dialer_redis, rate=1.0)
    rig.add("old", "13800000001", original=START - 7200, expires=START - 1)
    rig.tick()
    assert rig.finals == [("old", "expired")]
    rig.add("cb-1", "13800000002")
    rig.tick()  # same instant: the expired job's token is still there
    assert dialled(rig) == ["13800000002"]


def test_a_pacing_store_failure_pauses_the_dialer_instead_of_dialling_unpaced(dialer_redis):
    rig = Rig(dialer_redis)
    rig.add("cb-1")

    def down(*args, **kwargs):
        raise ConnectionError("redis down")

    acquire, rig.paces.acquire = rig.paces.acquire, down
    rig.tick()
    assert rig.ami.originates() == [] and rig.dialer.pause_reason == "redis"
    assert rig.store.get("cb-1").state == "pending"
    rig.paces.acquire = acquire
    rig.clock.advance(6)
    rig.tick()
    assert len(rig.ami.originates()) == 1 and rig.dialer.pause_reason is None


def test_a_slot_given_back_while_redis_is_down_is_given_back_once_it_returns(dialer_redis):
    rig = Rig(dialer_redis, max_outbound=1)
    rig.add("cb-1", "13800000001")
    rig.add("cb-2", "13800000002", original=START - 30)
    rig.tick()
    rig.broken = True
    finish_call(rig, 0)  # settled (kept to write later), its slot kept to give back later
    assert rig.paces.in_flight("carrier", rig.clock.seconds()) == 1
    rig.broken = False
    rig.clock.advance(6)
    rig.tick()
    assert rig.store.get("cb-1").outcome == "connected"
    assert dialled(rig) == ["13800000001", "13800000002"]


class TwoInstances:
    """Two gateways on one clock and one Redis (each with its own AMI session), calls answered and
    ended ``call_length`` seconds after their Originate."""

    def __init__(self, client, jobs, call_length, **limits):
        self.clock = task.Clock()
        self.clock.advance(START)
        self.rigs = [Rig(client, owner=owner, clock=self.clock, **limits) for owner in ("gw-a", "gw-b")]
        for i in range(jobs):
            self.rigs[0].add(f"job-{i:02d}", f"138000000{i:02d}", original=START - 600 + i)
        self.call_length = call_length
        self.started: list[tuple[float, int, int]] = []  # (at, rig, index)
        self.ended: set[tuple[int, int]] = set()
        self.steps = 0

    def step(self, dt):
        self.steps += 1
        # which gateway looks first at an instant varies, as it would between two processes
        for r in ((0, 1) if self.steps % 3 else (1, 0)):
            rig = self.rigs[r]
            before = len(rig.ami.originates())
            rig.tick()
            self.started += [(self.clock.seconds(), r, i) for i in range(before, len(rig.ami.originates()))]
        for at, r, i in self.started:
            if (r, i) not in self.ended and self.clock.seconds() - at >= self.call_length:
                finish_call(self.rigs[r], i)
                self.ended.add((r, i))
        self.clock.advance(dt)

    def in_flight(self):
        return len(self.started) - len(self.ended)

    def numbers(self):
        return sorted(dialled(self.rigs[0]) + dialled(self.rigs[1]))

    def finals(self):
        return sorted(self.rigs[0].finals + self.rigs[1].finals)


def test_two_instances_together_never_exceed_the_trunks_calls_per_second_and_dial_every_job_once(dialer_redis):
    pair = TwoInstances(dialer_redis, jobs=12, call_length=1.0, rate=1.0, max_outbound=10)
    t0 = pair.clock.seconds()
    while len(pair.finals()) < 12 and pair.clock.seconds() < t0 + 60:
        pair.step(0.25)
        # a full bucket (one call) at t0, then one per second — for both gateways together
        assert len(pair.started) <= 1 + (pair.clock.seconds() - t0)
    assert pair.numbers() == [f"138000000{i:02d}" for i in range(12)]
    assert pair.finals() == [(f"job-{i:02d}", "connected") for i in range(12)]
    assert {r for _, r, _ in pair.started} == {0, 1}  # both gateways dialled
    assert pair.clock.seconds() - t0 < 14  # and the rate was used, not wasted


def test_two_instances_together_never_exceed_the_trunks_concurrent_outbound_calls(dialer_redis):
    pair = TwoInstances(dialer_redis, jobs=12, call_length=3.0, rate=100.0, max_outbound=3)
    t0 = pair.clock.seconds()
    busiest = 0
    while len(pair.finals()) < 12 and pair.clock.seconds() < t0 + 60:
        pair.step(0.5)
        busiest = max(busiest, pair.in_flight())
        assert pair.in_flight() <= 3
    assert busiest == 3
    assert pair.numbers() == [f"138000000{i:02d}" for i in range(12)]
    assert pair.finals() == [(f"job-{i:02d}", "connected") for i in range(12)]
    assert {r for _, r, _ in pair.started} == {0, 1}


class QueuedPool:
    """A Redis thread pool that runs its jobs only when told (to count the hops a tick waits for)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[object, defer.Deferred]] = []
        self.hops = 0

    def run(self, fn):
        d = defer.Deferred()
        self.jobs.append((fn, d))
        return d

    def drain(self):
        while self.jobs:
            fn, d = self.jobs.pop(0)
            self.hops += 1
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001
                d.errback(exc)
            else:
                d.callback(result)


def test_a_tick_waits_for_two_pool_hops_however_many_jobs_it_starts(dialer_redis):
    rig = Rig(dialer_redis)
    pool = QueuedPool()
    rig.dialer._run = rig.dialer._finishes._run = pool.run
    for i in range(5):
        rig.add(f"cb-{i}", f"1380000000{i}", original=START - 60 + i)
    rig.dialer._next_housekeeping = rig.clock.seconds() + 60  # the dispatch alone, no housekeeping
    rig.dialer.tick()
    pool.drain()
    # slots + claim + agent holds in one hop, the write-ahead of all five in one, the releases (none)
    assert pool.hops == 2 and len(rig.ami.originates()) == 5
    assert [rig.store.get(f"cb-{i}").phase for i in range(5)] == ["dialing"] * 5
    pool.hops = 0
    for i in range(5):
        finish_call(rig, i)
    pool.drain()
    # the first outcome goes at once, the four that came while it was in flight together:
    # two finishes and two releases, not five of each
    assert pool.hops == 4
    assert rig.finals == [(f"cb-{i}", "connected") for i in range(5)]
    assert rig.paces.in_flight("carrier", rig.clock.seconds()) == 0
    assert rig.paces.held("12345", rig.clock.seconds()) == 0
