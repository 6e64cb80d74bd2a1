"""The lab's blocking AMI client: framing as a pure function, over real
recorded AMI sessions (tests/lab/fixtures/*.ami, captured from Asterisk 22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.lab.ami_blocking import format_action, parse_messages

FIXTURES = Path(__file__).parent / "fixtures"


def _recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_complete_messages_are_split_and_the_partial_one_is_kept() -> None:
    messages, rest = parse_messages(b"Event: A\r\nX: 1\r\n\r\nEvent: B\r\nY: 2\r\n\r\nEvent: C\r\nZ:")
    assert messages == [{"Event": "A", "X": "1"}, {"Event": "B", "Y": "2"}]
    assert rest == b"Event: C\r\nZ:"


def test_values_keep_colons_and_lose_surrounding_spaces() -> None:
    messages, _ = parse_messages(b"Event: UserEvent\r\nData:  agi://127.0.0.1:4573/main \r\n\r\n")
    assert messages[0]["Data"] == "agi://127.0.0.1:4573/main"


def test_a_repeated_header_keeps_every_value() -> None:
    messages, _ = parse_messages(b"Event: X\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n")
    assert messages[0]["Variable"] == "A=1\nB=2"


def test_utf8_values_survive() -> None:
    messages, _ = parse_messages("Event: X\r\nText: 您好\r\n\r\n".encode())
    assert messages[0]["Text"] == "您好"


@pytest.mark.parametrize("name", ["call-gateway-away.ami", "call-agent.ami", "call-abandon.ami"])
@pytest.mark.parametrize("chunk", [1, 7, 512, 65536])
def test_recorded_session_parses_the_same_in_any_chunking(name: str, chunk: int) -> None:
    data = _recorded(name)
    whole, rest = parse_messages(data)
    assert rest == b""
    pieces: list[dict[str, str]] = []
    buffer = b""
    for start in range(0, len(data), chunk):
        found, buffer = parse_messages(buffer + data[start : start + chunk])
        pieces.extend(found)
    assert pieces == whole
    assert buffer == b""


def test_recorded_session_has_the_queue_events_the_domain_expects() -> None:
    messages, _ = parse_messages(_recorded("call-agent.ami"))
    names = {m.get("Event") for m in messages}
    assert {"QueueCallerJoin", "AgentCalled", "AgentConnect", "AgentComplete", "OriginateResponse"} <= names


def test_format_action_repeats_list_values_and_ends_with_a_blank_line() -> None:
    raw = format_action("Originate", [("Channel", "Local/12345@from-lab"), ("Variable", ["A=1", "B=2"])], "lab-7")
    assert raw == (
        b"Action: Originate\r\nActionID: lab-7\r\nChannel: Local/12345@from-lab\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\n\r\n"
    )


def test_format_action_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        format_action("Originate", {"Channel": "Local/1@x\r\nAction: Command"})
