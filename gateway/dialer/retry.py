"""What happens after an attempt: retry later, or a final outcome.

Attempt outcomes (:data:`OUTCOMES`): ``answered`` (the person confirmed: for a
callback, pressed 1 and talked long enough), ``unconfirmed`` (answered, but
no confirmation — voicemail, a wrong person, hung up at once), ``no_answer``,
``busy``, ``congestion``, ``failed``, ``rejected_by_policy``.

Final outcomes of a job (:data:`FINAL`): ``connected``, ``exhausted`` (max
attempts), ``expired`` (past its deadline), ``rejected`` (number policy),
``do_not_call``, ``cancelled``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ATTEMPT_OUTCOMES", "FINAL_OUTCOMES", "RetryPolicy", "Decision"]

ATTEMPT_OUTCOMES = ("answered", "unconfirmed", "no_answer", "busy", "congestion", "failed", "rejected_by_policy")
FINAL_OUTCOMES = ("connected", "exhausted", "expired", "rejected", "do_not_call", "cancelled")

DEFAULT_BACKOFF = {
    "no_answer": 600.0,
    "busy": 300.0,
    "congestion": 120.0,
    "failed": 300.0,
    "unconfirmed": 1800.0,
}


@dataclass(frozen=True)
class Decision:
    """Either ``final`` (the job is over) or ``retry_at`` (the next due time)."""

    final: str | None = None
    retry_at: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    #: seconds before the next attempt, per outcome; doubled for each further attempt
    backoff: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BACKOFF))
    factor: float = 2.0
    max_delay: float = 4 * 3600.0

    @classmethod
    def from_text(cls, text: str, max_attempts: int = 3, factor: float = 2.0) -> RetryPolicy:
        """``"busy=300,no_answer=600"`` over the defaults (config helper)."""
        backoff = dict(DEFAULT_BACKOFF)
        for item in text.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in DEFAULT_BACKOFF:
                raise ValueError(f"backoff: {item.strip()!r} is not OUTCOME=SECONDS ({', '.join(DEFAULT_BACKOFF)})")
            backoff[name] = float(value)
        return cls(max_attempts=max_attempts, backoff=backoff, factor=factor)

    def delay(self, outcome: str, attempts: int) -> float:
        base = self.backoff.get(outcome, self.backoff.get("failed", 300.0))
        return min(self.max_delay, base * self.factor ** max(0, attempts - 1))

    def after(self, outcome: str, attempts: int, now: float, expires_at: float) -> Decision:
        """``attempts``: attempts made so far, this one included."""
        if outcome == "answered":
            return Decision(final="connected")
        if outcome == "rejected_by_policy":
            return Decision(final="rejected")
        if attempts >= self.max_attempts:
            return Decision(final="exhausted")
        retry_at = now + self.delay(outcome, attempts)
        if retry_at >= expires_at:
            return Decision(final="expired")
        return Decision(retry_at=retry_at)
