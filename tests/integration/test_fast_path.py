"""The default flow's fast path on the real lab (issue 15 part 4): AGI round trips counted by the gateway.

The gateway's own histogram of AGI round trips (``hotline_fastagi_command_duration_seconds``) counts
every command it sent (ANSWER, GET/SET VARIABLE, STREAM FILE, EXEC …); one call at a time runs in
the lab, so its difference over a call is that call's commands.
"""
from __future__ import annotations

from gateway.lab import CallRequest, Lab

from .test_inbound_calls import gw, metric, prompt_seconds, record_of  # noqa: F401  (gw is a fixture)

COMMANDS = "hotline_fastagi_command_duration_seconds_count"
FAST_PATH = "hotline_flow_fast_path_total"


def test_a_default_call_reaches_the_agent_queue_with_two_agi_commands(gw: Lab) -> None:  # noqa: F811
    commands, fast = metric(gw, COMMANDS), metric(gw, FAST_PATH, {"result": "fast"})
    result = gw.call(CallRequest(hangup_after=30))
    assert result.went_through and result.agi_status == "SUCCESS" and result.gateway_next == "queue"
    assert result.queue_joined and result.agent_answered
    record = record_of(result)
    assert record["outcome"] == "handoff_queue" and record["handoff"] == "queue:12345"
    assert record["path"][:2] == ["flow:main", "prompt:welcome"] and record["path"][-1] == "queue:12345"
    assert metric(gw, FAST_PATH, {"result": "fast"}) == fast + 1
    used = metric(gw, COMMANDS) - commands
    assert 1 <= used <= 2, f"{used} AGI commands for a default call"


def test_key_9_during_the_greeting_reaches_the_emergency_menu(gw: Lab) -> None:  # noqa: F811
    assert prompt_seconds(gw, "welcome") > 2.5
    keyed = metric(gw, FAST_PATH, {"result": "key"})
    result = gw.call(CallRequest(dtmf="9", dtmf_delay=1.5, hangup_after=12))
    record = record_of(result)
    assert "key:9" in record["path"] and "prompt:menu_emergency" in record["path"], record["path"]
    assert "branch:peak_check:default" not in record["path"]
    assert metric(gw, FAST_PATH, {"result": "key"}) == keyed + 1


def test_agi_commands_publish_no_agi_exec_events(gw: Lab) -> None:  # noqa: F811
    """asterisk_conf/stasis.conf declines AGIExecStart/End: an AGI call's commands publish none.

    The lab's own AMI user reads every event class, so the call's other events (its Newexten into
    AGI, its Hangup) arrive on the same session; only the declined types are missing.
    """
    with gw.ami() as session:
        result = gw.call(CallRequest(hangup_after=30))
        assert result.went_through and result.agi_status == "SUCCESS" and result.agent_answered
        events = list(session.events(timeout=1.5))
    names = {event.get("Event") for event in events}
    assert any(event.get("Event") == "Newexten" and event.get("Application") == "AGI" for event in events), names
    assert "Hangup" in names
    assert not names & {"AGIExecStart", "AGIExecEnd", "AsyncAGIStart", "AsyncAGIExec", "AsyncAGIEnd"}, names
