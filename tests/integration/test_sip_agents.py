"""Agents as real registered phones: the queue's members are PJSIP/agent1..3 and each agent is a
SIPp phone (gateway/lab/sipagents.py) that registered with digest auth and answers with audio —
at once, late, or with 486 — or is absent (not registered).

The module switches the running lab's queue members to PJSIP/agentN (``queue reload members``)
and restores the scripted Local members at the end, so other modules see the default lab.
The queue (queues.conf): rrmemory, 15 s per member, wrapuptime 10 s — a test waits out the
previous call's wrap-up so every member it counts on is free.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from gateway.lab import CallRequest, CallResult, Lab
from gateway.lab.secrets import agent_password
from gateway.lab.sipagents import AgentPhones, parse_modes
from tests.integration.test_callbacks import BASE_ENV, api, assert_one_outcome_and_no_overlapping_dials, attempts
from tests.integration.test_callbacks import client as redis_client
from tests.integration.test_callbacks import store, wait_done

pytestmark = pytest.mark.integration

WRAPUP = 11.0  # queues.conf wrapuptime 10 s, and a margin
_last_call = {"ended": 0.0}


@pytest.fixture(scope="module")
def phones(lab: Lab) -> Iterator[AgentPhones]:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed (apt-get install sip-tester)")
    phones = lab.phones
    phones.write_members(True)
    yield phones
    phones.stop()
    phones.write_members(False)


def start(phones: AgentPhones, modes: str = "", talk_s: float = 30.0) -> None:
    phones.start(parse_modes(modes), talk_s=talk_s)
    wait = _last_call["ended"] + WRAPUP - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def call(lab: Lab, **fields) -> CallResult:
    try:
        return lab.call(CallRequest(**{"hangup_after": 8, "timeout": 60, **fields}))
    finally:
        _last_call["ended"] = time.monotonic()


def kinds(phones: AgentPhones, number: int) -> list[str]:
    """The phone's events without the Call-IDs, registration refreshes and qualify."""
    return [line.split()[0] for line in phones.events(number) if line.split()[0] not in ("registered", "options")]


def queue_log(lab: Lab, call_id: str) -> list[list[str]]:
    text = lab.chroot.path("/var/log/asterisk/queue_log").read_text(errors="replace")
    return [line.split("|")[3:] for line in text.splitlines() if f"|{call_id}|" in line]


def connect_event(result: CallResult) -> dict:
    [event] = [e for e in result.events if e.get("Event") == "AgentConnect"]
    return event


def members(lab: Lab) -> dict[str, str]:
    """`queue show 12345`: member name → its state in parentheses at the end (Not in use, Unavailable ...)."""
    out = {}
    for line in lab.cli("queue show 12345").splitlines():
        fields = line.split()
        if fields and fields[0].startswith("agent") and "(PJSIP/" in line:
            out[fields[0]] = line.split("(ringinuse disabled)")[-1].split(")")[0].strip(" (")
    return out


# -- tests ----------------------------------------------------------------------------------------
def test_a_register_with_a_wrong_password_is_refused(phones: AgentPhones) -> None:
    """Digest auth is enforced: a wrong password is challenged again (401) and never registers; the
    agent's own generated password registers."""
    phones.stop()
    assert phones.try_register(3, "not-the-agent-password", "127.0.0.79") == "refused"
    assert "agent3" not in phones.contacts()
    assert phones.try_register(3, agent_password(phones.lab.settings.state_dir, 3), "127.0.0.79") == "registered"
    assert "agent3" not in phones.contacts()  # try_register unregisters again


def test_a_citizen_call_is_answered_by_a_registered_phone(phones: AgentPhones, gateway_down: Lab) -> None:
    lab = gateway_down
    start(phones)
    assert members(lab) == dict.fromkeys(("agent1", "agent2", "agent3"), "Not in use")
    result = call(lab)
    assert result.agent_answered, result.steps
    agent = result.agent
    number = int(agent.removeprefix("agent"))
    event = connect_event(result)
    assert event["Interface"] == f"PJSIP/{agent}" and event["DestChannel"].startswith(f"PJSIP/{agent}-")
    assert ["CONNECT"] == [row[1] for row in queue_log(lab, result.call_id) if row[0] == agent and row[1] == "CONNECT"]
    # the phone saw one call: rung, answered, the hotline's BYE when the citizen hung up
    assert kinds(phones, number) == ["invite", "answered", "far-bye"]
    assert all(kinds(phones, n) == [] for n in (1, 2, 3) if n != number)


def test_an_agent_not_registered_is_not_rung(phones: AgentPhones, gateway_down: Lab) -> None:
    """agent1 and agent2 have no phone: their members are unavailable and the queue rings only agent3."""
    lab = gateway_down
    start(phones, "agent1=absent,agent2=absent")
    assert members(lab) == {"agent1": "Unavailable", "agent2": "Unavailable", "agent3": "Not in use"}
    result = call(lab)
    assert result.agent == "agent3", result.steps
    rows = queue_log(lab, result.call_id)
    assert [row[0] for row in rows if row[1] in ("RINGNOANSWER", "RINGCANCELED", "CONNECT")] == ["agent3"]
    assert kinds(phones, 3) == ["invite", "answered", "far-bye"]
    called = {e.get("MemberName") for e in result.events if e.get("Event") == "AgentCalled"}
    assert called == {"agent3"}


def test_an_agent_who_rejects_486_is_skipped_for_the_next(phones: AgentPhones, gateway_down: Lab) -> None:
    """agent1 refuses with 486 Busy Here; it is rung first (agent2 has penalty 1), the queue moves on and
    the citizen reaches agent2."""
    lab = gateway_down
    start(phones, "agent1=reject486,agent3=absent")
    lab.cli("queue set penalty 1 on PJSIP/agent2 in 12345")
    try:
        result = call(lab)
    finally:
        lab.cli("queue set penalty 0 on PJSIP/agent2 in 12345")
    assert result.agent == "agent2", result.steps
    assert kinds(phones, 1)[:2] == ["invite", "rejected"] and "answered" not in kinds(phones, 1)
    assert kinds(phones, 2) == ["invite", "answered", "far-bye"]
    rows = queue_log(lab, result.call_id)
    events = [(row[0], row[1]) for row in rows if row[1] in ("RINGNOANSWER", "CONNECT")]
    assert events[0] == ("agent1", "RINGNOANSWER") and events[-1] == ("agent2", "CONNECT"), rows


def test_an_agent_who_answers_late_is_still_connected_and_the_wait_recorded(phones: AgentPhones,
                                                                            gateway_down: Lab) -> None:
    """agent1 rings 6 s before answering (the queue rings a member 15 s): connected; the ring time shows
    in the AgentConnect event and in queue_log's CONNECT."""
    lab = gateway_down
    start(phones, "agent1=late:6,agent2=absent,agent3=absent")
    result = call(lab, hangup_after=14)
    assert result.agent == "agent1", result.steps
    assert result.answer_after is not None and result.answer_after >= 6, result.steps
    assert int(connect_event(result)["RingTime"]) >= 6
    [connect] = [row for row in queue_log(lab, result.call_id) if row[1] == "CONNECT"]
    assert connect[0] == "agent1" and int(connect[4]) >= 6  # CONNECT|holdtime|bridged uniqueid|ringtime
    assert kinds(phones, 1) == ["invite", "answered", "far-bye"]


@pytest.fixture
def dialer(trunk_up: Lab) -> Iterator[Lab]:
    """The gateway with its dialer on, callbacks agent-first (stopped and the environment restored after)."""
    saved = dict(os.environ)
    redis_client(trunk_up).flushdb()
    trunk_up.gateway.stop(lambda _m: None)
    os.environ.update(BASE_ENV)
    os.environ.update(HOTLINE_CALLBACKS_MODE="agent-first", HOTLINE_DIALER_MAX_ATTEMPTS="1")
    trunk_up.gateway.start(lambda _m: None)
    yield trunk_up
    trunk_up.gateway.stop(lambda _m: None)
    os.environ.clear()
    os.environ.update(saved)


def test_agent_first_callback_rings_a_registered_phone_then_the_citizen(phones: AgentPhones, dialer: Lab) -> None:
    """agent-first: the waiting leg queues for an agent — the registered phone agent1 rings and answers —
    then the citizen is dialled over the trunk (the lab carrier answers and presses 1): connected.
    The dialling policy still guards the citizen's leg: an international number is refused."""
    lab = dialer
    start(phones, "agent2=absent,agent3=absent", talk_s=60)
    code, body = api(lab, "POST", body={"number": "00442071234567", "mode": "agent-first"})
    assert code == 422, body
    number = "13900135001"
    lab.set_carrier_behaviour(number, "ring:1,answer,wait:2,dtmf:1,talk:6,hangup")
    lab.clear_carrier_steps()
    try:
        code, body = api(lab, "POST", body={"number": number, "mode": "agent-first", "note": "sip agents"})
        assert code == 201, body
        [job] = wait_done(lab, [body["id"]], timeout=90).values()
    finally:
        lab.set_carrier_behaviour(number, None)
        _last_call["ended"] = time.monotonic()
    history = assert_one_outcome_and_no_overlapping_dials(store(lab), job.id)
    assert job.mode == "agent-first" and job.outcome == "connected", history
    [attempt] = attempts(history)
    assert attempt["pressed"]
    # the phone was rung and answered once, and hung up by the hotline when the citizen left
    assert kinds(phones, 1) == ["invite", "answered", "far-bye"], phones.events(1)
    assert lab.carrier_steps().get(number, {}).get("dtmf") == 1
