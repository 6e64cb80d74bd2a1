"""AMI Originate for one attempt, and what its events say about the outcome.

An attempt is an ``Originate`` with ``Async: true`` of a ``Local/`` channel
into fixed dialplan contexts (never a free-form channel): the attempt id is
the new channel's Uniqueid (``ChannelId``) and the channel variable
``HOTLINE_CB_ID``, so every event about it can be tied back — by ActionID for
the ``OriginateResponse``, by the variable for the dialplan's ``UserEvent``
``HotlineCallback`` steps, by Uniqueid for the ``Hangup``.

The dialplan (``asterisk_conf/extensions.conf``, ``[hotline-callback*]``)
reports, as UserEvent *and* in AstDB ``hotline-callback/<attempt id>`` (so an
attempt can be settled after a gateway restart, from Asterisk's own record):

* ``dial,<DIALSTATUS>,<HANGUPCAUSE>`` — the trunk leg failed;
* ``result,<pressed 0|1>,<talk seconds>`` — the call was answered and is over.

Pure functions here; :class:`~gateway.dialer.service.Dialer` drives them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..ami.codec import AmiMessage

__all__ = [
    "ATTEMPT_PREFIX",
    "ATTEMPT_VAR",
    "AttemptOutcome",
    "DB_FAMILY",
    "USER_EVENT",
    "originate_fields",
    "outcome_from_dial_status",
    "outcome_from_reason",
    "parse_record",
    "safe_variables",
]

#: attempt ids (= the originated channel's Uniqueid) start with this
ATTEMPT_PREFIX = "hlcb-"
#: channel variable carrying the attempt id (inherited by every leg)
ATTEMPT_VAR = "HOTLINE_CB_ID"
#: AstDB family of the dialplan's per-attempt record
DB_FAMILY = "hotline-callback"
#: UserEvent name the callback dialplan sends
USER_EVENT = "HotlineCallback"

#: OriginateResponse ``Reason`` (Asterisk's control frame numbers)
_REASONS = {"0": "failed", "1": "failed", "3": "no_answer", "4": "answered", "5": "busy", "8": "congestion"}
_DIAL_STATUS = {
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CONGESTION": "congestion",
    "CHANUNAVAIL": "failed",
    "CANCEL": "no_answer",
    "DONTCALL": "failed",
    "TORTURE": "failed",
    "INVALIDARGS": "failed",
}
#: the context the answered leg of a citizen-first attempt runs, per job mode (fixed, never from job data)
ANSWERED_CONTEXTS = {"citizen-first": "hotline-callback", "survey": "hotline-survey"}
_VAR_NAME = re.compile(r"HOTLINE_[A-Z0-9_]{1,40}")
_VAR_UNSAFE = re.compile(r"[^0-9A-Za-z_.:-]")

#: Q.850 causes that say more than a generic failure
_CAUSES = {"17": "busy", "18": "no_answer", "19": "no_answer", "21": "failed", "34": "congestion", "38": "congestion",
           "42": "congestion"}


@dataclass(frozen=True)
class AttemptOutcome:
    """What happened to one attempt (``outcome`` is one of retry.ATTEMPT_OUTCOMES)."""

    outcome: str
    detail: str = ""
    pressed: bool = False
    talk: float = 0.0


def outcome_from_reason(reason: str) -> str:
    return _REASONS.get(reason.strip(), "failed")


def outcome_from_dial_status(status: str, cause: str = "") -> str:
    status = status.strip().upper()
    if status in _DIAL_STATUS:
        return _DIAL_STATUS[status]
    return _CAUSES.get(cause.strip(), "failed")


def parse_record(value: str, min_talk: float) -> AttemptOutcome | None:
    """The dialplan's record (AstDB value or UserEvent ``Data``) → outcome; None if not a record."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        return None
    kind, first, second = parts
    if kind == "dial":
        return AttemptOutcome(outcome_from_dial_status(first, second), detail=f"dial {first or '?'} cause {second or '?'}")
    if kind == "result":
        pressed = first == "1"
        try:
            talk = max(0.0, float(second or 0))
        except ValueError:
            talk = 0.0
        confirmed = pressed and talk >= min_talk
        detail = f"pressed={int(pressed)} talk={talk:.0f}s"
        return AttemptOutcome("answered" if confirmed else "unconfirmed", detail=detail, pressed=pressed, talk=talk)
    if kind == "survey":
        # survey,<answered 0|1>,<talk s>: 1 = the citizen answered at least one question (no minimum talk)
        answered = first == "1"
        try:
            talk = max(0.0, float(second or 0))
        except ValueError:
            talk = 0.0
        return AttemptOutcome("answered" if answered else "unconfirmed", detail=f"survey answered={int(answered)} "
                              f"talk={talk:.0f}s", pressed=answered, talk=talk)
    return None


def safe_variables(variables: Mapping[str, object] | None) -> list[tuple[str, str]]:
    """Extra channel variables of a job (e.g. a survey's order data): ``HOTLINE_*`` names only,
    values reduced to ``[0-9A-Za-z_.:-]`` (no commas, spaces or newlines reach the AMI action), 64 chars."""
    out = []
    for name, value in sorted((variables or {}).items()):
        if _VAR_NAME.fullmatch(str(name)):
            out.append((str(name), _VAR_UNSAFE.sub("", str(value))[:64]))
    return out


def user_event_attempt(message: AmiMessage) -> str:
    return message.get("AttemptId") if message.get("UserEvent") == USER_EVENT else ""


def originate_fields(
    *,
    attempt_id: str,
    number: str,
    mode: str,
    queue: str,
    caller_id: str,
    priority: int,
    ring_timeout: float,
    variables: Mapping[str, object] | None = None,
) -> list[tuple[str, str]]:
    """The Originate for an attempt. ``number`` must come from the number policy (digits only).

    citizen-first: ``Local/<number>@hotline-callback-out`` rings the citizen;
    once answered the other leg runs ``[hotline-callback]`` (prompt, press 1,
    queue with priority); mode ``survey`` dials the same way and the answered
    leg runs ``[hotline-survey]`` (the survey flow over FastAGI). agent-first: ``Local/<queue>@hotline-callback-agent``
    waits in the queue for an agent; once an agent answers,
    ``[hotline-callback-agent-connected]`` dials the citizen.
    """
    if not number.isdigit():
        raise ValueError("the dial string must be digits only (use NumberPolicy)")
    if not queue.replace("_", "").isalnum():
        raise ValueError("queue names are letters, digits and _")
    caller_digits = "".join(ch for ch in caller_id if ch.isdigit())
    # /n: no Local-channel optimisation — the originated leg must stay in the call to its end
    # (it measures the talk time and writes the attempt's record when it hangs up)
    if mode == "agent-first":
        channel, context = f"Local/{queue}@hotline-callback-agent/n", "hotline-callback-agent-connected"
    else:
        channel, context = f"Local/{number}@hotline-callback-out/n", ANSWERED_CONTEXTS.get(mode, "hotline-callback")
    fields = [
        ("Channel", channel),
        ("Context", context),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Async", "true"),
        ("Timeout", str(int(ring_timeout * 1000))),
        ("ChannelId", attempt_id),
        ("OtherChannelId", f"{attempt_id}-2"),
        ("CallerID", f"12345 <{caller_digits}>" if caller_digits else "12345"),
    ]
    for name, value in (
        (ATTEMPT_VAR, attempt_id),
        ("HOTLINE_CB_DIAL", number),
        ("HOTLINE_CB_CALLERID", caller_digits),
        ("HOTLINE_CB_QUEUE", queue),
        ("HOTLINE_CB_PRIORITY", str(max(0, min(100, priority)))),
        ("HOTLINE_CB_RING", str(int(ring_timeout))),
    ):
        fields.append(("Variable", f"__{name}={value}"))
    for name, value in safe_variables(variables):
        fields.append(("Variable", f"{name}={value}"))
    return fields
