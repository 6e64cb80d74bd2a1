"""Urgency and time limits of a draft work order.

* 突发 (emergency): an emergency keyword (gas leak, fire, someone trapped,
  burst main …), or a seasonal one (no heating inside the heating season),
  not negated (没有煤气味) → due ``emergency_hours`` clock hours after receipt.
* otherwise the time limit of the category (consultation 1 working day,
  general 3), raised to "difficult" (5) by keywords such as 多次反映.

Working days follow the Chinese statutory calendar (``chinese_calendar``):
holidays are off, make-up weekend days (调休) are on. For a year the library
does not know, plain Monday–Friday is used and the result says so
(``calendar_known=False``). The current time is always an argument.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from gateway.drafting.taxonomy import Taxonomy

__all__ = ["Urgency", "add_working_days", "assess", "find_keywords", "is_workday"]

MAX_SCAN_DAYS = 60  # the longest run of days off is far shorter; guards a broken calendar


def is_workday(day: dt.date) -> tuple[bool, bool]:
    """(is a working day, whether the statutory calendar knows the year)."""
    try:
        import chinese_calendar

        return bool(chinese_calendar.is_workday(day)), True
    except (ImportError, NotImplementedError):
        return day.weekday() < 5, False


def add_working_days(start: dt.datetime, days: int, day_end: dt.time,
                     workday: Callable[[dt.date], tuple[bool, bool]] = is_workday) -> tuple[dt.datetime, bool]:
    """Due time: ``day_end`` on the ``days``-th working day after ``start``'s date.

    Receipt day itself does not count (a call at 09:00 or at 23:00 on a
    Wednesday has the same limit). ``days == 0`` means end of the receipt day if
    it is a working day, else of the next working day.
    """
    known = True
    day = start.date()
    if days == 0:
        ok, k = workday(day)
        known &= k
        scanned = 0
        while not ok:
            day += dt.timedelta(days=1)
            ok, k = workday(day)
            known &= k
            scanned += 1
            if scanned > MAX_SCAN_DAYS:
                raise ValueError(f"no working day within {MAX_SCAN_DAYS} days of {start.date()}")
    counted = 0
    scanned = 0
    while counted < days:
        day += dt.timedelta(days=1)
        ok, k = workday(day)
        known &= k
        counted += ok
        scanned += 1
        if scanned > MAX_SCAN_DAYS * max(days, 1):
            raise ValueError(f"no working day within {scanned} days of {start.date()}")
    due = dt.datetime.combine(day, day_end, tzinfo=start.tzinfo)
    return due, known


@dataclass(frozen=True)
class Urgency:
    level: str  # "emergency" | "difficult" | "general" | "consultation"
    label: str
    matched: tuple[str, ...]
    due_at: dt.datetime
    working_days: int | None  # None for emergencies (clock hours)
    calendar_known: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "level": self.level, "label": self.label, "matched": list(self.matched),
            "working_days": self.working_days,
            "calendar": "statutory" if self.calendar_known else "weekends_only",
        }


def find_keywords(keywords: tuple[str, ...], tokens: frozenset[str], text: str,
                  negations: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Keywords present in the text (token or substring), skipping negated ones (没有煤气味)."""
    found = []
    for word in keywords:
        if word not in tokens and word not in text:
            continue
        start = text.find(word)
        negated_everywhere = start >= 0
        while start >= 0:
            prefix = text[max(0, start - 3):start]
            # 是不是漏气了 asks, it does not deny
            if prefix.endswith("是不是") or not any(prefix.endswith(n) for n in negations):
                negated_everywhere = False
                break
            start = text.find(word, start + 1)
        if not negated_everywhere:
            found.append(word)
    return tuple(found)


def assess(taxonomy: Taxonomy, tokens: frozenset[str], text: str, time_limit: str,
           received_at: dt.datetime, topic: str | None = None) -> Urgency:
    """Urgency level, matched keywords and due time for one transcript."""
    rules = taxonomy.urgency
    limits = taxonomy.time_limits
    emergency = list(find_keywords(rules.emergency_keywords, tokens, text, rules.negations))
    for rule in rules.seasonal:
        if rule.in_season(received_at.date()) and (rule.topic is None or rule.topic == topic):
            emergency += find_keywords(rule.keywords, tokens, text, rules.negations)
    if emergency:
        due = received_at + dt.timedelta(hours=limits.emergency_hours)
        return Urgency("emergency", rules.emergency_label, tuple(emergency), due, None, True)
    difficult = find_keywords(rules.difficult_keywords, tokens, text)
    level = "difficult" if difficult else time_limit
    days = limits.working_days(level)
    due, known = add_working_days(received_at, days, limits.working_day_end)
    label = rules.difficult_label if difficult else rules.labels.get(level, level)
    return Urgency(level, label, difficult, due, days, known)
