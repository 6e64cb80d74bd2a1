"""SIPp citizens on the single-node lab, seen from both ends.

:func:`follow_sipp_call` runs one SIPp citizen (``gateway.lab.sipp``) bound to
the carrier's address while the hotline's AMI is read: the hotline's inbound
PJSIP channel is recognised by the citizen's number (each caller number is
used by one running call at a time) and followed like a lab call
(:class:`~gateway.lab.callflow.CallTracker`: HotlinePath user events, queue
events, then the gateway's call record). The result is SIPp's view
(:class:`~gateway.lab.sipp.SippResult`, plus the SIP statuses it received)
and the hotline's (:class:`~gateway.lab.callflow.CallResult`).

The pure parsers read SIPp's own trace files:

* :func:`received_statuses` — ``-trace_msg``: the final status of every
  INVITE the hotline answered (200, 488, ...), counted;
* :func:`post_dial_delays_ms` — ``-trace_msg``: per call, INVITE sent to the
  first 180/183/200 received (microsecond timestamps);
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from ..masking import mask_number
from .ami_blocking import AmiClient
from .callflow import CallResult, CallTracker, _follow, _wait_record
from .errors import LabError
from .sipp import SippResult, SippRun, run_sipp

__all__ = [
    "SippCall",
    "follow_sipp_call",
    "invite_times",
    "message_log_args",
    "percentile",
    "post_dial_delays_ms",
    "received_statuses",
]

#: how long the INVITE may take to show up as a channel on the hotline
_ARRIVAL_S = 20.0
_STATUS = re.compile(r"^SIP/2\.0 (\d{3})\b")
_CSEQ = re.compile(r"^(?:CSeq|cseq)\s*:\s*\d+\s+(\S+)", re.MULTILINE)
_CALL_ID = re.compile(r"^(?:Call-ID|i)\s*:\s*(\S+)", re.MULTILINE | re.IGNORECASE)
_STAMP = re.compile(r"^-* ?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)")


def message_log_args(path: Path) -> tuple[str, ...]:
    """SIPp arguments that log every SIP message to ``path`` (read by :func:`received_statuses`)."""
    return ("-trace_msg", "-message_file", str(path))


def received_statuses(text: str, method: str = "INVITE", final_only: bool = True) -> Counter[int]:
    """Statuses of the responses to ``method`` in a SIPp ``-trace_msg`` log, counted.

    Each logged message follows a dashed separator line; a received response's
    first line is ``SIP/2.0 <code> <reason>``. ``final_only`` leaves out the
    1xx; a retransmitted final response counts each time it was received.
    """
    counts: Counter[int] = Counter()
    for _, received, message in _messages(text):
        if not received:
            continue
        status = _STATUS.match(message)
        cseq = _CSEQ.search(message)
        if status is None or cseq is None or cseq.group(1).upper() != method:
            continue
        code = int(status.group(1))
        if final_only and code < 200:
            continue
        counts[code] += 1
    return counts


def _messages(text: str) -> Iterator[tuple[datetime | None, bool, str]]:
    """(timestamp, received?, message) for every message of a ``-trace_msg`` log."""
    for block in text.split("\n-----------------------------------------------"):
        head, _, message = block.partition("\n\n")
        stamp = _STAMP.search(head)
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f") if stamp else None
        yield when, "message received" in head, message.lstrip("\r\n")


def post_dial_delays_ms(text: str) -> list[float]:
    """Per call (Call-ID): first INVITE sent → first 180/183/200 to it received, in ms, from a
    ``-trace_msg`` log (microsecond timestamps; SIPp's own response times tick in whole ms)."""
    sent: dict[str, datetime] = {}
    delays: dict[str, float] = {}
    for when, received, message in _messages(text):
        call_id = _CALL_ID.search(message)
        if when is None or call_id is None:
            continue
        key = call_id.group(1).strip()
        if not received and message.startswith("INVITE "):
            sent.setdefault(key, when)
            continue
        status, cseq = _STATUS.match(message), _CSEQ.search(message)
        if (received and status and cseq and cseq.group(1).upper() == "INVITE"
                and status.group(1) in ("180", "183", "200") and key in sent and key not in delays):
            delays[key] = (when - sent[key]).total_seconds() * 1000
    return list(delays.values())


def invite_times(text: str) -> list[datetime]:
    """When each call's first INVITE was sent (one per Call-ID), from a ``-trace_msg`` log."""
    first: dict[str, datetime] = {}
    for when, received, message in _messages(text):
        call_id = _CALL_ID.search(message)
        if when is not None and call_id is not None and not received and message.startswith("INVITE "):
            first.setdefault(call_id.group(1).strip(), when)
    return sorted(first.values())


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` 0..1); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


@dataclass
class SippCall:
    """One SIPp citizen: what SIPp saw and what the hotline did with the call."""

    sipp: SippResult
    #: final statuses of the INVITEs SIPp sent, counted (from its message log)
    statuses: Counter[int]
    #: None when the call never became a channel on the hotline (refused before)
    call: CallResult | None
    workdir: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def path(self) -> list[str]:
        record = (self.call.gateway_record or {}) if self.call else {}
        path = record.get("path")
        return list(path) if isinstance(path, list) else []

    def describe(self) -> str:
        steps = self.call.describe() if self.call else "(no channel on the hotline)"
        return f"sipp {self.sipp.summary()} statuses {dict(self.statuses)}; hotline: {steps}; path {self.path}"


class _Runner(threading.Thread):
    """run_sipp in a thread, so that the AMI can be read while SIPp calls."""

    def __init__(self, run: SippRun, workdir: Path) -> None:
        super().__init__(name="sipp", daemon=True)
        self.run_spec, self.workdir = run, workdir
        self.result: SippResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = run_sipp(self.run_spec, self.workdir)
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc


def follow_sipp_call(
    ami: AmiClient,
    run: SippRun,
    workdir: Path,
    caller: str,
    read_record=None,
    follow_s: float = 120.0,
) -> SippCall:
    """Run ``run`` (one call from ``caller``) and follow it on the hotline's AMI (a lab session).

    ``ami`` must be logged in before SIPp starts (its events are read from
    then on). The call is followed until every channel of it has hung up or
    ``follow_s`` passes; then SIPp is waited for and its message log read.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "messages.log"
    log.unlink(missing_ok=True)
    runner = _Runner(replace(run, extra_args=(*run.extra_args, *message_log_args(log))), workdir)
    started = time.monotonic()
    runner.start()
    tracker: CallTracker | None = None
    arrival = started + _ARRIVAL_S
    while tracker is None and time.monotonic() < arrival:
        alive = runner.is_alive()
        event = ami.next_event(min(arrival, time.monotonic() + 0.25))
        if event is None and not alive:
            break  # SIPp ended and nothing more came: refused before a channel
        if (
            event is not None
            and event.get("Event") == "Newchannel"
            and event.get("Channel", "").startswith("PJSIP/")
            and event.get("CallerIDNum") == caller
        ):
            tracker = CallTracker(f"sipp-{caller}", event.get("Uniqueid", ""))
            tracker.required = {tracker.result.call_id}
            tracker.add_step(f"sipp -> trunk -> {event.get('Channel', '?')} [{event.get('Context', '?')}]")
            tracker.feed(event)
    call = None
    if tracker is not None:
        tracker.result.caller_masked = mask_number(caller)
        _follow(ami, tracker, started + follow_s)
        if read_record is not None:
            patience = 3.0 if tracker.result.agi_status != "FAILURE" else 0.0
            tracker.add_gateway_record(_wait_record(read_record, tracker.result.call_id, patience))
        call = tracker.conclude()
    runner.join()
    if runner.error is not None:
        raise runner.error
    if runner.result is None:
        raise LabError("sipp gave no result")
    statuses = received_statuses(log.read_text(errors="replace")) if log.exists() else Counter()
    if call is not None and call.hangup_by in (None, "hotline", "citizen"):
        call.hangup_by = "hotline" if runner.result.far_end_hangups else "citizen"
    return SippCall(runner.result, statuses, call, workdir)
