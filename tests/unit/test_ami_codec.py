"""AMI framing: blank-line separated messages, banner, leftovers; fuzzed."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ami import codec


def test_banner_then_response_and_partial_event():
    data = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\nMessage: ok\r\n\r\nEvent: Hangup\r\nUniq"
    messages, rest = codec.parse_messages(data, expect_banner=True)
    assert messages[0].headers["Banner"].startswith("Asterisk Call Manager/")
    assert messages[1].kind == "response" and messages[1].action_id == "1"
    assert rest == b"Event: Hangup\r\nUniq"


def test_banner_only_expected_at_connection_start():
    with pytest.raises(codec.AmiProtocolError):
        codec.parse_messages(b"HTTP/1.1 200 OK\r\n", expect_banner=True)
    messages, rest = codec.parse_messages(b"Asterisk Call", expect_banner=True)
    assert messages == [] and rest == b"Asterisk Call"


def test_repeated_keys_are_all_kept():
    (message,), _ = codec.parse_messages(b"Event: VarSet\r\nVariable: A\r\nVariable: B\r\n\r\n")
    assert message.get("Variable") == "A" and message.get_all("Variable") == ["A", "B"]


def test_value_with_colon():
    (message,), _ = codec.parse_messages(b"Event: X\r\nChannel: PJSIP/agent1-0001\r\nURI: sip:a@b:5060\r\n\r\n")
    assert message.get("URI") == "sip:a@b:5060"


def test_format_action_with_repeated_variables():
    out = codec.format_action("Originate", [("Channel", "Local/12345@from-lab"), ("Variable", "A=1"), ("Variable", "B=2")])
    assert out == b"Action: Originate\r\nChannel: Local/12345@from-lab\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"


def test_format_action_refuses_injected_lines():
    with pytest.raises(ValueError):
        codec.format_action("Originate", {"Channel": "Local/1@x\r\nAction: Command"})


def test_oversized_message_is_refused():
    with pytest.raises(codec.AmiProtocolError):
        codec.parse_messages(b"x" * 100, max_message=50)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 300))
def test_fuzz_split_anywhere_same_messages(noise, cut):
    """Any bytes parse without crashing, and splitting a stream anywhere changes nothing."""
    data = b"Event: A\r\nK: v\r\n\r\n" + noise.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\nEvent: B\r\n\r\n"
    whole, rest = codec.parse_messages(data)
    cut = min(cut, len(data))
    first, rest1 = codec.parse_messages(data[:cut])
    second, rest2 = codec.parse_messages(rest1 + data[cut:])
    assert [m.lines for m in first + second] == [m.lines for m in whole] and rest2 == rest
