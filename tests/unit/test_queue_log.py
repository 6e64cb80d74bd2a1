"""queue_log: parser, tail reader and replay — over a real queue_log written by
the lab's Asterisk 22 (tests/unit/fixtures/queue_log.sample) and the recorded
AMI session of the same abandoned call."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ami import codec
from gateway.monitor.events import AmiEventAdapter, subscription_table
from gateway.monitor.model import HotlineState
from gateway.monitor.queue_log import parse_line, parse_lines, read_lines_since, replay

from .test_monitor_model import CountingSink

FIXTURES = Path(__file__).parent / "fixtures"
LAB_FIXTURES = Path(__file__).parent.parent / "lab" / "fixtures"
SAMPLE = FIXTURES / "queue_log.sample"
ABANDONED_UNIQUEID = "fbd99600-0c71-4ebd-a0b4-834d75630b3d-b"


def sample_lines() -> list[str]:
    return SAMPLE.read_text().splitlines()


def test_parse_a_real_line():
    entry = parse_line("1795306999|183f384d-b688-4d1e-a91a-c03cd2bf0ac2-b|12345|NONE|EXITWITHTIMEOUT|1|1|15")
    assert (entry.time, entry.queue, entry.agent, entry.event) == (1795306999.0, "12345", "NONE", "EXITWITHTIMEOUT")
    assert entry.field(3) == "15" and entry.field(9) == ""


def test_lines_that_are_not_entries_are_skipped():
    assert parse_line("") is None
    assert parse_line("garbage") is None
    assert parse_line("x|a|b|c|ENTERQUEUE") is None
    assert parse_line("1795306999|a|b|c|") is None
    assert parse_line("nan|a|b|c|ENTERQUEUE") is None
    assert len(list(parse_lines(["junk", "1|u|q|NONE|ENTERQUEUE||1|1"]))) == 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises(line):
    parse_line(line)


def test_replaying_the_real_queue_log_settles_every_call():
    state = HotlineState(CountingSink(), short_abandon=5.0)
    sink = state.sink
    applied = replay(state, parse_lines(sample_lines()), since=0.0)
    assert applied > 0
    assert sink.counts["offered"] == 73
    assert sink.counts["answered"] == 50 and sink.counts["within_sl"] == 50
    assert sink.counts["abandoned"] == 23 and sink.counts["short"] == 11
    assert state.waiting_calls() == []
    # the caller that timed out twice (15 s each) and then hung up waited 35 s from the first entry
    record = next(c for c in state.abandoned_calls if c.uniqueid.startswith("c2b8ae81"))
    assert record.wait == 35.0 and record.caller == "13800138000"


def test_replay_twice_counts_once():
    state = HotlineState(CountingSink())
    replay(state, parse_lines(sample_lines()), since=0.0)
    first = Counter(state.sink.counts)
    replay(state, parse_lines(sample_lines()), since=0.0)
    assert state.sink.counts == first


def test_replay_skips_entries_before_since():
    state = HotlineState(CountingSink())
    replay(state, parse_lines(sample_lines()), since=1795307447.0)
    offered_after = {
        line.split("|")[1] for line in sample_lines()
        if line.split("|")[4] == "ENTERQUEUE" and int(line.split("|")[0]) >= 1795307447
    }
    assert state.sink.counts["offered"] == len(offered_after)


def test_live_abandon_then_queue_log_replay_counts_the_call_once():
    """The recorded AMI session of an abandoned call, then the queue_log lines of that call."""
    state = HotlineState(CountingSink())
    table = subscription_table(AmiEventAdapter(state, now=lambda: 0.0))
    messages, _ = codec.parse_messages((LAB_FIXTURES / "call-abandon.ami").read_bytes())
    for message in messages:
        handler = table.get(message.name)
        if handler is not None and message.kind == "event":
            handler(message)
    assert state.sink.counts == Counter(offered=1, abandoned=1, short=1, rings=1)
    mine = [line for line in sample_lines() if ABANDONED_UNIQUEID in line]
    assert any("|ABANDON|" in line for line in mine)
    replay(state, parse_lines(mine), since=0.0)
    assert state.sink.counts == Counter(offered=1, abandoned=1, short=1, rings=1)


# -- reading the tail ------------------------------------------------------------------


def test_read_lines_since_reads_only_what_is_new(tmp_path):
    path = tmp_path / "queue_log"
    path.write_text("\n".join(sample_lines()) + "\n")
    since = 1795307447.0
    expected = [line for line in sample_lines() if float(line.split("|")[0]) >= since]
    assert read_lines_since(path, since, chunk_size=97) == expected
    assert read_lines_since(path, since) == expected
    assert read_lines_since(path, 0.0, chunk_size=50) == sample_lines()
    assert read_lines_since(path, 9e9) == []


def test_read_lines_since_leaves_a_line_still_being_written(tmp_path):
    path = tmp_path / "queue_log"
    path.write_text("100|u1|q|NONE|ENTERQUEUE||1|1\n101|u1|q|NONE|ABAN")
    assert read_lines_since(path, 0.0) == ["100|u1|q|NONE|ENTERQUEUE||1|1"]


def test_read_lines_since_missing_file_is_empty(tmp_path):
    assert read_lines_since(tmp_path / "nope", 0.0) == []
