"""asterisk_conf/manager.conf's event filter for the gateway's AMI user agrees with
the gateway's subscription tables (monitor + dialer), and the login event mask
covers every subscribed event's class."""
from __future__ import annotations

import re
from pathlib import Path

from gateway.ami.client import DEFAULT_EVENT_CLASSES
from gateway.monitor.eventfilter import gateway_event_names, gateway_eventfilter_lines, gateway_user_events

MANAGER_CONF = Path(__file__).resolve().parents[2] / "asterisk_conf" / "manager.conf"

#: the manager.c class of each event the gateway may subscribe to (Asterisk 22 docs)
EVENT_CLASS = {
    "QueueCallerJoin": "agent", "QueueCallerLeave": "agent", "QueueCallerAbandon": "agent",
    "AgentCalled": "agent", "AgentConnect": "agent", "AgentComplete": "agent", "AgentRingNoAnswer": "agent",
    "QueueMemberStatus": "agent", "QueueMemberPause": "agent", "QueueMemberAdded": "agent",
    "QueueMemberRemoved": "agent", "UserEvent": "user", "Newchannel": "call", "Hangup": "call",
    "DialEnd": "call", "DialBegin": "call", "OriginateResponse": "call", "Newstate": "call",
    "Registry": "system", "ContactStatus": "system",
}


def _section(text: str, name: str) -> list[str]:
    """The lines of one ``[name]`` section (comments and blanks dropped)."""
    lines, inside = [], False
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith("eventfilter") else raw.strip()
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            inside = header.group(1) == name
            continue
        if inside and line:
            lines.append(line)
    return lines


def _gateway_user() -> list[str]:
    return _section(MANAGER_CONF.read_text(), "hotline-gateway")


def test_manager_conf_eventfilter_is_exactly_the_subscription_tables() -> None:
    """Regenerate with `python -m gateway.monitor.eventfilter` when a table changes."""
    filters = [line for line in _gateway_user() if line.startswith("eventfilter")]
    assert sorted(filters) == sorted(gateway_eventfilter_lines())


def test_gateway_user_filter_lets_through_the_events_the_monitor_and_dialer_need() -> None:
    names = gateway_event_names()
    assert {"QueueCallerAbandon", "AgentConnect", "Registry", "ContactStatus", "OriginateResponse"} <= names
    assert {"HotlinePath", "HotlineCallback"} <= gateway_user_events()
    # the lab's dialplan tracing is not the gateway's business
    assert not names & {"Newexten", "VarSet", "RTCPSent", "DTMFBegin", "DTMFEnd"}


def test_read_classes_and_login_mask_cover_every_subscribed_event() -> None:
    """An event outside the user's read classes or the login mask never arrives, filter or not."""
    read = next(line for line in _gateway_user() if line.startswith("read"))
    read_classes = {c.strip() for c in read.split("=", 1)[1].split(",")}
    login_classes = set(DEFAULT_EVENT_CLASSES.split(","))
    for name in gateway_event_names():
        assert EVENT_CLASS[name] in read_classes, name
        assert EVENT_CLASS[name] in login_classes, name
    assert "dialplan" not in read_classes


def test_lab_user_lives_outside_the_repository() -> None:
    """The lab's own AMI user comes from a generated, git-ignored include; no secret in the file."""
    text = MANAGER_CONF.read_text()
    assert '#tryinclude "hotline-secrets/ami-lab.conf"' in text
    assert not re.search(r"^\s*secret\s*=", text, re.M)
