"""What flows may ask of the rest of the gateway, as one small interface.

The engine calls these; Redis-backed implementations live in
``gateway/storage``. Every call may fail (Redis down): the engine catches
:class:`ServiceUnavailable`, counts it and carries the caller on towards an
agent — an auxiliary failure never keeps a citizen from a human.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

__all__ = ["FlowServices", "NullServices", "QueueState", "ServiceUnavailable", "is_workday"]


class ServiceUnavailable(RuntimeError):
    """A backing store did not answer; the flow goes on without it."""


@dataclass(frozen=True)
class QueueState:
    waiting: int
    logged_in: int
    free: int
    maximum: int
    estimated_wait: float

    @property
    def full(self) -> bool:
        return self.maximum > 0 and self.waiting >= self.maximum


@dataclass(frozen=True)
class OrderStatus:
    number: str
    status: str  # a fixed status key: received, dispatched, processing, completed, closed ...
    unit: str = ""


class FlowServices(Protocol):
    timezone: ZoneInfo

    def now(self) -> dt.datetime: ...

    async def caller_in(self, list_name: str, number: str) -> bool: ...

    async def order_status(self, number: str) -> OrderStatus | None: ...

    async def open_order_for(self, caller: str) -> OrderStatus | None: ...

    async def request_callback(self, request: dict[str, Any]) -> bool: ...

    async def voice_message(self, job: dict[str, Any]) -> bool: ...

    async def recording_problem(self, path: str, end_position: int = 0) -> str | None:
        """Why a recording Asterisk reported as saved holds no message (gateway.flows.recordings),
        or None: it does, or the gateway cannot see the recordings."""

    def failed(self, what: str, error: str) -> None: ...


def is_workday(day: dt.date) -> bool:
    """Chinese working day: statutory holidays off, make-up weekend days on."""
    try:
        import chinese_calendar

        return bool(chinese_calendar.is_workday(day))
    except (ImportError, NotImplementedError):
        # Outside the library's known years: plain Monday–Friday.
        return day.weekday() < 5


class NullServices:
    """No stores at all (unit tests, or a gateway run without Redis)."""

    def __init__(self, clock: Any, timezone: str = "Asia/Shanghai") -> None:
        self._clock = clock
        self.timezone = ZoneInfo(timezone)
        self.failures: list[tuple[str, str]] = []

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.seconds(), self.timezone)

    async def caller_in(self, list_name: str, number: str) -> bool:
        return False

    async def order_status(self, number: str) -> OrderStatus | None:
        return None

    async def open_order_for(self, caller: str) -> OrderStatus | None:
        return None

    async def request_callback(self, request: dict[str, Any]) -> bool:
        raise ServiceUnavailable("no callback store configured")

    async def voice_message(self, job: dict[str, Any]) -> bool:
        raise ServiceUnavailable("no job store configured")

    async def recording_problem(self, path: str, end_position: int = 0) -> str | None:
        return None  # the recordings are not visible here

    def failed(self, what: str, error: str) -> None:
        self.failures.append((what, error))
