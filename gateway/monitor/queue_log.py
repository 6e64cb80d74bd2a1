"""Asterisk's queue_log: parse it, read its tail, replay it into the model.

A line is ``epoch|uniqueid|queue|agent|event|data1|data2|…`` (one file,
appended by app_queue). The events that matter for call accounting::

    ENTERQUEUE       url|callerid|position            the caller joined
    CONNECT          holdtime|bridged uniqueid|ringtime   an agent answered
    ABANDON          position|origposition|waittime  the caller hung up waiting
    EXITWITHTIMEOUT  position|origposition|waittime  Queue() timed out (not an abandon)
    EXITEMPTY / EXITWITHKEY                           left without hanging up
    COMPLETEAGENT / COMPLETECALLER  holdtime|calltime|origposition
    RINGNOANSWER / RINGCANCELED     ring time (ms)

Unlike AMI's QueueCallerAbandon, ``ABANDON`` here is only written when the
caller hung up (a timeout is ``EXITWITHTIMEOUT``), so the replay can settle
calls the gateway lost sight of while AMI was down. The replay feeds the
same model as the live events; the model's per-Uniqueid records make a call
seen both live and in the replay count once.

:func:`read_lines_since` reads a file — blocking I/O: run it in a thread.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .model import HotlineState

__all__ = ["QueueLogEntry", "parse_line", "parse_lines", "read_lines_since", "replay"]

_EXIT_EVENTS = frozenset({"EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"})
_COMPLETE_EVENTS = frozenset({"COMPLETEAGENT", "COMPLETECALLER"})


@dataclass(frozen=True)
class QueueLogEntry:
    time: float
    uniqueid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def field(self, index: int) -> str:
        """``data1`` is ``field(1)``; missing fields are empty."""
        return self.data[index - 1] if 0 < index <= len(self.data) else ""


def parse_line(line: str) -> QueueLogEntry | None:
    """One line, or None for a line that is not a queue_log entry."""
    parts = line.rstrip("\r\n").split("|")
    if len(parts) < 5:
        return None
    try:
        when = float(parts[0])
    except ValueError:
        return None
    if not math.isfinite(when) or when < 0 or not parts[4]:
        return None
    return QueueLogEntry(when, parts[1], parts[2], parts[3], parts[4], tuple(parts[5:]))


def parse_lines(lines: Iterable[str]) -> Iterator[QueueLogEntry]:
    for line in lines:
        entry = parse_line(line)
        if entry is not None:
            yield entry


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def replay(state: HotlineState, entries: Iterable[QueueLogEntry], since: float) -> int:
    """Feed the call events at or after ``since`` into ``state``; returns how many were applied."""
    state.replaying = True
    try:
        return _replay(state, entries, since)
    finally:
        state.replaying = False


def _replay(state: HotlineState, entries: Iterable[QueueLogEntry], since: float) -> int:
    applied = 0
    for entry in entries:
        if entry.time < since or entry.uniqueid in ("", "NONE") or entry.queue in ("", "NONE"):
            continue
        event = entry.event
        if event == "ENTERQUEUE":
            state.caller_joined(entry.uniqueid, entry.queue, entry.time, _int(entry.field(3)), entry.field(2))
        elif event == "CONNECT":
            state.agent_connected(entry.uniqueid, entry.queue, entry.time, entry.agent, _float(entry.field(1)))
        elif event == "ABANDON":
            state.call_abandoned(
                entry.uniqueid, entry.queue, entry.time, _int(entry.field(1)), _int(entry.field(2)),
                _float(entry.field(3)),
            )
        elif event in _EXIT_EVENTS:
            state.queue_exited(entry.uniqueid, entry.time)
        elif event in _COMPLETE_EVENTS:
            state.call_completed(entry.uniqueid, _float(entry.field(2)), entry.time)
        else:
            continue
        applied += 1
    return applied


def read_lines_since(path: str | os.PathLike, since: float, chunk_size: int = 1 << 16) -> list[str]:
    """The lines of ``path`` stamped at or after ``since``, read backwards from the end.

    Only the tail is read: chunks are taken from the end until a complete line
    older than ``since`` is found. A missing file gives an empty list.
    (Blocking: call it from a thread.)
    """
    try:
        with open(path, "rb") as handle:
            return _tail(handle, since, chunk_size)
    except FileNotFoundError:
        return []


def _tail(handle: BinaryIO, since: float, chunk_size: int) -> list[str]:
    """Read chunks backwards until a complete line older than ``since`` is in hand."""
    handle.seek(0, os.SEEK_END)
    position = handle.tell()
    data = b""
    while position > 0:
        step = min(chunk_size, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        pieces = data.split(b"\n")
        complete = pieces[1:-1] if position > 0 else pieces[:-1]
        if any(_older(line, since) for line in complete):
            break
    lines = data.decode("utf-8", errors="replace").split("\n")
    lines.pop()  # after the last newline: nothing, or a line still being written
    if position > 0 and lines:
        lines = lines[1:]  # the first piece may be a partial line
    return [line for line in lines if line and not _older_text(line, since)]


def _older(raw: bytes, since: float) -> bool:
    stamp, sep, _ = raw.partition(b"|")
    if not sep:
        return False
    try:
        return float(stamp) < since
    except ValueError:
        return False


def _older_text(line: str, since: float) -> bool:
    return _older(line.encode("utf-8", errors="replace"), since)
