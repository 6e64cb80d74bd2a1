"""Fuzzing AMI framing: the gateway's codec (gateway/ami/codec.py) and the lab's blocking parser.

A valid stream split at every byte, or in random reads, gives the messages of the whole; a garbage frame
(ended by its blank line) never costs the valid frame after it; any bytes give messages and a rest, or —
the gateway's codec only — :class:`AmiProtocolError` with a message.
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ami import codec
from gateway.ami.codec import AmiProtocolError
from gateway.lab import ami_blocking

from .support import CUTS, TALLY, chunked, mutated, parse_or_reject

_KEYS = st.sampled_from(["Event", "Response", "ActionID", "Channel", "Uniqueid", "Variable", "Queue", "Message",
                         "CallerIDNum", "Output"]) | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,11}", fullmatch=True)
_VALUES = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=16).map(
    str.strip)
#: one message: ``Key: Value`` lines (a key may repeat), now and then a bare line as Command output has
_MESSAGE = st.lists(st.tuples(_KEYS, _VALUES) | st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,15}", fullmatch=True),
                    min_size=1, max_size=6)


def _frame(lines) -> bytes:
    text = "".join(f"{line[0]}: {line[1]}\r\n" if isinstance(line, tuple) else f"{line.strip()}\r\n"
                   for line in lines)
    return text.encode() + b"\r\n"


FRAMES = st.lists(_MESSAGE.map(_frame), max_size=5)
_BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def _codec_in_pieces(pieces: list[bytes], banner: bool, max_message: int = codec.MAX_MESSAGE):
    """Pieces fed the way AmiProtocol feeds the codec: the banner expected until it came."""
    messages, buffer, waiting = [], b"", banner
    for piece in pieces:
        found, buffer = codec.parse_messages(buffer + piece, max_message=max_message, expect_banner=waiting)
        waiting = waiting and not any("Banner" in m.headers for m in found)
        messages.extend(found)
    return messages, buffer


def _lab_in_pieces(pieces: list[bytes]):
    messages, buffer = [], b""
    for piece in pieces:
        found, buffer = ami_blocking.parse_messages(buffer + piece)
        messages.extend(found)
    return messages, buffer


@settings(max_examples=150, deadline=None)
@given(frames=FRAMES, tail=st.binary(max_size=12).filter(lambda b: b"\r\n\r\n" not in b), banner=st.booleans())
def test_a_valid_stream_split_at_every_byte_gives_the_messages_of_the_whole(frames, tail, banner):
    """Both parsers, the stream cut in two at each byte position in turn (a partial frame may end it)."""
    data = (_BANNER if banner else b"") + b"".join(frames) + tail
    TALLY.example("ami-frames")
    TALLY.example("ami-lab")
    whole = _codec_in_pieces([data], banner)
    lab_whole = ami_blocking.parse_messages(data[len(_BANNER):] if banner else data)
    assert len(whole[0]) == len(frames) + banner and whole[1] == lab_whole[1]
    for cut in range(len(data) + 1):
        assert _codec_in_pieces([data[:cut], data[cut:]], banner) == whole, cut
        if not banner:
            assert _lab_in_pieces([data[:cut], data[cut:]]) == lab_whole, cut


@settings(max_examples=200, deadline=None)
@given(frames=FRAMES, cuts=CUTS, banner=st.booleans())
def test_a_valid_stream_in_random_reads_gives_the_messages_of_the_whole(frames, cuts, banner):
    data = (_BANNER if banner else b"") + b"".join(frames)
    TALLY.example("ami-frames")
    assert _codec_in_pieces(chunked(data, cuts), banner) == _codec_in_pieces([data], banner)
    body = b"".join(frames)
    TALLY.example("ami-lab")
    assert _lab_in_pieces(chunked(body, cuts)) == ami_blocking.parse_messages(body)


#: bytes that are no AMI message, ended by the blank line that ends any frame
GARBAGE = st.binary(max_size=40).map(lambda b: b.replace(b"\r\n\r\n", b"").rstrip(b"\r\n") + b"\r\n\r\n")


def _in_order(wanted: list, got: list) -> bool:
    items = iter(got)
    return all(any(item == one for item in items) for one in wanted)


@settings(max_examples=200, deadline=None)
@given(frames=FRAMES, garbage=st.lists(GARBAGE, max_size=5), data=st.data())
def test_a_garbage_frame_never_costs_the_valid_frame_after_it(frames, garbage, data):
    """Each valid frame, in order, among what both parsers make of the stream with garbage frames between."""
    stream = list(frames)
    for junk in garbage:
        stream.insert(data.draw(st.integers(0, len(stream))), junk)
    mixed = b"".join(stream)
    for parser, parse in (("ami-frames", codec.parse_messages), ("ami-lab", ami_blocking.parse_messages)):
        TALLY.example(parser)
        alone = [parse(frame)[0][0] for frame in frames]
        messages, rest = parse(mixed)
        assert rest == b"" and _in_order(alone, messages), parser


ANY_BYTES = mutated(st.builds(lambda frames: _BANNER + b"".join(frames), FRAMES),
                    tokens=[b"Event: ", b"\r\n\r\n", b"Asterisk Call Manager/", b": "]) | st.binary(max_size=300)


@settings(max_examples=300, deadline=None)
@given(data=ANY_BYTES, banner=st.booleans(), max_message=st.sampled_from([32, codec.MAX_MESSAGE]))
def test_any_bytes_are_messages_and_a_rest_or_a_protocol_error(data, banner, max_message):
    """The codec refuses with AmiProtocolError only; the lab parser never raises; the rest is the input's tail."""
    result, _ = parse_or_reject("ami-frames", AmiProtocolError, codec.parse_messages, data, max_message, banner)
    if result is not None:
        messages, rest = result
        assert data.endswith(rest) and all(isinstance(m, codec.AmiMessage) for m in messages)
        assert all(isinstance(m.name, str) and isinstance(m.action_id, str) for m in messages)
    TALLY.example("ami-lab")
    messages, rest = ami_blocking.parse_messages(data)
    assert data.endswith(rest) and b"\r\n\r\n" not in rest
    assert all(isinstance(k, str) and isinstance(v, str) for m in messages for k, v in m.items())
