"""AMI events → model, replayed from real sessions recorded on the lab's
Asterisk 22 (tests/lab/fixtures/*.ami), in any chunking; the subscription
table and the manager.conf event filter it yields."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from gateway.ami import codec
from gateway.ami.protocol import AmiProtocol
from gateway.ami.router import EventRouter, eventfilter_lines
from gateway.monitor import eventfilter
from gateway.monitor.events import AmiEventAdapter, subscription_table
from gateway.monitor.model import HotlineState

from .ami_fakes import BANNER, event
from .test_monitor_model import CountingSink

LAB_FIXTURES = Path(__file__).parent.parent / "lab" / "fixtures"


def make_state(**kwargs):
    state = HotlineState(CountingSink(), **kwargs)
    router = EventRouter(subscription_table(AmiEventAdapter(state, now=lambda: 1795307500.0)))
    return state, router


def feed(router: EventRouter, data: bytes, chunk: int | None = None) -> None:
    """Through a real AmiProtocol, as Asterisk would send it (banner first)."""
    proto = AmiProtocol()
    proto.on_event = router.dispatch
    proto.makeConnection(StringTransport())
    stream = BANNER + data
    step = chunk or len(stream)
    for start in range(0, len(stream), step):
        proto.dataReceived(stream[start : start + step])


def recorded(name: str) -> bytes:
    return (LAB_FIXTURES / name).read_bytes()


def test_recorded_answered_call():
    state, router = make_state()
    feed(router, recorded("call-agent.ami"))
    assert state.sink.counts == Counter(offered=1, answered=1, within_sl=1, rings=1)
    assert state.sink.talk == [2.0]
    (wait,) = [w for kind, w in state.sink.waits if kind == "answered"]
    assert wait == pytest.approx(1.0, abs=0.01)
    view = state.queue_views(now=1795307500.0)["12345"]
    assert (view.waiting, view.logged_in, view.available, view.in_call) == (0, 1, 1, 0)


def test_recorded_call_while_the_gateway_was_away_is_answered_too():
    state, router = make_state()
    feed(router, recorded("call-gateway-away.ami"))
    assert state.sink.counts["offered"] == 1 and state.sink.counts["answered"] == 1


def test_recorded_abandon_is_a_short_abandon_at_position_one():
    state, router = make_state(short_abandon=5.0)
    feed(router, recorded("call-abandon.ami"))
    assert state.sink.counts == Counter(offered=1, abandoned=1, short=1, rings=1)
    (call,) = state.abandoned_calls
    assert call.position == 1 and call.wait == pytest.approx(3.5, abs=0.01)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4096))
def test_recorded_sessions_count_the_same_in_any_chunking(chunk):
    state, router = make_state()
    for name in ("call-agent.ami", "call-abandon.ami", "call-gateway-away.ami"):
        feed(router, recorded(name), chunk)
    assert state.sink.counts == Counter(offered=3, answered=2, within_sl=2, abandoned=1, short=1, rings=3)


def test_hotline_path_queue_exit_turns_a_timeout_abandon_back_into_a_waiting_call():
    state, router = make_state()
    feed(
        router,
        event("QueueCallerJoin", Uniqueid="c1", Queue="12345", Position=1, Timestamp="100.0")
        + event("QueueCallerAbandon", Uniqueid="c1", Queue="12345", Position=1, OriginalPosition=1,
                HoldTime=300, Timestamp="400.0")
        + event("QueueCallerLeave", Uniqueid="c1", Queue="12345", Timestamp="400.0")
        + event("UserEvent", UserEvent="HotlinePath", Step="queue-exit", Status="TIMEOUT", Uniqueid="c1",
                Timestamp="400.0")
        + event("UserEvent", UserEvent="HotlinePath", Step="queue-retry", Uniqueid="c1", Timestamp="400.0")
        + event("QueueCallerJoin", Uniqueid="c1", Queue="12345", Position=1, Timestamp="400.1")
        + event("AgentConnect", Uniqueid="c1", Queue="12345", MemberName="agent1", HoldTime=2, Timestamp="402.0")
        + event("Hangup", Uniqueid="c1", Timestamp="450.0"),
    )
    assert state.sink.counts == Counter(offered=1, answered=1)


def test_member_events_and_trunk_events():
    state, router = make_state(trunks=["carrier"])
    feed(
        router,
        event("QueueMemberAdded", Queue="12345", Interface="PJSIP/agent1", MemberName="agent1", Status=1,
              Paused=0, InCall=0)
        + event("QueueMemberPause", Queue="12345", Interface="PJSIP/agent1", MemberName="agent1", Status=1,
                Paused=1, InCall=0)
        + event("ContactStatus", URI="sip:sbc.example.net:5060", ContactStatus="Reachable", AOR="carrier",
                EndpointName="carrier", RoundtripUsec=25000)
        + event("Newchannel", Channel="PJSIP/carrier-00000001", Uniqueid="t1")
        + event("DialEnd", DestChannel="PJSIP/carrier-00000001", DialStatus="CONGESTION"),
    )
    view = state.queue_views(now=0.0)["12345"]
    assert (view.logged_in, view.paused, view.available) == (1, 1, 0)
    trunk = state.trunk_views()["carrier"]
    assert trunk.reachable and trunk.rtt == pytest.approx(0.025) and trunk.channels == 1
    assert state.sink.trunk_calls == [("carrier", "congestion")]
    feed(router, event("DialEnd", DestChannel="PJSIP/carrier-00000002", DestUniqueid="t2", DialStatus="BUSY")
         + event("Hangup", Channel="PJSIP/carrier-00000002", Uniqueid="t2", Cause=17, **{"Cause-txt": "User busy"}))
    assert state.sink.trunk_failures == [("carrier", "busy")]
    feed(router, event("QueueMemberRemoved", Queue="12345", Interface="PJSIP/agent1"))
    assert state.queue_views(now=0.0)["12345"].logged_in == 0


def test_other_user_events_are_ignored():
    state, router = make_state()
    feed(router, event("QueueCallerJoin", Uniqueid="c1", Queue="12345", Position=1, Timestamp="1.0")
         + event("QueueCallerAbandon", Uniqueid="c1", Queue="12345", Position=1, Timestamp="2.0")
         + event("UserEvent", UserEvent="Other", Step="queue-exit", Uniqueid="c1")
         + event("Hangup", Uniqueid="c1", Timestamp="3.0"))
    assert state.sink.counts["abandoned"] == 1


HEADERS = ["Uniqueid", "Queue", "Position", "OriginalPosition", "HoldTime", "TalkTime", "Timestamp", "Status",
           "Paused", "InCall", "Interface", "Channel", "DestChannel", "DialStatus", "RoundtripUsec", "URI",
           "ContactStatus", "AOR", "EndpointName", "UserEvent", "Step", "Username", "Domain", "ChannelType"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(subscription_table(AmiEventAdapter(HotlineState(), lambda: 0.0)))),
    st.dictionaries(st.sampled_from(HEADERS), st.text(alphabet=st.characters(blacklist_characters="\r\n"),
                                                         max_size=12), max_size=10),
)
def test_garbled_headers_never_raise(name, headers):
    """Any values in any of the headers the adapters read: no exception reaches the router."""
    state = HotlineState(trunks=["carrier"])
    table = subscription_table(AmiEventAdapter(state, now=lambda: 0.0))
    lines = (("Event", name), *headers.items())
    table[name](codec.AmiMessage(dict(lines), tuple(lines)))


# -- the table and the filter -------------------------------------------------------------------


def test_subscription_table_covers_the_domain_events():
    names = set(subscription_table(AmiEventAdapter(HotlineState(), lambda: 0.0)))
    assert {
        "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled", "AgentConnect",
        "AgentComplete", "AgentRingNoAnswer", "QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded",
        "QueueMemberRemoved", "Registry", "ContactStatus", "Newchannel", "Hangup", "UserEvent",
    } <= names
    assert not names & {"Newexten", "VarSet", "RTCPSent", "DTMFBegin", "DTMFEnd"}


def test_eventfilter_lines_from_the_table(capsys):
    eventfilter.main()
    out = capsys.readouterr().out.splitlines()
    assert "eventfilter(action(include),name(QueueCallerAbandon)) =" in out
    assert "eventfilter(action(include),name(UserEvent),header(UserEvent),method(exact)) = HotlinePath" in out
    table = subscription_table(AmiEventAdapter(HotlineState(), lambda: 0.0))
    assert set(table) <= {line.split("name(")[1].split(")")[0] for line in out if line.startswith("eventfilter")}
    assert eventfilter_lines(["B", "A", "A"]) == [
        "eventfilter(action(include),name(A)) =",
        "eventfilter(action(include),name(B)) =",
    ]


def test_eventfilter_narrows_user_events_to_the_named_ones():
    """One include line per UserEvent name (include filters are OR-ed by Asterisk)."""
    assert eventfilter_lines(["UserEvent"], ["HotlinePath", "HotlineCallback"]) == [
        "eventfilter(action(include),name(UserEvent),header(UserEvent),method(exact)) = HotlineCallback",
        "eventfilter(action(include),name(UserEvent),header(UserEvent),method(exact)) = HotlinePath",
    ]


def test_router_refuses_names_that_would_break_the_filter():
    with pytest.raises(ValueError):
        EventRouter({"Bad,Name": lambda m: None})
