"""Calls that cross the lab carrier's trunk.

* :func:`originate_citizen_via_trunk` — a citizen calls 12345 through the
  carrier: the carrier originates ``PJSIP/12345@hotline``, the call reaches the
  hotline's [from-carrier] (straight, or through the Kamailio front door to one
  of several nodes) and is followed on the AMI of the node it reached;
* :func:`originate_outbound` — the hotline calls out through the trunk, as the
  callback dialer does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..masking import mask_number
from .ami_blocking import AmiClient, AmiMessage
from .callflow import CallRequest, CallResult, CallTracker, _follow, _wait_record, originate_and_follow

__all__ = ["OutboundResult", "originate_citizen_via_trunk", "originate_outbound"]


#: how long the carrier's call may take to show up on the hotline
_TRUNK_ARRIVAL = 20.0


def _drain(ami: AmiClient) -> list[AmiMessage]:
    """Events already waiting on ``ami`` (reads what has arrived, never blocks long)."""
    events = []
    while (event := ami.next_event(time.monotonic() + 0.01)) is not None:
        events.append(event)
    return events


def originate_citizen_via_trunk(
    ami: AmiClient | Sequence[AmiClient],
    carrier: AmiClient,
    request: CallRequest,
    read_record: Callable[[str], dict[str, str] | None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> CallResult:
    """One citizen calling 12345 through the carrier and the PJSIP trunk.

    The lab carrier originates ``PJSIP/12345@hotline`` (its [carrier-citizen]
    plays the citizen once the hotline answers); the call reaches the hotline's
    [from-carrier] like a real carrier's call. The hotline's inbound channel is
    recognised by a one-off caller name (the citizen's number is the real one)
    and followed on the hotline's AMI like a Local lab call. The lab agents'
    ring/talk times cannot ride over SIP: the hotline's defaults apply.

    ``ami`` may be several nodes' sessions (the several-node lab): the call is
    followed on the node whose Newchannel carries the token.
    """
    nodes = [ami] if isinstance(ami, AmiClient) else list(ami)
    token = "lab-" + uuid.uuid4().hex[:12]
    carrier_id = f"carrier-{uuid.uuid4()}"
    fields: list[tuple[str, str]] = [
        ("Channel", "PJSIP/12345@hotline"),
        ("Context", "carrier-citizen"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", "30000"),
        ("CallerID", f'"{token}" <{request.caller}>'),
        ("Async", "true"),
        ("ChannelId", carrier_id),
    ]
    fields += [("Variable", v) for v in request.variables() if v.startswith("CITIZEN_")]
    started = time.monotonic()
    reply = carrier.action("Originate", fields, check=False)
    action_id = reply.get("ActionID")
    placeholder = CallTracker(carrier_id, "")
    placeholder.result.caller_masked = mask_number(request.caller)
    if reply.get("Response") != "Success":
        placeholder.result.originate = "Error"
        placeholder.add_step(f"carrier refused the originate: {reply.get('Message', reply)}")
        return placeholder.result

    def carrier_failed(events: list[AmiMessage]) -> str | None:
        for event in events:
            if event.get("Event") == "OriginateResponse" and event.get("ActionID") == action_id:
                if event.get("Response") != "Success":
                    return event.get("Reason", "?")
        return None

    tracker: CallTracker | None = None
    arrival = started + _TRUNK_ARRIVAL
    wait = 0.25 if len(nodes) == 1 else 0.02
    while tracker is None:
        for node in nodes:
            event = node.next_event(min(arrival, time.monotonic() + wait))
            if event is not None and event.get("Event") == "Newchannel" and event.get("CallerIDName") == token:
                ami = node
                break
        reason = carrier_failed(_drain(carrier))
        if reason is not None:
            placeholder.result.originate = "Failure"
            placeholder.add_step(f"the carrier's call did not reach the hotline (originate reason {reason})")
            return placeholder.result
        if event is not None and event.get("Event") == "Newchannel" and event.get("CallerIDName") == token:
            tracker = CallTracker(carrier_id, event.get("Uniqueid", ""))
            tracker.required = {tracker.result.call_id}
            tracker.add_step(f"carrier -> trunk -> {event.get('Channel', '?')} [{event.get('Context', '?')}]")
            tracker.feed(event)
        elif time.monotonic() >= arrival:
            placeholder.add_step(f"the carrier's call did not arrive within {_TRUNK_ARRIVAL:.0f} s (trunk down?)")
            return placeholder.result
    tracker.result.caller_masked = mask_number(request.caller)

    def watch_carrier() -> None:
        for event in _drain(carrier):
            if event.get("Event") == "OriginateResponse" and event.get("ActionID") == action_id:
                tracker.result.originate = event.get("Response")
            elif event.get("Event") == "UserEvent" and event.get("UserEvent") == "CarrierCitizen":
                if event.get("Uniqueid") == carrier_id and event.get("Step") == "citizen-hangup":
                    tracker.result.hangup_by = tracker.result.hangup_by or "citizen"

    _follow(ami, tracker, started + request.timeout, on_step=on_step, side=watch_carrier)
    watch_carrier()
    if not tracker.result.duration:
        tracker.result.duration = time.monotonic() - started
    if read_record is not None:
        patience = 3.0 if tracker.result.agi_status != "FAILURE" else 0.0
        tracker.add_gateway_record(_wait_record(read_record, tracker.result.call_id, patience))
    return tracker.conclude()


@dataclass
class OutboundResult:
    """A call the hotline placed out through the trunk ([hotline-outbound])."""

    number_masked: str
    #: OriginateResponse: Success / Failure, and its Reason (4 answered, 5 busy, 8 congestion, 3 no answer, 1 failed)
    originate: str | None = None
    reason: str | None = None
    #: app_dial's DIALSTATUS towards the carrier (ANSWER, BUSY, NOANSWER, CONGESTION, CHANUNAVAIL ...)
    dial_status: str | None = None
    answered: bool = False
    #: the digit the far end keyed, as the hotline heard it ("" = none within the listen time)
    digit: str | None = None
    completed: bool = False
    steps: list[str] = field(default_factory=list)
    events: list[AmiMessage] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "number_masked": self.number_masked,
            "originate": self.originate,
            "reason": self.reason,
            "dial_status": self.dial_status,
            "answered": self.answered,
            "digit": self.digit,
            "completed": self.completed,
            "steps": list(self.steps),
        }


def originate_outbound(
    ami: AmiClient, number: str, listen: float = 15.0, stay: float = 1.0, timeout: float = 90.0
) -> OutboundResult:
    """The hotline calls ``number`` through the trunk, as the callback dialer will:
    ``Local/<number>@hotline-outbound`` with the other leg in [lab-outbound-probe],
    which listens ``listen`` s for one digit from the far end and stays ``stay`` s."""
    fields = [
        ("Channel", f"Local/{number}@hotline-outbound"),
        ("Context", "lab-outbound-probe"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", str(int(timeout * 1000))),
        ("CallerID", '"12345" <12345>'),
        ("Variable", f"LAB_NUMBER={number}"),
        ("Variable", f"LAB_LISTEN={listen:g}"),
        ("Variable", f"LAB_STAY={stay:g}"),
    ]
    tracker = originate_and_follow(ami, fields, timeout)
    # a failed originate is reported before the Local legs are gone: collect the rest
    if tracker.result.originate not in (None, "Success", "Error"):
        deadline = time.monotonic() + 5.0
        while tracker.live and (event := ami.next_event(deadline)) is not None:
            tracker.feed(event)
    result = OutboundResult(number_masked=mask_number(number), completed=tracker.result.completed)
    result.events = tracker.result.events
    for event in tracker.result.events:
        name = event.get("Event")
        if name == "OriginateResponse":
            result.originate, result.reason = event.get("Response"), event.get("Reason")
        elif name == "DialEnd" and event.get("DestChannel", "").startswith("PJSIP/"):
            result.dial_status = event.get("DialStatus")
            result.steps.append(f"trunk: {result.dial_status}")
        elif name == "UserEvent" and event.get("UserEvent") == "LabOutbound":
            if event.get("Step") == "answered":
                result.answered = True
                result.steps.append("answered")
            elif event.get("Step") == "digit":
                result.digit = event.get("Digit", "")
                result.steps.append(f"heard digit {result.digit!r}" if result.digit else "heard no digit")
    if result.originate:
        result.steps.append(f"originate {result.originate} (reason {result.reason})")
    return result
