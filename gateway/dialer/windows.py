"""Call windows: when a citizen may be called, in the hotline's local time.

Never at night: a number is dialled only inside the daily window (default
08:00–21:00 local time) and, per configuration, not on statutory holidays:

* ``holidays = "allow"``     — every day;
* ``holidays = "statutory"`` — not on China's statutory holidays (国庆, 春节 …,
  from ``chinese_calendar``); ordinary weekends are fine;
* ``holidays = "workdays"``  — working days only (weekends off, make-up
  workdays 调休 on).

``closed_days`` adds days the operator closes (local dates). Outside the
range ``chinese_calendar`` knows, only weekends count as days off.
Pure: the caller passes the time (``clock.seconds()``); nothing here reads a clock.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import chinese_calendar

__all__ = ["CallWindows", "HOLIDAY_POLICIES"]

HOLIDAY_POLICIES = ("allow", "statutory", "workdays")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _parse_hhmm(text: str, what: str) -> dt.time:
    match = _HHMM.fullmatch(text.strip())
    if text.strip() == "24:00":
        return dt.time.max
    if not match:
        raise ValueError(f"{what}: {text!r} is not HH:MM")
    return dt.time(int(match.group(1)), int(match.group(2)))


class CallWindows:
    def __init__(
        self,
        start: str = "08:00",
        end: str = "21:00",
        timezone: str = "Asia/Shanghai",
        holidays: str = "statutory",
        closed_days: Iterable[dt.date] = (),
    ) -> None:
        if holidays not in HOLIDAY_POLICIES:
            raise ValueError(f"holidays must be one of {', '.join(HOLIDAY_POLICIES)}")
        self.start = _parse_hhmm(start, "window start")
        self.end = _parse_hhmm(end, "window end")
        if self.end <= self.start:
            raise ValueError("the call window must end after it starts (no windows across midnight)")
        self.tz = ZoneInfo(timezone)
        self.holidays = holidays
        self.closed_days = frozenset(closed_days)

    @staticmethod
    def parse_days(text: str) -> list[dt.date]:
        """``"2026-12-24, 2026-12-31"`` → dates (config helper)."""
        days = []
        for item in text.split(","):
            if item.strip():
                days.append(dt.date.fromisoformat(item.strip()))
        return days

    def day_open(self, day: dt.date) -> bool:
        if day in self.closed_days:
            return False
        if self.holidays == "allow":
            return True
        try:
            if self.holidays == "statutory":
                on_holiday, name = chinese_calendar.get_holiday_detail(day)
                return not (on_holiday and name is not None)
            return chinese_calendar.is_workday(day)
        except NotImplementedError:  # a year the calendar does not cover
            return self.holidays == "statutory" or day.weekday() < 5

    def is_open(self, at: float) -> bool:
        local = dt.datetime.fromtimestamp(at, self.tz)
        return self.day_open(local.date()) and self.start <= local.time() < self.end

    def next_open(self, at: float) -> float:
        """``at`` itself if the window is open then, else the start of the next open window."""
        local = dt.datetime.fromtimestamp(at, self.tz)
        day = local.date()
        for offset in range(0, 400):
            candidate = day + dt.timedelta(days=offset)
            if not self.day_open(candidate):
                continue
            opens = dt.datetime.combine(candidate, self.start, self.tz)
            closes = dt.datetime.combine(candidate, self.end, self.tz)
            if offset == 0:
                if local < opens:
                    return opens.timestamp()
                if local < closes:
                    return at
                continue
            return opens.timestamp()
        raise ValueError("no open call window in the next 400 days (check the configuration)")
