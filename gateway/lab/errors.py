"""The one exception the lab raises for anything an operator must fix."""

from __future__ import annotations

__all__ = ["LabError"]


class LabError(RuntimeError):
    """A lab step failed; the message says what and what to do about it."""
