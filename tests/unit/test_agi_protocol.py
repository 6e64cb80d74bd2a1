"""FastAGI protocol and server over StringTransport with task.Clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.agi import codec
from gateway.agi.registry import DuplicateScript, ScriptRegistry
from gateway.agi.session import AgiCommandError

from .helpers import connect, env, make_factory, sent_lines


def registry_with(handler, name="main"):
    scripts = ScriptRegistry()
    scripts.register(name, handler)
    return scripts


def test_registry_refuses_duplicates():
    scripts = ScriptRegistry()
    scripts.register("main", lambda s: None)
    with pytest.raises(DuplicateScript):
        scripts.register("/main", lambda s: None)


def test_commands_go_one_at_a_time_and_replies_fire_in_order():
    seen = []

    async def flow(session):
        await session.answer()
        seen.append(await session.get_variable("X"))
        await session.queue("12345", 5)

    factory, clock, store, registry = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    assert sent_lines(transport) == ["ANSWER"]
    assert registry.get_sample_value("hotline_fastagi_sessions_active") == 1
    proto.dataReceived(b"200 result=0\n")
    assert sent_lines(transport)[-1] == 'GET VARIABLE "X"'
    proto.dataReceived(b"200 result=1 (a value)\n")
    assert seen == ["a value"]
    for _ in range(3):
        proto.dataReceived(b"200 result=1\n")
    lines = sent_lines(transport)
    assert lines[2:] == [
        'SET VARIABLE "HOTLINE_QUEUE" "12345"',
        'SET VARIABLE "HOTLINE_PRIORITY" "5"',
        'SET VARIABLE "HOTLINE_NEXT" "queue"',
    ]
    assert transport.disconnecting, "the session closes so the dialplan takes over"
    (record,) = store.ended
    assert record.outcome == "handoff_queue" and record.handoff == "queue:12345"
    assert registry.get_sample_value("hotline_fastagi_sessions_total", {"script": "main", "outcome": "handoff_queue"}) == 1
    assert registry.get_sample_value("hotline_fastagi_command_duration_seconds_count", {"command": "set"}) == 3
    assert registry.get_sample_value("hotline_fastagi_sessions_active") == 0


def test_reply_split_across_reads():
    got = []

    async def flow(session):
        got.append(await session.wait_for_digit(1000))

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    for byte in env():
        proto.dataReceived(bytes([byte]))
    assert sent_lines(transport) == ['WAIT FOR DIGIT "1000"']
    proto.dataReceived(b"200 res")
    proto.dataReceived(b"ult=50\n")
    assert got == ["2"]


def test_caller_hangs_up_mid_command_closes_record_without_traceback():
    async def flow(session):
        await session.play("welcome")
        raise AssertionError("must not get here")

    factory, clock, store, registry = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"HANGUP\n200 result=-1 endpos=1200\n")
    (record,) = store.ended
    assert record.outcome == "caller_hangup"
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "flow"}) is None


def test_connection_lost_mid_command_errbacks_pending():
    async def flow(session):
        await session.play("welcome")

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.connectionLost()
    (record,) = store.ended
    assert record.outcome == "caller_hangup"


def test_command_after_hangup_notice_is_not_sent():
    async def flow(session):
        await session.answer()
        await session.answer()

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"HANGUP\n200 result=0\n")
    assert sent_lines(transport) == ["ANSWER"]
    assert store.ended[0].outcome == "caller_hangup"


def test_command_timeout_fails_the_command_and_drops_the_connection():
    async def flow(session):
        await session.answer()

    factory, clock, store, registry = make_factory(registry_with(flow), command_timeout=3)
    proto, transport = connect(factory)
    proto.dataReceived(env())
    clock.advance(2.9)
    assert not store.ended
    clock.advance(0.2)
    assert store.ended[0].outcome == "agi_timeout"
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "timeout"}) == 1
    assert transport.disconnecting


def test_wait_for_digit_timeout_allows_its_own_wait():
    async def flow(session):
        await session.wait_for_digit(20000)

    factory, clock, store, _ = make_factory(registry_with(flow), command_timeout=3)
    proto, transport = connect(factory)
    proto.dataReceived(env())
    clock.advance(20)
    assert not store.ended, "a 20 s digit wait must not be cut at the 3 s command timeout"
    proto.dataReceived(b"200 result=0\n")
    assert store.ended[0].outcome == "completed"


def test_header_timeout_closes_silent_connection():
    factory, clock, store, registry = make_factory(registry_with(lambda s: None), header_timeout=5)
    proto, transport = connect(factory)
    proto.dataReceived(b"agi_network: yes\n")
    clock.advance(5)
    assert transport.disconnecting
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "protocol"}) == 1


def test_overlong_line_drops_connection():
    async def flow(session):
        await session.answer()

    factory, clock, store, registry = make_factory(registry_with(flow), max_line=100)
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"2" * 500)
    assert transport.disconnecting
    assert store.ended[0].outcome == "protocol_error"


def test_garbage_reply_is_a_protocol_error_not_a_crash():
    async def flow(session):
        await session.answer()

    factory, clock, store, registry = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"what is this\n")
    assert transport.disconnecting
    assert store.ended[0].outcome == "protocol_error"


def test_data_after_disconnecting_is_ignored():
    async def flow(session):
        await session.answer()
        await session.answer()

    factory, clock, store, registry = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"nonsense\n")
    written = transport.value()
    proto.dataReceived(b"200 result=0\n")
    assert transport.value() == written


def test_unknown_script_is_counted_and_closed():
    factory, clock, store, registry = make_factory(registry_with(lambda s: None, name="main"))
    proto, transport = connect(factory)
    proto.dataReceived(env("nosuch"))
    assert transport.disconnecting and transport.value() == b""
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "unknown_script"}) == 1


def test_flow_bug_falls_back_to_dialplan_queue():
    async def flow(session):
        raise KeyError("bug")

    factory, clock, store, registry = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    assert store.ended[0].outcome == "flow_error"
    assert registry.get_sample_value("hotline_call_handoffs_total", {"kind": "fallback"}) == 1
    assert transport.disconnecting


def test_rejected_command_raises_command_error():
    caught = []

    async def flow(session):
        try:
            await session.command("NOT A COMMAND")
        except AgiCommandError as exc:
            caught.append(exc.reply.code)
            raise

    factory, clock, store, registry = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"510 Invalid or unknown command\n")
    assert caught == [510]
    assert store.ended[0].outcome == "command_error"


def test_session_watchdog_cuts_endless_flow():
    async def flow(session):
        while True:
            await session.wait_for_digit(1000)

    factory, clock, store, registry = make_factory(registry_with(flow), session_timeout=60)
    proto, transport = connect(factory)
    proto.dataReceived(env())
    for _ in range(61):
        clock.advance(1)
        if transport.disconnecting:
            break
        proto.dataReceived(b"200 result=0\n")
    assert transport.disconnecting
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "session_timeout"}) == 1


def test_record_path_and_masked_caller():
    async def flow(session):
        session.step("hello")
        await session.transfer("water")

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"200 result=1\n200 result=1\n")
    (record,) = store.ended
    assert record.path == ["hello", "transfer:water"]
    assert record.caller == "13800138000" and record.caller_masked == "138****8000"
    assert record.as_hash()["caller_masked"] == "138****8000"


def test_record_file_ended_by_hang_up_still_returns_the_recording():
    """A caller who hangs up instead of pressing # has left a message; dead-safe SET VARIABLE still goes out."""
    got = []

    async def flow(session):
        got.append(await session.record("/tmp/msg", silence_s=5))
        await session.set_variable("HOTLINE_SERVED", "voice_message")
        await session.play("thanks")

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"HANGUP\n200 result=-1 (hangup) endpos=24000\n")
    assert got[0].ended_by == "hangup" and got[0].end_position == 24000
    assert sent_lines(transport)[-1] == 'SET VARIABLE "HOTLINE_SERVED" "voice_message"'
    proto.dataReceived(b"200 result=1\n")
    assert store.ended[0].outcome == "caller_hangup"


def test_record_file_that_asterisk_could_not_write_is_an_error_not_a_message():
    """Disk full: Asterisk answers "result=-1 (writefile)"; that is no recording (never "silence")."""
    got = []

    async def flow(session):
        got.append(await session.record("/tmp/msg", silence_s=5))

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto.dataReceived(env())
    proto.dataReceived(b"200 result=-1 (writefile) endpos=0\n")
    assert got[0].ended_by == "error"


def test_header_with_crlf_lines_in_odd_pieces():
    got = []

    async def flow(session):
        got.append((session.call_id, session.caller))
        await session.answer()

    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    data = env().replace(b"\n", b"\r\n")
    for piece in (data[:7], data[7:60], data[60:-1], data[-1:]):
        proto.dataReceived(piece)
    assert got == [("call-1", "13800138000")]
    assert sent_lines(transport) == ["ANSWER"]


def test_header_without_an_end_is_refused():
    factory, clock, store, registry = make_factory(registry_with(lambda s: None))
    proto, transport = connect(factory)
    proto.dataReceived(b"agi_x: y\n" * 501)
    assert transport.disconnecting
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "protocol"}) == 1


def test_short_command_after_a_long_one_gets_its_own_timeout():
    async def flow(session):
        await session.play("welcome")  # 120 s allowed
        await session.answer()  # 3 s allowed

    factory, clock, store, _ = make_factory(registry_with(flow), command_timeout=3)
    proto, transport = connect(factory)
    proto.dataReceived(env())
    clock.advance(60)
    proto.dataReceived(b"200 result=0 endpos=800\n")
    clock.advance(2.9)
    assert not store.ended
    clock.advance(0.2)
    assert store.ended[0].outcome == "agi_timeout"


def test_long_command_after_a_short_one_is_not_cut_at_the_short_deadline():
    async def flow(session):
        await session.answer()  # 3 s allowed
        await session.wait_for_digit(20000)  # 23 s allowed

    factory, clock, store, _ = make_factory(registry_with(flow), command_timeout=3)
    proto, transport = connect(factory)
    proto.dataReceived(env())
    clock.advance(1)
    proto.dataReceived(b"200 result=0\n")
    clock.advance(22.9)  # past the first command's deadline, inside the second's
    assert not store.ended and not transport.disconnecting
    clock.advance(0.2)
    assert store.ended[0].outcome == "agi_timeout"
    assert transport.disconnecting


class ScriptedSocket:
    """Stands in for the TCP socket of ``_write_line``: each send takes what the script says."""

    def __init__(self, *results):
        self.results = list(results)
        self.sent = []

    def send(self, data):
        result = self.results.pop(0) if self.results else len(data)
        if isinstance(result, BaseException):
            raise result
        self.sent.append(bytes(data[:result]))
        return result


def _two_command_flow():
    seen = []

    async def flow(session):
        await session.answer()
        seen.append(await session.get_variable("X"))
        await session.hangup()

    return flow, seen


def test_commands_go_straight_to_the_socket_when_it_takes_them_whole():
    flow, seen = _two_command_flow()
    factory, *_ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto._socket = sock = ScriptedSocket()
    proto.dataReceived(env())
    proto.dataReceived(b"200 result=0\n")
    proto.dataReceived(b"200 result=1 (v)\n")
    assert sock.sent == [b"ANSWER\n", b'GET VARIABLE "X"\n', b"HANGUP\n"]
    assert transport.value() == b"", "nothing went through Twisted's buffer"
    assert seen == ["v"]


def test_a_partial_or_refused_send_hands_the_rest_and_all_later_lines_to_the_transport():
    flow, seen = _two_command_flow()
    factory, *_ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    proto._socket = sock = ScriptedSocket(3)  # the kernel takes "ANS" only
    proto.dataReceived(env())
    assert sock.sent == [b"ANS"] and transport.value() == b"WER\n"
    proto.dataReceived(b"200 result=0\n")
    assert sock.sent == [b"ANS"], "once buffered, never around the buffer again (order)"
    assert sent_lines(transport) == ["WER", 'GET VARIABLE "X"']
    proto.dataReceived(b"200 result=1 (v)\n")
    assert seen == ["v"]

    factory, *_ = make_factory(registry_with(_two_command_flow()[0]))
    proto, transport = connect(factory)
    proto._socket = ScriptedSocket(BlockingIOError(11, "EAGAIN"))
    proto.dataReceived(env())
    assert sent_lines(transport) == ["ANSWER"]


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["agi_uniqueid", "agi_callerid", "agi_arg_1", "agi_type"]),
            st.text(alphabet="ab 12\r:", max_size=6).filter(lambda value: not value.endswith("\r")),
            st.sampled_from(["\n", "\r\n", "\r\r\n"]),
        ),
        max_size=6,
        unique_by=lambda line: line[0],
    ),
    blank=st.sampled_from(["\n", "\r\n", "\r\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_header_read_in_any_pieces_is_the_whole_block_parsed_at_once(lines, blank, cuts):
    """The incremental search for the header's end: any split of the bytes gives
    the session the environment ``parse_header_block`` makes of the whole block,
    and the bytes after the blank line are read as replies."""
    got = []

    async def flow(session):
        got.append(dict(session.environment.variables))
        got.append(await session.get_variable("X"))

    header = "agi_network_script: main\n" + "".join(f"{key}: {value}{end}" for key, value, end in lines)
    data = (header + blank).encode() + b"200 result=1 (v)\n"
    expected = dict(codec.parse_header_block(header.encode()).variables)
    factory, clock, store, _ = make_factory(registry_with(flow))
    proto, transport = connect(factory)
    points = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    for a, b in zip(points, points[1:]):
        proto.dataReceived(data[a:b])
    assert got == [expected, "v"]
    assert sent_lines(transport) == ['GET VARIABLE "X"']


def test_header_that_is_only_a_blank_line_is_a_protocol_error():
    factory, clock, store, registry = make_factory(registry_with(lambda s: None))
    proto, transport = connect(factory)
    proto.dataReceived(b"\r\n200 result=1\n")
    assert transport.disconnecting
    assert registry.get_sample_value("hotline_fastagi_errors_total", {"kind": "protocol"}) == 1


def test_header_line_too_long_while_waiting_for_its_end():
    factory, clock, store, registry = make_factory(registry_with(lambda s: None), max_line=100)
    proto, transport = connect(factory)
    proto.dataReceived(b"agi_network_script: main\nagi_x: " + b"y" * 60)
    assert not transport.disconnecting
    proto.dataReceived(b"y" * 60)
    assert transport.disconnecting
