"""Place a simulated citizen call over AMI and follow it to the end.

The citizen is the originating Local channel's ;1 leg, running
[lab-citizen]; its ;2 leg enters [from-lab] → [hotline-inbound] like a call
from the carrier. Both unique ids are chosen up front (ChannelId /
OtherChannelId), so the inbound leg's id — the gateway's call id — is known
before the call exists. Every event whose Linkedid belongs to the call is
followed until all its channels have hung up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..masking import mask_number
from .ami_blocking import AmiClient, AmiMessage

__all__ = [
    "CallRequest",
    "CallResult",
    "CallTracker",
    "originate_and_follow",
    "originate_citizen",
]

#: queue events (app_queue) and channel events that shape the call's path
_QUEUE_EVENTS = {
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
}


@dataclass(frozen=True)
class CallRequest:
    caller: str = "13800138000"
    caller_name: str = "citizen"
    dtmf: str = ""
    dtmf_delay: float | None = None
    #: sound name (relative to sounds/zh/) the citizen plays after the digits
    speech: str = ""
    #: digits keyed after the speech (``#`` ends a voice message)
    dtmf_after: str = ""
    hangup_after: float | None = None
    agent_ring: float | None = None
    agent_talk: float | None = None
    #: seconds to follow the call before giving up
    timeout: float = 90.0
    #: "local": Local/12345@from-lab on the hotline itself; "trunk": the lab carrier
    #: calls 12345 over the PJSIP trunk and the call arrives in [from-carrier]
    via: str = "local"

    def variables(self) -> list[str]:
        out = []
        if self.dtmf:
            out.append(f"CITIZEN_DTMF={self.dtmf}")
        if self.dtmf_delay is not None:
            out.append(f"CITIZEN_DTMF_DELAY={self.dtmf_delay:g}")
        if self.speech:
            out.append(f"CITIZEN_SPEECH={self.speech}")
        if self.dtmf_after:
            out.append(f"CITIZEN_DTMF_AFTER={self.dtmf_after}")
        if self.hangup_after is not None:
            out.append(f"CITIZEN_HANGUP_AFTER={self.hangup_after:g}")
        # __ = inherited by the queue's member channels (the lab agents)
        if self.agent_ring is not None:
            out.append(f"__LAB_AGENT_RING={self.agent_ring:g}")
        if self.agent_talk is not None:
            out.append(f"__LAB_AGENT_TALK={self.agent_talk:g}")
        return out


@dataclass
class CallResult:
    call_id: str
    citizen_id: str
    caller_masked: str
    steps: list[str] = field(default_factory=list)
    answered: bool = False
    queue_joined: bool = False
    queue_position: int | None = None
    agent_answered: bool = False
    agent: str | None = None
    answer_after: float | None = None
    abandoned: bool = False
    agi_status: str | None = None
    gateway_next: str | None = None
    transfer: str | None = None
    hangup_by: str | None = None
    originate: str | None = None
    completed: bool = False
    duration: float = 0.0
    gateway_record: dict[str, Any] | None = None
    #: what the answering lab agent saw (the screen-pop variables it inherited)
    screen_pop: dict[str, str] = field(default_factory=dict)
    events: list[AmiMessage] = field(default_factory=list, repr=False)

    @property
    def went_through(self) -> bool:
        """The hotline answered and the call ended before the follow timeout."""
        return self.answered and self.completed

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "citizen_channel_id": self.citizen_id,
            "caller_masked": self.caller_masked,
            "steps": list(self.steps),
            "answered": self.answered,
            "queue_joined": self.queue_joined,
            "queue_position": self.queue_position,
            "agent_answered": self.agent_answered,
            "agent": self.agent,
            "answer_after": self.answer_after,
            "abandoned": self.abandoned,
            "agi_status": self.agi_status,
            "gateway_next": self.gateway_next,
            "transfer": self.transfer,
            "hangup_by": self.hangup_by,
            "originate": self.originate,
            "completed": self.completed,
            "went_through": self.went_through,
            "duration": round(self.duration, 3),
            "gateway_record": self.gateway_record,
            "screen_pop": dict(self.screen_pop),
        }

    def describe(self) -> str:
        return " -> ".join(self.steps) if self.steps else "(nothing happened)"


def _ts(event: AmiMessage) -> float:
    try:
        return float(event["Timestamp"])
    except (KeyError, ValueError):
        return time.time()


class CallTracker:
    """Turns the AMI events of one call into its path (pure: no I/O)."""

    def __init__(self, citizen_id: str, call_id: str, originate_action_id: str | None = None) -> None:
        self.result = CallResult(call_id=call_id, citizen_id=citizen_id, caller_masked="")
        self.action_id = originate_action_id
        self.linked = {citizen_id, call_id}
        self.channels: set[str] = {citizen_id, call_id}
        #: channels that must have come and gone before the call is complete
        self.required: set[str] = {citizen_id, call_id}
        self.live: set[str] = set()
        self.seen: set[str] = set()
        self.joined_at: float | None = None
        self.started_at: float | None = None
        self.first_hangup: str | None = None
        self._marks: dict[str, int] = {}
        #: (step index, seconds waited) of a QueueCallerAbandon not yet explained
        self._pending_abandon: tuple[int, str] | None = None
        self.done = False

    # -- event intake -----------------------------------------------------------------------
    def belongs(self, event: AmiMessage) -> bool:
        if event.get("Event") == "OriginateResponse":
            return self.action_id is not None and event.get("ActionID") == self.action_id
        if event.get("Uniqueid") in self.channels or event.get("Linkedid") in self.linked:
            return True
        if event.get("DestUniqueid") in self.channels or event.get("DestLinkedid") in self.linked:
            return True
        return event.get("Event") == "UserEvent" and event.get("CallId") == self.result.call_id

    def feed(self, event: AmiMessage) -> None:
        if not self.belongs(event):
            return
        self.result.events.append(event)
        name = event.get("Event", "")
        uniqueid = event.get("Uniqueid", "")
        if self.started_at is None:
            self.started_at = _ts(event)
        if name == "Newchannel":
            self.channels.add(uniqueid)
            self.live.add(uniqueid)
            self.seen.add(uniqueid)
        elif name == "Hangup":
            self.live.discard(uniqueid)
            if self.first_hangup is None and uniqueid in (self.result.citizen_id, self.result.call_id):
                self.first_hangup = uniqueid
        elif name == "OriginateResponse":
            self.result.originate = event.get("Response")
            if event.get("Response") != "Success":
                self.add_step(f"originate failed (reason {event.get('Reason', '?')})")
                self.done = True
        elif name == "UserEvent" and event.get("UserEvent") == "HotlinePath":
            self._hotline_step(event)
        elif name in _QUEUE_EVENTS and uniqueid == self.result.call_id:
            self._queue_event(name, event)
        if self.seen and not self.live and self.required <= self.seen:
            self.result.completed = True
            self.done = True
            self._finish(_ts(event))

    def add_step(self, text: str, mark: str | None = None) -> None:
        if mark is not None:
            self._marks[mark] = len(self.result.steps)
        self.result.steps.append(text)

    def _hotline_step(self, event: AmiMessage) -> None:
        step = event.get("Step", "")
        r = self.result
        if step == "inbound":
            r.answered = True
            self.add_step("12345 answered")
        elif step == "agi-failed":
            r.agi_status = event.get("AgiStatus", "FAILURE")
            self.add_step(f"gateway unreachable (AGISTATUS {r.agi_status}) -> fallback to the queue")
        elif step == "agi-done":
            r.agi_status = "SUCCESS"
            r.gateway_next = event.get("Next") or None
            self.add_step(f"gateway flow -> {r.gateway_next or 'no hand-off (queue)'}", mark="gateway")
        elif step == "queue" and event.get("Attempt", "1") != "1":
            self.add_step(f"queue re-entered (attempt {event.get('Attempt')}, priority {event.get('QueuePriority')})")
        elif step == "queue-exit":
            status = event.get("Status") or "no status"
            pending, self._pending_abandon = self._pending_abandon, None
            if pending is not None:
                # app_queue reports a timeout as QueueCallerAbandon too; the
                # dialplan's queue-exit says the citizen is still here
                index, waited = pending
                r.abandoned = False
                self.result.steps[index] = f"left the queue after {waited} s ({status})"
            else:
                self.add_step(f"left the queue ({status})")
        elif step == "transfer":
            r.transfer = event.get("Target")
            self.add_step(f"transfer to {r.transfer}")
        elif step == "utility-answered":
            self.add_step(f"{event.get('Number')} answered")
        elif step == "transfer-failed":
            self.add_step(f"transfer to {event.get('Target')} failed ({event.get('DialStatus') or 'invalid'})")
        elif step == "hangup" and event.get("Where") == "inbound":
            # hung up while the gateway flow ran (or right after it)
            r.agi_status = r.agi_status or event.get("AgiStatus") or None
            r.gateway_next = r.gateway_next or event.get("Next") or None
        elif step == "agent-answered":
            r.screen_pop = {
                key: event[key] for key in ("Choices", "RepeatCaller", "OpenOrder", "PriorityCaller") if event.get(key)
            }
            if "Choices" in r.screen_pop:
                # the dialplan writes ',' as '|' (a comma would split the UserEvent)
                r.screen_pop["Choices"] = r.screen_pop["Choices"].replace("|", ",")
        elif step == "citizen-hangup":
            r.hangup_by = r.hangup_by or "citizen"
        elif step == "agent-hangup":
            r.hangup_by = r.hangup_by or "agent"

    def _queue_event(self, name: str, event: AmiMessage) -> None:
        r = self.result
        if name == "QueueCallerJoin":
            r.queue_joined = True
            self.joined_at = _ts(event)
            try:
                r.queue_position = int(event.get("Position", ""))
            except ValueError:
                r.queue_position = None
            self.add_step(f"queue {event.get('Queue')} (joined pos {event.get('Position', '?')})")
        elif name == "AgentRingNoAnswer":
            self.add_step(f"{event.get('MemberName') or event.get('Interface')} did not answer")
        elif name == "AgentConnect":
            r.agent_answered = True
            r.agent = event.get("MemberName") or event.get("Interface")
            if self.joined_at is not None:
                r.answer_after = round(_ts(event) - self.joined_at, 1)
                self.add_step(f"{r.agent} answered after {r.answer_after:.1f} s")
            else:
                self.add_step(f"{r.agent} answered")
        elif name == "AgentComplete":
            # app_queue says who ended the answered call (a registered phone's BYE sends no lab UserEvent)
            by = {"agent": "agent", "caller": "citizen"}.get(event.get("Reason", ""))
            if by is not None:
                r.hangup_by = by
        elif name == "QueueCallerAbandon":
            r.abandoned = True
            if self.joined_at is not None:
                waited = f"{_ts(event) - self.joined_at:.1f}"
            else:
                waited = event.get("HoldTime", "?")
            self._pending_abandon = (len(r.steps), waited)
            self.add_step(f"abandoned in the queue after {waited} s (pos {event.get('Position', '?')})")

    def _finish(self, ended_at: float) -> None:
        if self.started_at is not None:
            self.result.duration = max(0.0, ended_at - self.started_at)

    def timed_out(self) -> None:
        self.done = True
        self.add_step("still in progress when the lab stopped following it (timeout)")

    def conclude(self) -> CallResult:
        """Name who hung up (after the gateway record is in) and close the path."""
        r = self.result
        outcome = (r.gateway_record or {}).get("outcome")
        if r.hangup_by is None and r.completed:
            if r.gateway_next == "hangup" or outcome == "handoff_hangup":
                r.hangup_by = "gateway"
            elif r.transfer and not r.agent_answered:
                r.hangup_by = "transfer target"
            elif self.first_hangup == r.citizen_id:
                r.hangup_by = "citizen"
            elif self.first_hangup == r.call_id:
                r.hangup_by = "hotline"
        if r.completed:
            self.add_step(f"hang-up ({r.hangup_by or 'unknown'})")
        return r

    def add_gateway_record(self, record: dict[str, str] | None) -> None:
        """Fold the gateway's call record (Redis hash) into the result."""
        if not record:
            return
        parsed: dict[str, Any] = dict(record)
        try:
            parsed["path"] = json.loads(record.get("path", "[]"))
        except json.JSONDecodeError:
            parsed["path"] = record.get("path")
        # never hand the raw number on; the record also has caller_masked
        parsed.pop("caller", None)
        self.result.gateway_record = parsed
        path = parsed.get("path")
        detail = ", ".join(str(p) for p in path) if isinstance(path, list) and path else ""
        flow = parsed.get("flow") or "?"
        text = f"gateway flow {flow} ({detail})" if detail else f"gateway flow {flow}"
        index = self._marks.get("gateway")
        if index is not None:
            self.result.steps[index] = text
        elif self.result.answered:
            # the citizen hung up during the flow: no agi-done event was sent
            outcome = parsed.get("outcome")
            self.result.steps.insert(1, f"{text} [{outcome}]" if outcome else text)


def originate_and_follow(
    ami: AmiClient,
    fields: list[tuple[str, str]],
    timeout: float,
    until: Callable[[AmiMessage], bool] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> CallTracker:
    """Originate (Async) with ids chosen here and follow the call.

    ``fields`` are the Originate headers except ChannelId/OtherChannelId/Async
    (added here). Follows every event of the call until all its channels have
    hung up, ``until(event)`` is true, or ``timeout`` seconds pass. The
    tracker's ``result.events`` holds the call's events; ``result.call_id``
    is the second (Local ;2) leg's unique id.
    """
    base = str(uuid.uuid4())
    tracker = CallTracker(f"{base}-a", f"{base}-b")
    started = time.monotonic()
    headers = [
        *fields,
        ("Async", "true"),
        ("ChannelId", tracker.result.citizen_id),
        ("OtherChannelId", tracker.result.call_id),
    ]
    reply = ami.action("Originate", headers, check=False)
    tracker.action_id = reply.get("ActionID")
    if reply.get("Response") != "Success":
        tracker.result.originate = "Error"
        tracker.add_step(f"originate refused: {reply.get('Message', reply)}")
        tracker.done = True
        return tracker
    _follow(ami, tracker, started + timeout, on_step=on_step, until=until)
    if not tracker.result.duration:
        tracker.result.duration = time.monotonic() - started
    return tracker


def _follow(
    ami: AmiClient,
    tracker: CallTracker,
    deadline: float,
    on_step: Callable[[str], None] | None = None,
    until: Callable[[AmiMessage], bool] | None = None,
    side: Callable[[], None] | None = None,
) -> None:
    """Feed the tracker until the call is done, ``until`` holds or the deadline passes.

    ``side`` (if given) is called at least every 0.25 s: the trunk call reads the
    carrier's events with it.
    """
    reported = 0
    while not tracker.done:
        wait_until = min(deadline, time.monotonic() + 0.25) if side is not None else deadline
        event = ami.next_event(wait_until)
        if side is not None:
            side()
        if event is None:
            if time.monotonic() >= deadline:
                tracker.timed_out()
                break
            continue
        tracker.feed(event)
        if on_step is not None:
            while reported < len(tracker.result.steps):
                on_step(tracker.result.steps[reported])
                reported += 1
        if until is not None and tracker.belongs(event) and until(event):
            break


def originate_citizen(
    ami: AmiClient,
    request: CallRequest,
    read_record: Callable[[str], dict[str, str] | None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> CallResult:
    """One simulated citizen: Local/12345@from-lab, ;1 leg in [lab-citizen]."""
    fields: list[tuple[str, str]] = [
        ("Channel", "Local/12345@from-lab"),
        ("Context", "lab-citizen"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", "30000"),
        ("CallerID", f'"{request.caller_name}" <{request.caller}>'),
    ]
    fields += [("Variable", v) for v in request.variables()]
    tracker = originate_and_follow(ami, fields, request.timeout, on_step=on_step)
    tracker.result.caller_masked = mask_number(request.caller)
    if read_record is not None and tracker.result.originate != "Error":
        # the gateway only has a record if it took the AGI session
        patience = 3.0 if tracker.result.agi_status != "FAILURE" else 0.0
        tracker.add_gateway_record(_wait_record(read_record, tracker.result.call_id, patience))
    return tracker.conclude()


def _wait_record(read_record: Callable[[str], dict[str, str] | None], call_id: str, wait: float):
    """The gateway writes its record off the call path: give it a moment."""
    deadline = time.monotonic() + wait
    record = read_record(call_id)
    while time.monotonic() < deadline and (record is None or "ended_at" not in record):
        time.sleep(0.1)
        record = read_record(call_id)
    return record
