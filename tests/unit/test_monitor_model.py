"""The call-centre state model: per-call accounting, de-duplication, snapshots,
members and trunks (pure: no Twisted, no sockets, no clock)."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.monitor.model import (
    HotlineState,
    MemberSnapshot,
    QueueSnapshot,
    Registration,
    WaitingEntry,
    hangup_cause_label,
    trunk_of_channel,
)

Q = "12345"


class CountingSink:
    """Records every outcome the model reports."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.waits: list[tuple[str, float]] = []
        self.queues: list[str] = []
        self.trunk_calls: list[tuple[str, str]] = []
        self.trunk_failures: list[tuple[str, str]] = []
        self.trunks_seen: list[str] = []
        self.talk: list[float] = []

    def queue_seen(self, queue):
        self.queues.append(queue)

    def offered(self, queue):
        self.counts["offered"] += 1

    def answered(self, queue, wait, within_service_level):
        self.counts["answered"] += 1
        self.counts["within_sl"] += within_service_level
        self.waits.append(("answered", wait))

    def abandoned(self, queue, wait, short):
        self.counts["abandoned"] += 1
        self.counts["short"] += short
        self.waits.append(("abandoned", wait))

    def untracked(self, queue):
        self.counts["untracked"] += 1

    def ring_no_answer(self, queue):
        self.counts["ring_no_answer"] += 1

    def agent_rung(self, queue):
        self.counts["rings"] += 1

    def completed(self, queue, talk_time):
        self.talk.append(talk_time)

    def trunk_call(self, trunk, outcome):
        self.trunk_calls.append((trunk, outcome))

    def trunk_failure(self, trunk, cause):
        self.trunk_failures.append((trunk, cause))

    def trunk_seen(self, trunk):
        self.trunks_seen.append(trunk)


def make(**kwargs):
    sink = CountingSink()
    return HotlineState(sink, **kwargs), sink


def answered_call(state, uid, t0, wait, talk=3.0):
    state.channel_created(uid, f"PJSIP/carrier-{uid}", t0 - 1)
    state.caller_joined(uid, Q, t0, 1, "13800138000")
    state.agent_rung(Q, t0 + 0.1)
    state.caller_left(uid, t0 + wait)
    state.agent_connected(uid, Q, t0 + wait, "agent1", wait)
    state.agent_completed(uid, talk, t0 + wait + talk)
    state.channel_hungup(uid, t0 + wait + talk)


def abandoned_call(state, uid, t0, wait, position=1):
    state.channel_created(uid, f"PJSIP/carrier-{uid}", t0 - 1)
    state.caller_joined(uid, Q, t0, position, "13800138000")
    state.abandon_reported(uid, Q, t0 + wait, position, position, wait)
    state.caller_left(uid, t0 + wait)
    state.channel_hungup(uid, t0 + wait + 0.01)


# -- outcomes ----------------------------------------------------------------------


def test_call_answered_fast_counts_offered_answered_and_within_service_level():
    state, sink = make()
    answered_call(state, "c1", 100.0, 4.0)
    assert sink.counts == Counter(offered=1, answered=1, within_sl=1, rings=1)
    assert sink.waits == [("answered", 4.0)] and sink.talk == [3.0]


def test_call_answered_late_is_outside_the_service_level():
    state, sink = make(service_level=15.0)
    answered_call(state, "c1", 100.0, 15.5)
    assert sink.counts["answered"] == 1 and sink.counts["within_sl"] == 0


def test_answer_at_exactly_the_service_level_counts_as_within():
    state, sink = make(service_level=15.0)
    answered_call(state, "c1", 100.0, 15.0)
    assert sink.counts["within_sl"] == 1


def test_caller_hanging_up_in_the_queue_is_an_abandon_with_wait_and_position():
    state, sink = make()
    abandoned_call(state, "c1", 100.0, 12.0, position=3)
    assert sink.counts == Counter(offered=1, abandoned=1)
    (record,) = state.abandoned_calls
    assert (record.wait, record.position, record.short) == (12.0, 3, False)
    assert "13800138000" not in repr(record), "the caller's number never shows in a repr/log"
    assert record.caller == "13800138000"


def test_short_abandon_threshold_is_configurable():
    state, sink = make(short_abandon=5.0)
    abandoned_call(state, "c1", 100.0, 4.9)
    abandoned_call(state, "c2", 200.0, 5.0)
    assert sink.counts["abandoned"] == 2 and sink.counts["short"] == 1
    state, sink = make(short_abandon=8.0)
    abandoned_call(state, "c3", 100.0, 5.0)
    assert sink.counts["short"] == 1


def test_queue_timeout_reported_as_abandon_then_reentry_is_one_offered_call():
    """Asterisk 22: QueueCallerAbandon on Queue() timeout; the dialplan re-enters the caller."""
    state, sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    state.abandon_reported("c1", Q, 400.0, 1, 1, 300)
    state.caller_left("c1", 400.0)
    state.queue_exited("c1", 400.0)  # HotlinePath queue-exit TIMEOUT
    state.caller_joined("c1", Q, 400.01, 1)  # queue-retry
    state.agent_connected("c1", Q, 410.0, "agent2", 10)
    state.channel_hungup("c1", 500.0)
    assert sink.counts == Counter(offered=1, answered=1)
    assert sink.waits == [("answered", 310.0)], "wait runs from the first queue entry"


def test_timeout_then_caller_hangs_up_before_reentering_is_an_abandon():
    state, sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    state.abandon_reported("c1", Q, 400.0, 1, 1, 300)
    state.queue_exited("c1", 400.0)
    state.channel_hungup("c1", 401.0)
    assert sink.counts == Counter(offered=1, abandoned=1)
    assert sink.waits == [("abandoned", 301.0)]


def test_reentry_without_the_user_event_still_cancels_the_abandon_hint():
    state, sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    state.abandon_reported("c1", Q, 400.0, 1, 1, 300)
    state.caller_joined("c1", Q, 400.0, 1)
    state.agent_connected("c1", Q, 405.0, "agent1")
    state.channel_hungup("c1", 420.0)
    assert sink.counts == Counter(offered=1, answered=1)


def test_repeated_events_never_count_twice():
    state, sink = make()
    for _ in range(3):
        answered_call(state, "c1", 100.0, 4.0)
        abandoned_call(state, "c2", 100.0, 9.0)
    assert sink.counts["offered"] == 2
    assert sink.counts["answered"] == 1 and sink.counts["abandoned"] == 1
    assert len(sink.talk) == 1


def test_answer_seen_without_the_join_still_counts_offered_once():
    """A call that joined while AMI was away: the first thing we see is AgentConnect."""
    state, sink = make()
    state.agent_connected("c1", Q, 100.0, "agent1", hold_time=7)
    state.channel_hungup("c1", 130.0)
    assert sink.counts == Counter(offered=1, answered=1, within_sl=1)
    assert sink.waits == [("answered", 7.0)]


def test_hangup_of_other_channels_touches_no_call():
    state, sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    state.channel_hungup("agent-leg", 101.0)
    assert state.waiting_calls() == ["c1"] and sink.counts["abandoned"] == 0


def test_finished_calls_are_forgotten_beyond_the_retention():
    state, _sink = make(retention=2)
    for n in range(3):
        answered_call(state, f"c{n}", 100.0 + n, 1.0)
    assert not state.is_finished("c0") and state.is_finished("c2")


def test_abandon_listener_gets_each_abandon_and_a_broken_listener_is_isolated():
    state, sink = make()
    got = []
    state.add_abandon_listener(lambda call: 1 / 0)
    state.add_abandon_listener(got.append)
    abandoned_call(state, "c1", 100.0, 3.0)
    assert [c.uniqueid for c in got] == ["c1"] and got[0].short
    assert sink.counts["abandoned"] == 1


# -- live queue view ---------------------------------------------------------------------


def test_waiting_callers_and_longest_wait_from_the_first_entry():
    state, _sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    state.caller_joined("c2", Q, 110.0, 2)
    view = state.queue_views(now=130.0)[Q]
    assert (view.waiting, view.longest_wait) == (2, 30.0)
    state.caller_left("c1", 131.0)
    state.agent_connected("c1", Q, 131.0, "agent1")
    assert state.queue_views(now=140.0)[Q].longest_wait == 30.0


def test_member_states_logged_in_available_paused_in_call():
    state, _ = make()
    state.member_changed(Q, "PJSIP/agent1", name="agent1", status=1, paused=False, in_call=False)
    state.member_changed(Q, "PJSIP/agent2", name="agent2", status=2, paused=False, in_call=True)
    state.member_changed(Q, "PJSIP/agent3", name="agent3", status=1, paused=True, in_call=False)
    state.member_changed(Q, "PJSIP/agent4", name="agent4", status=5, paused=False, in_call=False)
    state.member_changed(Q, "PJSIP/agent5", name="agent5", status=6, paused=False, in_call=False)
    view = state.queue_views(now=0.0)[Q]
    assert (view.logged_in, view.available, view.paused, view.in_call) == (4, 1, 1, 1)
    state.member_changed(Q, "PJSIP/agent3", paused=False)  # QueueMemberPause: only what changed
    state.member_removed(Q, "PJSIP/agent2")
    view = state.queue_views(now=0.0)[Q]
    assert (view.logged_in, view.available, view.paused, view.in_call) == (3, 2, 0, 0)


def test_queue_is_announced_to_the_sink_once():
    state, sink = make()
    state.member_changed(Q, "PJSIP/agent1", status=1)
    answered_call(state, "c1", 100.0, 2.0)
    assert sink.queues == [Q]


# -- snapshots -------------------------------------------------------------------------------


def test_queue_snapshot_adds_callers_that_joined_while_away_once():
    state, sink = make()
    mark = state.mark()
    snapshot = QueueSnapshot(
        Q,
        members=(MemberSnapshot("PJSIP/agent1", "agent1", 1, False, False),),
        entries=(WaitingEntry("c1", 1, 20.0), WaitingEntry("c2", 2, 5.0)),
    )
    state.apply_queue_snapshot([snapshot], mark, now=200.0)
    state.apply_queue_snapshot([snapshot], mark, now=201.0)
    assert sink.counts["offered"] == 2
    view = state.queue_views(now=200.0)[Q]
    assert (view.waiting, view.longest_wait, view.available) == (2, 20.0, 1)


def test_live_events_after_the_mark_win_over_the_snapshot():
    state, _sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    mark = state.mark()
    state.caller_left("c1", 101.0)
    state.agent_connected("c1", Q, 101.0, "agent1")
    state.member_changed(Q, "PJSIP/agent1", status=2, in_call=True)
    stale = QueueSnapshot(Q, (MemberSnapshot("PJSIP/agent1", "agent1", 1, False, False),),
                          (WaitingEntry("c1", 1, 1.0),))
    state.apply_queue_snapshot([stale], mark, now=101.5)
    view = state.queue_views(now=102.0)[Q]
    assert view.waiting == 0 and view.in_call == 1


def test_callers_missing_from_the_snapshot_are_no_longer_waiting():
    state, _sink = make()
    state.caller_joined("c1", Q, 100.0, 1)
    state.apply_queue_snapshot([QueueSnapshot(Q)], state.mark(), now=150.0)
    assert state.queue_views(now=150.0)[Q].waiting == 0


def test_channel_snapshot_closes_calls_that_ended_while_away():
    state, sink = make()
    state.caller_joined("hinted", Q, 100.0, 2)
    state.abandon_reported("hinted", Q, 110.0, 2, 2, 10)  # then AMI dropped before the Hangup
    state.caller_joined("unknown", Q, 100.0, 1)
    state.caller_joined("alive", Q, 100.0, 3)
    closed = state.apply_channel_snapshot({"alive": "PJSIP/carrier-1"}, state.mark(), now=300.0)
    assert closed == 2
    assert sink.counts == Counter(offered=3, abandoned=1, untracked=1)
    assert sink.waits == [("abandoned", 10.0)]
    assert state.waiting_calls() == ["alive"]


def test_callers_still_waiting_when_their_pbx_went_down_are_reported_lost_not_abandoned():
    """A node crash: calls vanish with no Hangup. Those last seen waiting in a queue are handed to
    the lost-call listeners (callbacks) with their numbers; answered ones and hinted abandons are not."""
    state, sink = make()
    lost = []
    state.add_lost_listener(lost.append)
    state.caller_joined("waiting", Q, 100.0, 1, caller="13900139001")
    state.caller_joined("answered", Q, 100.0, 2, caller="13900139002")
    state.agent_connected("answered", Q, 105.0, "Local/agent1@lab-agent")
    state.caller_joined("hinted", Q, 100.0, 3, caller="13900139003")
    state.abandon_reported("hinted", Q, 110.0, 3, 3, 10)
    state.apply_channel_snapshot({}, state.mark(), now=160.0)
    assert [(c.uniqueid, c.caller, c.wait) for c in lost] == [("waiting", "13900139001", 60.0)]
    assert sink.counts["untracked"] == 1 and sink.counts["abandoned"] == 1


def test_a_restored_unanswered_call_whose_pbx_restarted_is_reported_lost():
    """The gateway restarted too: the checkpoint's open calls count as waiting until a snapshot says otherwise."""
    from gateway.monitor.model import OpenCall

    state, _sink = make()
    lost = []
    state.add_lost_listener(lost.append)
    state.restore([OpenCall("c1", Q, 100.0, False, False, 1, 1, caller="13900139004")], [], at=120.0)
    state.apply_channel_snapshot({}, state.mark(), now=130.0)
    assert [c.caller for c in lost] == ["13900139004"]


def test_channel_snapshot_keeps_what_live_events_changed_after_the_mark():
    state, _sink = make(trunks=["carrier"])
    mark = state.mark()
    state.channel_created("new", "PJSIP/carrier-2", 10.0)
    state.channel_hungup("gone", 11.0)
    state.caller_joined("new", Q, 12.0, 1)
    state.apply_channel_snapshot({"gone": "PJSIP/carrier-1", "old": "PJSIP/carrier-0"}, mark, now=13.0)
    assert state.active_channels == 2
    assert state.trunk_views()["carrier"].channels == 2
    assert state.waiting_calls() == ["new"]


# -- trunks -----------------------------------------------------------------------------------


def test_trunk_of_channel():
    assert trunk_of_channel("PJSIP/carrier-0000002a", {"carrier"}) == "carrier"
    assert trunk_of_channel("PJSIP/agent1-00000001", {"carrier"}) is None
    assert trunk_of_channel("Local/12345@from-lab-00000000;2", {"carrier"}) is None
    assert trunk_of_channel("garbage", {"carrier"}) is None


def test_registration_state_follows_registry_events_mapped_by_uri():
    state, _ = make()
    state.apply_registrations([Registration("carrier", "sip:02112345@sbc.example.net", "sip:sbc.example.net", True)])
    assert state.trunk_views()["carrier"].registered is True
    assert state.registry_event("sip:02112345@sbc.example.net", "sip:sbc.example.net", "Rejected") == "carrier"
    assert state.trunk_views()["carrier"].registered is False
    assert state.registry_event("sip:x@elsewhere", "sip:elsewhere", "Registered") is None


def test_trunk_without_registration_has_no_registered_value():
    state, _ = make(trunks=["carrier"], trunk_capacity={"carrier": 30})
    view = state.trunk_views()["carrier"]
    assert view.registered is None and view.reachable is None and view.capacity == 30


def test_contact_status_reachability_and_rtt():
    state, _ = make(trunks=["carrier"])
    assert state.contact_status("carrier", "carrier", "sip:sbc1", "Reachable", 12000) == "carrier"
    state.contact_status("carrier", "carrier", "sip:sbc2", "Reachable", 30000)
    view = state.trunk_views()["carrier"]
    assert view.reachable is True and view.rtt == pytest.approx(0.03)
    state.contact_status("carrier", "carrier", "sip:sbc1", "Unreachable")
    state.contact_status("carrier", "carrier", "sip:sbc2", "Unreachable")
    assert state.trunk_views()["carrier"].reachable is False
    assert state.trunk_views()["carrier"].rtt is None
    assert state.contact_status("agent1", "agent1", "sip:agent1@10.0.0.5", "Reachable", 1000) is None
    assert set(state.trunk_views()) == {"carrier"}, "agent phones never become trunk series"


def test_outbound_dial_outcomes_per_trunk():
    state, sink = make(trunks=["carrier"])
    state.dial_end("PJSIP/carrier-00000001", "ANSWER")
    state.dial_end("PJSIP/carrier-00000002", "BUSY")
    state.dial_end("PJSIP/carrier-00000003", "SOMETHINGNEW")
    state.dial_end("Local/agent1@lab-agent-00000001;1", "ANSWER")
    assert sink.trunk_calls == [("carrier", "answer"), ("carrier", "busy"), ("carrier", "other")]


def test_failed_outbound_dial_is_counted_by_the_trunk_channels_hangup_cause():
    """DialEnd says the dial failed, the trunk channel's Hangup says why (Q.850) — in either order."""
    state, sink = make(trunks=["carrier"])
    state.dial_end("PJSIP/carrier-00000001", "BUSY", 10.0, dest_uniqueid="t1")
    assert sink.trunk_failures == [], "the cause comes with the Hangup"
    state.channel_hungup("t1", 10.1, "PJSIP/carrier-00000001", cause=17)
    state.channel_hungup("t2", 20.0, "PJSIP/carrier-00000002", cause=1)  # Hangup first this time
    state.dial_end("PJSIP/carrier-00000002", "CONGESTION", 20.0, dest_uniqueid="t2")
    state.dial_end("PJSIP/carrier-00000002", "CONGESTION", 20.0, dest_uniqueid="t2")  # a repeated DialEnd
    state.dial_end("PJSIP/carrier-00000003", "NOANSWER", 30.0, dest_uniqueid="t3")
    state.channel_hungup("t3", 30.0, "PJSIP/carrier-00000003", cause=None)
    state.dial_end("PJSIP/carrier-00000004", "CHANUNAVAIL", 40.0, dest_uniqueid="t4")
    state.channel_hungup("t4", 40.0, "PJSIP/carrier-00000004", cause=102)  # recovery on timer expiry
    assert sink.trunk_failures == [("carrier", "busy"), ("carrier", "unallocated_number"),
                                   ("carrier", "other"), ("carrier", "other")]


def test_answered_cancelled_and_non_trunk_dials_are_not_trunk_failures():
    state, sink = make(trunks=["carrier"])
    state.dial_end("PJSIP/carrier-00000001", "ANSWER", 10.0, dest_uniqueid="t1")
    state.channel_hungup("t1", 70.0, "PJSIP/carrier-00000001", cause=16)
    state.dial_end("PJSIP/carrier-00000002", "CANCEL", 80.0, dest_uniqueid="t2")  # our side gave up
    state.channel_hungup("t2", 80.0, "PJSIP/carrier-00000002", cause=0)
    state.dial_end("Local/agent1@lab-agent-00000001;1", "BUSY", 90.0, dest_uniqueid="a1")
    state.channel_hungup("a1", 90.0, "Local/agent1@lab-agent-00000001;1", cause=17)
    state.channel_hungup("in1", 95.0, "PJSIP/carrier-00000005", cause=16)  # an inbound call ending
    assert sink.trunk_failures == []


@pytest.mark.parametrize(("cause", "label"), [
    (16, "normal"), (17, "busy"), (19, "no_answer"), (18, "no_answer"), (21, "rejected"),
    (1, "unallocated_number"), (38, "network_out_of_order"), (34, "congestion"), (42, "congestion"),
    (0, "other"), (None, "other"), (127, "other"),
])
def test_hangup_causes_map_to_a_small_fixed_label_set(cause, label):
    assert hangup_cause_label(cause) == label


# -- property: any duplication of the event stream counts each call once ---------------------------------

SCENARIOS = ("fast", "late", "abandon", "short", "timeout_then_answer", "timeout_then_hangup")


def _scenario_events(kind: str, uid: str, t0: float) -> list[tuple]:
    join = ("caller_joined", uid, Q, t0, 1)
    hang = ("channel_hungup", uid)
    if kind == "fast":
        return [join, ("agent_connected", uid, Q, t0 + 3), (*hang, t0 + 60)]
    if kind == "late":
        return [join, ("agent_connected", uid, Q, t0 + 40), (*hang, t0 + 90)]
    if kind == "abandon":
        return [join, ("abandon_reported", uid, Q, t0 + 20, 1, 1, 20), (*hang, t0 + 20)]
    if kind == "short":
        return [join, ("abandon_reported", uid, Q, t0 + 2, 1, 1, 2), (*hang, t0 + 2)]
    if kind == "timeout_then_answer":
        return [join, ("abandon_reported", uid, Q, t0 + 300, 1, 1, 300), ("queue_exited", uid, t0 + 300),
                ("caller_joined", uid, Q, t0 + 300, 1), ("agent_connected", uid, Q, t0 + 305), (*hang, t0 + 400)]
    return [join, ("abandon_reported", uid, Q, t0 + 300, 1, 1, 300), ("queue_exited", uid, t0 + 300),
            (*hang, t0 + 301)]


EXPECTED = {
    "fast": Counter(offered=1, answered=1, within_sl=1),
    "late": Counter(offered=1, answered=1),
    "abandon": Counter(offered=1, abandoned=1),
    "short": Counter(offered=1, abandoned=1, short=1),
    "timeout_then_answer": Counter(offered=1, answered=1),
    "timeout_then_hangup": Counter(offered=1, abandoned=1),
}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(SCENARIOS), min_size=1, max_size=8), st.data())
def test_duplicated_events_and_interleaving_never_change_the_counts(kinds, data):
    """Each call's events in order, calls interleaved at random, any events repeated: counts per call once."""
    state, sink = make()
    streams = [_scenario_events(kind, f"c{n}", 1000.0 * n) for n, kind in enumerate(kinds)]
    while any(streams):
        index = data.draw(st.sampled_from([i for i, s in enumerate(streams) if s]))
        step = streams[index].pop(0)
        repeats = data.draw(st.integers(1, 2))
        for _ in range(repeats):
            getattr(state, step[0])(*step[1:])
    expected = sum((EXPECTED[k] for k in kinds), Counter())
    assert +sink.counts == +expected
