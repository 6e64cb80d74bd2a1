"""Call windows: local time, statutory holidays, make-up workdays, operator-closed days."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gateway.dialer.windows import CallWindows

TZ = ZoneInfo("Asia/Shanghai")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


def local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, TZ).strftime("%Y-%m-%d %H:%M")


def test_inside_the_window_a_call_may_start_now():
    windows = CallWindows("08:00", "21:00")
    assert windows.is_open(at("2026-11-23T10:00"))
    assert windows.next_open(at("2026-11-23T10:00")) == at("2026-11-23T10:00")


def test_no_calls_at_night_the_next_chance_is_the_morning():
    windows = CallWindows("08:00", "21:00")
    assert not windows.is_open(at("2026-11-23T21:00"))
    assert local(windows.next_open(at("2026-11-23T22:30"))) == "2026-11-24 08:00"
    assert local(windows.next_open(at("2026-11-24T03:10"))) == "2026-11-24 08:00"


def test_the_window_is_in_the_hotlines_local_time_not_utc():
    windows = CallWindows("08:00", "21:00", timezone="Asia/Shanghai")
    utc_midnight = dt.datetime(2026, 11, 23, 0, 30, tzinfo=dt.timezone.utc).timestamp()  # 08:30 in Shanghai
    assert windows.is_open(utc_midnight)


def test_statutory_holidays_are_skipped_but_ordinary_weekends_are_not():
    windows = CallWindows(holidays="statutory")
    assert not windows.is_open(at("2026-10-01T10:00"))  # National Day
    assert windows.is_open(at("2026-11-21T10:00"))  # an ordinary Saturday
    assert local(windows.next_open(at("2026-09-30T21:30"))) == "2026-10-08 08:00"


def test_workdays_policy_skips_weekends_and_honours_make_up_workdays():
    windows = CallWindows(holidays="workdays")
    assert not windows.is_open(at("2026-11-21T10:00"))  # Saturday
    assert windows.is_open(at("2026-10-10T10:00"))  # Saturday make-up workday (调休)
    assert local(windows.next_open(at("2026-11-20T22:00"))) == "2026-11-23 08:00"


def test_allow_policy_calls_on_holidays_too():
    assert CallWindows(holidays="allow").is_open(at("2026-10-01T10:00"))


def test_operator_closed_days_are_skipped():
    windows = CallWindows(holidays="allow", closed_days=CallWindows.parse_days("2026-12-24, 2026-12-25"))
    assert local(windows.next_open(at("2026-12-24T09:00"))) == "2026-12-26 08:00"


def test_a_window_until_midnight_can_be_written_24_00():
    windows = CallWindows("00:00", "24:00", holidays="allow")
    assert windows.is_open(at("2026-11-23T23:59"))
    assert windows.is_open(at("2026-11-23T00:00"))


@pytest.mark.parametrize("start, end", [("21:00", "08:00"), ("8:00", "21:00"), ("08:00", "25:00")])
def test_bad_windows_are_refused(start, end):
    with pytest.raises(ValueError):
        CallWindows(start, end)
