"""When a number is called, and which of its orders one call covers (pure; times are passed in).

* an order is due ``delay`` seconds after its closure (the citizen has had time to see the result);
* a call covers every order of the number due by then *or within* ``combine_ahead`` seconds after
  (up to ``max_orders_per_call``): a citizen with five orders closed within an hour gets one call
  asking about three of them, not five calls;
* the number's next call is at least ``spacing`` seconds after its previous call ended;
* a call not connected ``expiry`` seconds after it was first due is given up (no answer).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SurveyRules"]


@dataclass(frozen=True)
class SurveyRules:
    delay: float = 2 * 3600.0
    combine_ahead: float = 6 * 3600.0
    max_orders_per_call: int = 3
    spacing: float = 24 * 3600.0
    expiry: float = 3 * 24 * 3600.0
    #: orders closed longer ago than this are not surveyed (a replayed stream from months ago)
    max_age: float = 15 * 24 * 3600.0

    def __post_init__(self) -> None:
        if min(self.delay, self.combine_ahead, self.spacing) < 0 or self.expiry <= 0 or self.max_age <= 0:
            raise ValueError("surveys: delay, combine_ahead, spacing ≥ 0; expiry, max_age > 0")
        if not 1 <= self.max_orders_per_call <= 9:
            raise ValueError("surveys.max_orders_per_call must be 1..9")

    def due_at(self, closed_at: float, now: float) -> float:
        """When the order may first be surveyed (never in the past: now at the earliest)."""
        return max(closed_at + self.delay, now)

    def too_old(self, closed_at: float, now: float) -> bool:
        return now - closed_at > self.max_age

    def next_call_at(self, earliest_pending_due: float, last_call_ended: float) -> float:
        """A number's next call: its earliest pending order's due time, but not before the spacing."""
        return max(earliest_pending_due, last_call_ended + self.spacing)

    def horizon(self, now: float) -> float:
        """Orders due by this time join a call placed now."""
        return now + self.combine_ahead
