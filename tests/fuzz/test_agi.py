"""Fuzzing the FastAGI wire format: the agi_* header (pure parser and the protocol's framing) and replies.

Every input is either parsed or refused with :class:`AgiProtocolError` carrying a message; how the bytes
were cut into reads never changes the verdict or the messages.
"""
from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.agi import codec
from gateway.agi.codec import AgiEnvironment, AgiProtocolError, AgiReply, HangupNotice
from gateway.agi.registry import ScriptRegistry

from ..unit.helpers import connect, env, make_factory
from .support import CUTS, TALLY, chunked, mutated, parse_or_reject

_ONE_LINE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=24)

# -- the agi_* header -------------------------------------------------------------------------------------------------
_NAMES = st.sampled_from(["agi_request", "agi_network_script", "agi_channel", "agi_callerid", "agi_arg_1",
                          "agi_arg_2", "agi_uniqueid"]) | st.from_regex(r"agi_[a-z0-9_]{1,12}", fullmatch=True)


def _header(pairs: list[tuple[str, str]], end: bytes) -> bytes:
    """The real header Asterisk sends (tests/unit/helpers.py) with more variables after it."""
    real = env().rstrip(b"\n").replace(b"\n", end) + end
    return real + b"".join(f"{name}: {value}".encode() + end for name, value in pairs)


HEADERS = st.builds(_header, st.lists(st.tuples(_NAMES, _ONE_LINE), max_size=5), st.sampled_from([b"\n", b"\r\n"]))
HEADER_BLOCKS = mutated(HEADERS, tokens=[b"agi_", b"agi_request: x\n", b": ", b"\r\r\n", b"\xc2\xa0", b"\n\n"]) | (
    st.binary(max_size=300))


@settings(max_examples=300, deadline=None)
@given(HEADER_BLOCKS)
@example(b"agi_request: x\n\xff\n")
def test_a_header_block_is_an_environment_or_a_protocol_error_and_reads_like_its_lines(block):
    """The one-pass block parser and the line-by-line parser agree on every block, whatever it holds."""
    environment, _ = parse_or_reject("agi-env", AgiProtocolError, codec.parse_header_block, block)
    try:
        expected = codec.parse_environment([line for line in block.split(b"\n") if line])
    except AgiProtocolError as exc:
        assert str(exc)
        expected = None
    assert environment == expected
    if environment is not None:
        assert isinstance(environment, AgiEnvironment)
        assert all(isinstance(text, str) for text in (
            environment.network_script, environment.uniqueid, environment.channel, environment.caller_id,
            environment.extension, *environment.arguments))


def _header_outcome(pieces: list[bytes], max_line: int) -> list[tuple[str, object]]:
    """What the protocol makes of the bytes: the environment it starts a session with, or a protocol error."""
    factory, *_ = make_factory(ScriptRegistry(), max_line=max_line)
    seen: list[tuple[str, object]] = []
    factory.session_started = lambda proto, environment: seen.append(("session", dict(environment.variables)))
    factory.protocol_error = lambda proto, reason: seen.append(("error", reason))
    proto, _ = connect(factory)
    for piece in pieces:
        proto.dataReceived(piece)
    return seen


@settings(max_examples=200, deadline=None)
@given(block=HEADER_BLOCKS, blank=st.sampled_from([b"\n", b"\r\n", b""]), cuts=CUTS,
       max_line=st.sampled_from([48, 8192]))
@example(block=b"agi_request: x\nagi_arg_1: " + b"y" * 60 + b"\n", blank=b"\n", cuts=[75], max_line=48)
@example(block=b"agi_request: x\nagi_arg_1: " + b"y" * 60 + b"\n", blank=b"", cuts=[75], max_line=48)  # no end yet
def test_the_header_read_in_any_pieces_gets_the_verdict_of_the_whole(block, blank, cuts, max_line):
    """FastAgiProtocol's header framing: the same session (or the same refusal) for every cut of the bytes."""
    data = block + blank
    TALLY.example("agi-header-stream")
    whole = _header_outcome([data], max_line)
    TALLY.rejected("agi-header-stream", *(str(reason) for kind, reason in whole if kind == "error"))
    pieces = _header_outcome(chunked(data, cuts), max_line)
    assert [(kind, value if kind == "session" else "") for kind, value in pieces] == [
        (kind, value if kind == "session" else "") for kind, value in whole]
    assert all(reason for kind, reason in pieces if kind == "error")


# -- replies ----------------------------------------------------------------------------------------------------------
_USAGE = "520-Invalid command syntax.  Proper usage follows:\nUsage: STREAM FILE <filename>\n520 End of proper usage."
REPLY_LINES = st.one_of(
    st.builds("200 result={}".format, st.integers(-1, 255)),
    st.builds("200 result={} ({}){}".format, st.integers(-1, 255), _ONE_LINE,
              st.sampled_from(["", " endpos=800", " k=v x=", "  "])),
    st.builds("200 result={}".format, st.sampled_from(["", "0123", "-", "1²", "99999999999999999999"])),
    st.sampled_from(["HANGUP", "", "510 Invalid or unknown command", _USAGE,
                     "511 Command Not Permitted on a dead channel or intercept routine",
                     "520 Invalid command syntax.  Proper usage not available."]),
)
REPLY_STREAMS = st.builds(lambda lines, end: b"".join(line.encode() + end for line in lines),
                          st.lists(REPLY_LINES, max_size=8), st.sampled_from([b"\n", b"\r\n"]))
REPLY_BYTES = mutated(REPLY_STREAMS, tokens=[b"200 result=", b"520-", b"520 End\n", b"HANGUP\n", b"(", b")"]) | (
    st.binary(max_size=200))


def _replies_in_pieces(pieces: list[bytes], max_line: int):
    """Pieces fed the way FastAgiProtocol feeds them: buffer += read; parse; keep the rest."""
    messages, buffer = [], b""
    for piece in pieces:
        found, buffer = codec.parse_replies(buffer + piece, max_line)
        messages.extend(found)
    return messages, buffer


@settings(max_examples=400, deadline=None)
@given(data=REPLY_BYTES, cuts=CUTS, max_line=st.sampled_from([24, 8192]))
@example(data=b"520-x\n" + b"y" * 30 + b"\n520 End\n", cuts=[36], max_line=24)
def test_replies_in_any_pieces_are_the_replies_of_the_whole(data, cuts, max_line):
    """Replies or AgiProtocolError (with a message), and the same whatever the reads were."""
    whole, error = parse_or_reject("agi-replies", AgiProtocolError, codec.parse_replies, data, max_line)
    try:
        pieces = _replies_in_pieces(chunked(data, cuts), max_line)
    except AgiProtocolError as exc:
        assert error is not None, f"refused only when cut: {exc}"
        return
    assert error is None, f"refused only when whole: {error}"
    assert pieces == whole
    messages, rest = whole
    assert data.endswith(rest) and all(isinstance(m, (AgiReply, HangupNotice)) for m in messages)
