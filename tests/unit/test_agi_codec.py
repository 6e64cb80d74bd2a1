"""The pure AGI codec: every reply shape Asterisk sends, quoting, and fuzzing."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.agi import codec
from gateway.agi.codec import AgiProtocolError, AgiReply, HangupNotice


def replies(data: bytes):
    messages, rest = codec.parse_replies(data)
    return messages, rest


def test_result_one():
    (reply,), rest = replies(b"200 result=1\n")
    assert reply == AgiReply(code=200, result=1, value="1")
    assert rest == b""


def test_timeout_with_endpos():
    (reply,), _ = replies(b"200 result=0 (timeout) endpos=0\n")
    assert reply.result == 0 and reply.data == "timeout" and reply.extra == {"endpos": "0"}


def test_minus_one_means_hung_up():
    (reply,), _ = replies(b"200 result=-1\n")
    assert reply.hung_up and reply.result == -1


def test_510_unknown_command():
    (reply,), _ = replies(b"510 Invalid or unknown command\n")
    assert reply.code == 510 and not reply.ok and reply.text == "Invalid or unknown command"


def test_511_dead_channel_counts_as_hang_up():
    (reply,), _ = replies(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert reply.code == 511 and reply.hung_up


def test_520_multiline_usage_block_waits_for_its_end():
    head = b"520-Invalid command syntax.  Proper usage follows:\n Usage: STREAM FILE <filename>\n"
    messages, rest = replies(head)
    assert messages == [] and rest == head
    messages, rest = replies(head + b"520 End of proper usage.\n")
    (reply,) = messages
    assert rest == b"" and reply.code == 520 and "Usage: STREAM FILE" in reply.text and "End of proper usage" in reply.text


def test_520_block_followed_by_next_reply():
    data = b"520-Invalid command syntax.  Proper usage follows:\nUsage: X\n520 End of proper usage.\n200 result=0\n"
    messages, rest = replies(data)
    assert [m.code for m in messages] == [520, 200] and rest == b""


def test_single_line_520():
    (reply,), _ = replies(b"520 Invalid command syntax.  Proper usage not available.\n")
    assert reply.code == 520


def test_hangup_notice_then_reply():
    messages, _ = replies(b"HANGUP\n200 result=-1\n")
    assert isinstance(messages[0], HangupNotice) and messages[1].hung_up


def test_get_variable_value_with_spaces_and_parentheses():
    (reply,), _ = replies(b"200 result=1 (hello (big) world)\n")
    assert reply.data == "hello (big) world"


def test_get_data_keeps_leading_zeros_and_empty_result():
    (zeros,), _ = replies(b"200 result=0123\n")
    assert zeros.value == "0123" and zeros.result == 123
    (empty,), _ = replies(b"200 result= (timeout)\n")
    assert empty.value == "" and empty.result is None and empty.data == "timeout"


def test_digit_of_wait_for_digit():
    (reply,), _ = replies(b"200 result=49\n")
    assert reply.digit == "1"
    (none,), _ = replies(b"200 result=0\n")
    assert none.digit is None


def test_partial_line_stays_in_rest():
    messages, rest = replies(b"200 result=1\n200 res")
    assert len(messages) == 1 and rest == b"200 res"


def test_crlf_line_endings():
    (reply,), _ = replies(b"200 result=1\r\n")
    assert reply.result == 1


def test_garbage_is_a_protocol_error():
    with pytest.raises(AgiProtocolError):
        replies(b"hello there\n")


def test_overlong_unterminated_line_is_refused():
    with pytest.raises(AgiProtocolError):
        codec.parse_replies(b"2" * 100, max_line=50)


def test_environment_parsing_and_script_name():
    env = codec.parse_environment(
        [
            b"agi_network: yes",
            b"agi_network_script: main?lang=zh",
            b"agi_request: agi://127.0.0.1:4573/main?lang=zh",
            b"agi_uniqueid: 1700000000.42",
            b"agi_callerid: 13800138000",
            b"agi_arg_1: first",
            b"agi_arg_2: second one",
        ]
    )
    assert env.network_script == "main"
    assert env.uniqueid == "1700000000.42"
    assert env.caller_id == "13800138000"
    assert env.arguments == ("first", "second one")


def test_unknown_callerid_is_empty():
    env = codec.parse_environment([b"agi_request: agi://x/main", b"agi_callerid: unknown"])
    assert env.caller_id == ""


def test_malformed_environment_line():
    with pytest.raises(AgiProtocolError):
        codec.parse_environment([b"agi_request agi://x/main"])


def test_environment_without_request_is_refused():
    with pytest.raises(AgiProtocolError):
        codec.parse_environment([b"agi_channel: Local/x"])


def test_format_quotes_every_argument():
    assert codec.format_command("STREAM FILE", "hotline/welcome", "") == b'STREAM FILE "hotline/welcome" ""\n'
    assert codec.format_command("SET VARIABLE", "X", 'say "hi" \\ there') == (
        b'SET VARIABLE "X" "say \\"hi\\" \\\\ there"\n'
    )


def test_format_refuses_line_breaks_in_arguments():
    with pytest.raises(ValueError):
        codec.format_command("SET VARIABLE", "X", "a\nHANGUP")


def test_format_utf8_argument():
    assert codec.format_command("VERBOSE", "市民来电", 1) == 'VERBOSE "市民来电" "1"\n'.encode()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_any_bytes_parse_or_fail_cleanly(data):
    """Any bytes: a list of messages and a rest, or AgiProtocolError — never another exception."""
    try:
        messages, rest = codec.parse_replies(data)
    except AgiProtocolError:
        return
    assert isinstance(rest, bytes) and len(rest) <= len(data)
    for message in messages:
        assert isinstance(message, (AgiReply, HangupNotice))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(lambda n: f"200 result={n}\n".encode(), st.integers(-1, 255)),
            st.builds(lambda d: f"200 result=1 ({d})\n".encode(), st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)),
            st.just(b"HANGUP\n"),
            st.just(b"511 Command Not Permitted on a dead channel or intercept routine\n"),
            st.just(b"520-Invalid command syntax.  Proper usage follows:\nUsage: X\n520 End of proper usage.\n"),
        ),
        max_size=8,
    ),
    st.integers(0, 400),
)
def test_fuzz_valid_stream_split_anywhere_gives_same_messages(chunks, cut):
    """A valid stream split at any byte parses to the same messages as in one piece."""
    data = b"".join(chunks)
    whole, rest = codec.parse_replies(data)
    assert rest == b""
    cut = min(cut, len(data))
    first, rest = codec.parse_replies(data[:cut])
    second, rest = codec.parse_replies(rest + data[cut:])
    assert first + second == whole and rest == b""


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=40))
def test_quoting_round_trips_through_asterisk_style_unquote(arg):
    """What format_command quotes, an Asterisk-style parse_args reads back unchanged."""
    line = codec.format_command("X", arg).decode()[2:-1]
    assert _asterisk_parse_args(line) == [arg]


def _asterisk_parse_args(text: str) -> list[str]:
    """A transcription of res_agi.c parse_args (quotes and backslash escapes)."""
    args, current, quoted, escaped, started = [], [], False, False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
            started = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            started = True
        elif ch in " \t" and not quoted:
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        args.append("".join(current))
    return args


# The header grammar as a regex (what parse_env_line used before the fast path).
_ENV_LINE_REGEX = re.compile(r"^(agi_[A-Za-z0-9_]+):\s?(.*)$")


@given(st.text(alphabet=st.sampled_from(list("agi_xyzAZ09:  \t\x0b\x1c\u3000\r-é")), max_size=30))
def test_env_line_fast_path_matches_the_regex(text):
    expected = _ENV_LINE_REGEX.match(text.rstrip("\r\n"))
    if expected is None:
        with pytest.raises(AgiProtocolError):
            codec.parse_env_line(text)
    else:
        assert codec.parse_env_line(text) == expected.groups()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["agi_request", "agi_channel", "agi_arg_1", "agi_x"]),
            # a "\r" inside a value (not at its end, where it would join the line end)
            # takes the block parser's line-by-line path
            st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=20)
            .filter(lambda value: not value.endswith("\r")),
            st.sampled_from(["\n", "\r\n", "\r\r\n"]),
            st.sampled_from([": ", ":", ":\t", ":  ", ": \u3000", " : "]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_header_block_parses_like_the_lines(entries):
    lines = [f"{key}{sep}{value}" for key, value, _, sep in entries]
    block = "".join(f"{line}{end}" for line, (_, _, end, _) in zip(lines, entries)).encode()
    try:
        expected = codec.parse_environment([line.encode() for line in lines])
    except AgiProtocolError:
        with pytest.raises(AgiProtocolError):
            codec.parse_header_block(block)
    else:
        assert codec.parse_header_block(block) == expected


def test_header_block_refuses_a_malformed_line():
    with pytest.raises(AgiProtocolError):
        codec.parse_header_block(b"agi_request: agi://x/main\nagi channel: x\n")


def _reference_parse_reply_line(text):
    """parse_reply_line as it was with regexes: the oracle for the fast parser."""
    match = re.match(r"^200 result=(\S*)(?:\s+(.*))?$", text)
    if match is not None:
        value = match.group(1)
        result = int(value) if re.match(r"^-?\d+$", value) and len(value) < 19 else None
        rest = (match.group(2) or "").strip()
        data = None
        if rest.startswith("("):
            close = rest.rfind(")")
            if close < 0:
                raise AgiProtocolError("unbalanced")
            data = rest[1:close]
            rest = rest[close + 1 :].strip()
        extra = dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", rest))
        return AgiReply(code=200, result=result, value=value, data=data, extra=extra)
    if len(text) >= 3 and text[:3].isascii() and text[:3].isdigit() and (len(text) == 3 or text[3] == " "):
        code = int(text[:3])
        if code in (510, 511, 520):
            return AgiReply(code=code, text=text[4:].strip())
    raise AgiProtocolError("unrecognised")


_REPLY_PIECES = st.sampled_from(
    ["200 result=", "1", "-1", "0123", "49", "-", " ", "  ", "\t", "\x0b", "\u3000", "(", ")", "value 0",
     "timeout", "endpos=800", "k=v", "=", "٣", "²", "x", "510 ", "511", "520 Usage"]
)


@given(st.lists(_REPLY_PIECES, max_size=8).map("".join))
def test_reply_fast_parser_matches_the_regex_parser(text):
    try:
        expected = _reference_parse_reply_line(text)
    except AgiProtocolError:
        with pytest.raises(AgiProtocolError):
            codec.parse_reply_line(text)
    else:
        assert codec.parse_reply_line(text) == expected


@given(st.lists(_REPLY_PIECES, max_size=8).map("".join))
def test_single_reply_fast_path_matches_the_general_loop(text):
    data = text.encode() + b"\n"
    try:
        expected = codec.parse_replies(b"\n" + data)  # a leading blank line skips the fast path
    except AgiProtocolError:
        with pytest.raises(AgiProtocolError):
            codec.parse_replies(data)
    else:
        assert codec.parse_replies(data) == expected


def test_non_ascii_digits_in_a_status_code_are_a_protocol_error():
    with pytest.raises(AgiProtocolError):
        codec.parse_reply_line("51²")
    reply = codec.parse_reply_line("200 result=1²")  # kept as text, not a number
    assert reply.result is None and reply.value == "1²"


def test_format_command_checks_names_once_and_still_refuses_bad_ones():
    assert codec.format_command("ANSWER") == b"ANSWER\n"
    assert codec.format_command("ANSWER") == b"ANSWER\n"
    assert codec.format_command("WAIT FOR DIGIT", 5000) == b'WAIT FOR DIGIT "5000"\n'
    for bad in ("answer", "", "ANSWER;", "X\nY"):
        with pytest.raises(ValueError):
            codec.format_command(bad)


def test_common_replies_are_parsed_once_and_shared_read_only():
    from gateway.agi import codec as agi_codec

    first, rest = agi_codec.parse_replies(b"200 result=0 endpos=800\n")
    second, _ = agi_codec.parse_replies(b"200 result=0 endpos=800\n")
    assert rest == b"" and first[0] is second[0]
    assert first[0].result == 0 and first[0].extra == {"endpos": "800"}
    with pytest.raises(TypeError):
        first[0].extra["endpos"] = "1"  # shared by every call: read-only
    with pytest.raises(AttributeError):
        first[0].result = 5  # frozen


def test_replies_carrying_data_are_never_kept():
    """A variable's value (maybe a citizen's number) is not retained by the reply cache."""
    from gateway.agi import codec as agi_codec

    line = b"200 result=1 (13800138000)\n"
    reply = agi_codec.parse_replies(line)[0][0]
    assert reply.data == "13800138000"
    assert line not in agi_codec._REPLY_CACHE
    assert agi_codec.parse_replies(line)[0][0] is not reply


def test_the_reply_cache_is_bounded(monkeypatch):
    from gateway.agi import codec as agi_codec

    monkeypatch.setattr(agi_codec, "_REPLY_CACHE", {})
    monkeypatch.setattr(agi_codec, "_MAX_CACHED_REPLIES", 3)
    for n in range(10):
        assert agi_codec.parse_replies(b"200 result=%d\n" % n)[0][0].result == n
    assert len(agi_codec._REPLY_CACHE) == 3


def test_a_shared_reply_is_found_in_a_read_holding_more_than_one_line():
    """HANGUP's answer comes with the notice in one read: the reply is still the shared one."""
    from gateway.agi import codec as agi_codec

    (alone,), _ = agi_codec.parse_replies(b"200 result=1\n")
    messages, rest = agi_codec.parse_replies(b"200 result=1\nHANGUP\n200 result=1\r\n200 res")
    assert messages[0] is alone and isinstance(messages[1], agi_codec.HangupNotice)
    assert messages[2] == alone and rest == b"200 res"
