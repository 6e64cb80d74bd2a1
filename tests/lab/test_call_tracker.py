"""CallTracker turns a call's AMI events into its path; replayed here from
real sessions recorded on the lab's Asterisk 22 (no sockets, no sleeps)."""

from __future__ import annotations

from pathlib import Path

from gateway.lab.ami_blocking import parse_messages
from gateway.lab.callflow import CallRequest, CallTracker

FIXTURES = Path(__file__).parent / "fixtures"


def _replay(name: str) -> CallTracker:
    messages, _ = parse_messages((FIXTURES / name).read_bytes())
    reply = next(m for m in messages if m.get("Message") == "Originate successfully queued")
    first = next(m for m in messages if m.get("Event") == "Newchannel")
    base = first["Uniqueid"][: -len("-a")]
    tracker = CallTracker(f"{base}-a", f"{base}-b", reply["ActionID"])
    for message in messages:
        if not tracker.done:
            tracker.feed(message)
    tracker.conclude()
    return tracker


def test_gateway_away_call_falls_back_to_the_queue_and_an_agent() -> None:
    result = _replay("call-gateway-away.ami").result
    assert result.steps[0] == "12345 answered"
    assert result.agi_status == "FAILURE"
    assert result.queue_joined and result.queue_position == 1
    assert result.agent_answered and result.agent == "agent1"
    assert not result.abandoned
    assert result.hangup_by == "agent"
    assert result.completed and result.went_through
    assert result.steps[-1] == "hang-up (agent)"


def test_gateway_call_reports_the_flow_hand_off() -> None:
    result = _replay("call-agent.ami").result
    assert result.agi_status == "SUCCESS"
    assert result.gateway_next == "queue"
    assert result.agent_answered and result.answer_after is not None


def test_citizen_hanging_up_in_the_queue_is_an_abandon() -> None:
    result = _replay("call-abandon.ami").result
    assert result.queue_joined and result.abandoned and not result.agent_answered
    assert result.hangup_by == "citizen"


def test_queue_timeout_reported_as_abandon_by_app_queue_is_not_an_abandon() -> None:
    """Asterisk 22 sends QueueCallerAbandon on a Queue() timeout as well."""
    tracker = CallTracker("c-a", "c-b")
    base = {"Linkedid": "c-a", "Uniqueid": "c-b"}
    tracker.feed({"Event": "QueueCallerJoin", "Queue": "12345", "Position": "1", "Timestamp": "100.0", **base})
    tracker.feed({"Event": "QueueCallerAbandon", "Queue": "12345", "Position": "1", "Timestamp": "115.0", **base})
    assert tracker.result.abandoned
    tracker.feed({"Event": "UserEvent", "UserEvent": "HotlinePath", "Step": "queue-exit", "Status": "TIMEOUT", **base})
    assert not tracker.result.abandoned
    assert "left the queue after 15.0 s (TIMEOUT)" in tracker.result.steps


def test_events_of_other_calls_are_ignored() -> None:
    tracker = CallTracker("c-a", "c-b")
    tracker.feed({"Event": "QueueCallerJoin", "Uniqueid": "other", "Linkedid": "other", "Position": "3"})
    assert tracker.result.events == [] and not tracker.result.queue_joined


def test_gateway_record_replaces_the_flow_step_and_drops_the_raw_number() -> None:
    tracker = CallTracker("c-a", "c-b")
    base = {"Linkedid": "c-a", "Uniqueid": "c-b", "Event": "UserEvent", "UserEvent": "HotlinePath"}
    tracker.feed({**base, "Step": "inbound"})
    tracker.feed({**base, "Step": "agi-done", "Next": "queue"})
    tracker.add_gateway_record(
        {"flow": "main", "path": '["prompt:welcome", "queue:12345"]', "caller": "13800138000", "outcome": "x"}
    )
    assert tracker.result.steps[1] == "gateway flow main (prompt:welcome, queue:12345)"
    assert tracker.result.gateway_record is not None
    assert "caller" not in tracker.result.gateway_record
    assert tracker.result.gateway_record["path"] == ["prompt:welcome", "queue:12345"]


def test_json_summary_has_the_keys_the_integration_tests_use() -> None:
    summary = _replay("call-gateway-away.ami").result.as_json()
    for key in ("call_id", "steps", "queue_joined", "agent_answered", "abandoned", "agi_status", "gateway_record"):
        assert key in summary
    assert summary["call_id"].endswith("-b")


def test_call_request_variables_inherit_agent_timing_to_the_queue_members() -> None:
    variables = CallRequest(dtmf="12", hangup_after=15, agent_talk=2).variables()
    assert "CITIZEN_DTMF=12" in variables
    assert "CITIZEN_HANGUP_AFTER=15" in variables
    assert "__LAB_AGENT_TALK=2" in variables


def test_who_ended_an_answered_call_comes_from_app_queue() -> None:
    """A registered SIP phone hanging up sends no lab UserEvent: AgentComplete's Reason says who ended it,
    and the carrier's later citizen-hangup step does not overwrite it."""
    for reason, expected in (("agent", "agent"), ("caller", "citizen")):
        tracker = CallTracker("c-a", "c-b")
        base = {"Linkedid": "c-a", "Uniqueid": "c-b"}
        tracker.feed({"Event": "QueueCallerJoin", "Queue": "12345", "Position": "1", "Timestamp": "100.0", **base})
        tracker.feed({"Event": "AgentConnect", "MemberName": "agent1", "Timestamp": "102.0", **base})
        tracker.feed({"Event": "AgentComplete", "MemberName": "agent1", "Reason": reason, "Timestamp": "110.0", **base})
        tracker.feed({"Event": "UserEvent", "UserEvent": "HotlinePath", "Step": "citizen-hangup", **base})
        assert tracker.result.hangup_by == expected
