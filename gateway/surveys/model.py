"""A closed work order, the survey's statuses and answers (pure data, no I/O)."""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ANSWERS",
    "FINAL_STATUSES",
    "NO_RESPONSE",
    "QUESTIONS",
    "ClosedOrder",
    "EventError",
    "parse_closed_event",
]

#: answer keys per question (the flow's keys map onto these names)
QUESTIONS = ("solved", "satisfaction")
NO_RESPONSE = "no_response"
ANSWERS = {
    "solved": ("solved", "unsolved", NO_RESPONSE),
    "satisfaction": ("satisfied", "basically_satisfied", "dissatisfied", NO_RESPONSE),
}
#: an order's survey ends in exactly one of these (written once)
#: ``declined``: the citizen pressed the flow's "don't call me again" key (the number joins the dialer's
#: do-not-call list); ``do_not_call``: the dialer refused the number (already on that list)
FINAL_STATUSES = ("completed", "partial", "refused", "no_answer", "declined", "do_not_call", "rejected", "cancelled")

_ORDER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,63}")
_MAX_TEXT = 200


class EventError(ValueError):
    """A work-order-closed event that cannot be surveyed as given."""


@dataclass(frozen=True)
class ClosedOrder:
    order_id: str
    phone: str
    category: str
    topic: str
    unit: str
    closed_at: float
    #: when the citizen reported it (the date the call names); closed_at if not given
    reported_at: float

    def as_fields(self) -> dict[str, str]:
        return {k: (repr(v) if isinstance(v, float) else str(v)) for k, v in asdict(self).items()}


def _timestamp(value: Any, name: str, tz: dt.tzinfo) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise EventError(f"{name} is missing")
    if isinstance(value, (int, float)):
        return _seconds(value, name)
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _seconds(seconds, name)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise EventError(f"{name} {text[:40]!r} is neither epoch seconds nor ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp()


def _seconds(value: int | float, name: str) -> float:
    """Epoch seconds as a float; NaN, infinities and numbers too large for a float are refused."""
    try:
        seconds = float(value)
    except OverflowError:
        raise EventError(f"{name} is out of range") from None
    if not math.isfinite(seconds):
        raise EventError(f"{name} must be a finite number of seconds")
    return seconds


def parse_closed_event(data: Mapping[str, Any], tz: dt.tzinfo) -> ClosedOrder:
    """Validate an event (HTTP JSON body or stream fields). Field names: ``order_id`` (or ``id``),
    ``phone``, ``category``, ``topic``, ``unit`` (or ``handling_unit``), ``closed_at``, optional
    ``reported_at``. Times: epoch seconds or ISO 8601 (local time if no offset)."""
    order_id = str(data.get("order_id") or data.get("id") or "").strip()
    if not _ORDER_ID.fullmatch(order_id):
        raise EventError("order_id must be 1-64 letters, digits, '_', '.', '-'")
    phone = str(data.get("phone") or "").strip()
    if not phone:
        raise EventError("phone is missing")
    closed_at = _timestamp(data.get("closed_at"), "closed_at", tz)
    reported = data.get("reported_at")
    reported_at = _timestamp(reported, "reported_at", tz) if reported not in (None, "") else closed_at
    return ClosedOrder(
        order_id=order_id,
        phone=phone,
        category=str(data.get("category") or "").strip()[:_MAX_TEXT],
        topic=str(data.get("topic") or "").strip()[:_MAX_TEXT],
        unit=str(data.get("unit") or data.get("handling_unit") or "").strip()[:_MAX_TEXT],
        closed_at=closed_at,
        reported_at=reported_at,
    )
