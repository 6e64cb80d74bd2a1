"""Fuzzing Asterisk's queue_log: real lines mutated, parsed, replayed; the file's tail read in any chunk size.

``parse_line`` gives an entry or None, and a replay of whatever parses never raises; ``read_lines_since``
returns, for any chunk size, the lines not older than ``since`` of a window reaching to the file's end
(whole lines only, none older). Plain text into ``parse_line``: tests/unit/test_queue_log.py.
"""
from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.monitor.model import HotlineState
from gateway.monitor.queue_log import QueueLogEntry, _older, parse_line, parse_lines, read_lines_since, replay

from .support import TALLY, mutated, written

SAMPLE = (Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "queue_log.sample").read_bytes().splitlines()
_FIELD_VALUES = st.sampled_from(["", "NONE", "nan", "inf", "-inf", "-1", "1e309", "0x10", "1_000", "１２", " 7 ",
                                 "13800138000", "ENTERQUEUE", "CONNECT", "ABANDON", "EXITWITHTIMEOUT",
                                 "COMPLETECALLER", "RINGNOANSWER"]) | st.text(max_size=8)


@st.composite
def queue_log_lines(draw) -> str:
    """A real line with fields swapped, dropped or added, then maybe byte-level edits."""
    fields = draw(st.sampled_from(SAMPLE)).decode().split("|")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(fields)))
        edit = draw(st.sampled_from(["set", "drop", "add"]))
        if edit == "set" and at < len(fields):
            fields[at] = draw(_FIELD_VALUES)
        elif edit == "drop" and at < len(fields):
            del fields[at]
        else:
            fields.insert(at, draw(_FIELD_VALUES))
    line = "|".join(fields).encode()
    if draw(st.booleans()):
        line = draw(mutated(st.just(line), tokens=[b"|", b"\n"], max_edits=2))
    return line.decode("utf-8", "replace")


@settings(max_examples=300, deadline=None)
@given(st.lists(queue_log_lines(), min_size=1, max_size=12), st.floats(0, 2e9))
def test_mutated_lines_parse_to_entries_or_none_and_replay_without_an_exception(lines, since):
    for line in lines:
        TALLY.example("queue-log")
        entry = parse_line(line)
        if entry is None:
            TALLY.rejected("queue-log", "not a queue_log entry")
        else:
            assert isinstance(entry, QueueLogEntry) and entry.time >= 0 and entry.event
    replay(HotlineState(), parse_lines(lines), since)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(queue_log_lines(), max_size=16), partial=st.sampled_from(["", "1795306999|x|12345"]),
       since=st.sampled_from([0.0, 1795306870.0, 1795307000.0, 3e9]), chunk_size=st.integers(1, 300))
def test_the_tail_in_any_chunk_size_is_the_newer_lines_of_a_window_to_the_end(lines, partial, since, chunk_size):
    data = "".join(line.replace("\n", " ") + "\n" for line in lines).encode() + partial.encode()
    TALLY.example("queue-log-tail")
    with written(data, ".log") as path:
        got = read_lines_since(path, since, chunk_size)
    complete = data.split(b"\n")[:-1]
    older = [n for n, raw in enumerate(complete) if _older(raw, since)]
    start = older[-1] + 1 if older else 0
    windows = [[raw.decode("utf-8", "replace") for raw in complete[first:] if raw and not _older(raw, since)]
               for first in range(start + 1)]
    assert got in windows, (got, windows[-1])
