"""Urgency levels and due times over the Chinese statutory working-day calendar (2026)."""
import datetime as dt
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from gateway.drafting import load_drafter
from gateway.drafting.urgency import add_working_days, is_workday

SH = ZoneInfo("Asia/Shanghai")
END = dt.time(18, 0)


@pytest.fixture(scope="module")
def drafter():
    return load_drafter()


def at(y, m, d, hh=10, mm=0):
    return dt.datetime(y, m, d, hh, mm, tzinfo=SH)


def test_installed_calendar_knows_the_2026_holidays_these_tests_rely_on():
    """National Day 10-01..10-07 off, Sat 10-10 and Sat 02-14 make-up workdays, Spring Festival 02-15..02-23 off."""
    assert not chinese_calendar.is_workday(dt.date(2026, 10, 1))
    assert not chinese_calendar.is_workday(dt.date(2026, 10, 7))
    assert chinese_calendar.is_workday(dt.date(2026, 10, 10))
    assert chinese_calendar.is_workday(dt.date(2026, 2, 14))
    assert not chinese_calendar.is_workday(dt.date(2026, 2, 23))


def test_three_working_days_from_national_day_eve_skip_the_holiday_and_land_on_the_makeup_saturday():
    due, known = add_working_days(at(2026, 9, 30), 3, END)
    assert (due, known) == (at(2026, 10, 10, 18), True)  # 10-08 Thu, 10-09 Fri, 10-10 Sat (调休)


def test_one_working_day_from_a_friday_before_a_makeup_saturday_is_that_saturday():
    assert add_working_days(at(2026, 2, 13, 16), 1, END)[0] == at(2026, 2, 14, 18)


def test_three_working_days_from_the_makeup_saturday_skip_spring_festival():
    assert add_working_days(at(2026, 2, 14), 3, END)[0] == at(2026, 2, 26, 18)  # 02-24, 02-25, 02-26


def test_a_plain_weekend_is_skipped():
    assert add_working_days(at(2026, 11, 20, 17), 1, END)[0] == at(2026, 11, 23, 18)  # Fri → Mon


def test_zero_days_on_a_holiday_means_the_next_working_day():
    assert add_working_days(at(2026, 10, 3), 0, END)[0] == at(2026, 10, 8, 18)


def test_working_days_use_the_injected_calendar():
    """A fake calendar where only Tuesdays work: 2 working days from Mon 2026-11-23 → Tue 12-01."""
    def tuesdays(day):
        return day.weekday() == 1, True

    assert add_working_days(at(2026, 11, 23), 2, END, tuesdays)[0] == at(2026, 12, 1, 18)


def test_a_year_the_calendar_does_not_know_falls_back_to_weekends_and_says_so():
    assert is_workday(dt.date(2040, 1, 2)) == (True, False)
    assert is_workday(dt.date(2040, 1, 7)) == (False, False)  # a Saturday
    due, known = add_working_days(at(2040, 1, 6), 1, END)  # Friday
    assert (due, known) == (at(2040, 1, 9, 18), False)


def test_unknown_calendar_year_puts_the_draft_up_for_review(drafter):
    d = drafter.draft({"recording_id": "r"}, "请问 公积金 提取 需要 什么 材料", 0.9, at(2040, 1, 6))
    assert d["urgency"]["calendar"] == "weekends_only"
    assert "holiday_calendar_unknown" in d["review_reasons"]


def test_gas_leak_on_national_day_is_an_emergency_due_in_two_clock_hours(drafter):
    u = drafter.urgency("家里 有 煤气味 好像 燃气泄漏 了", at(2026, 10, 1, 21, 15))
    assert u.level == "emergency" and u.label == "突发"
    assert u.due_at == at(2026, 10, 1, 23, 15)
    assert "煤气味" in u.matched


def test_a_question_whether_gas_leaks_is_not_read_as_a_negation(drafter):
    u = drafter.urgency("闻到 天然气 味 不 知道 是不是 漏气 了", at(2026, 11, 23))
    assert u.level == "emergency" and "漏气" in u.matched


def test_a_negated_gas_smell_is_not_an_emergency(drafter):
    u = drafter.urgency("想 问一下 燃气表 怎么 充值 家里 没有 煤气味", at(2026, 11, 23))
    assert u.level == "consultation"


@pytest.mark.parametrize("when, level", [
    (at(2026, 12, 1), "emergency"),   # inside the heating season
    (at(2026, 3, 10), "emergency"),   # the season wraps over the new year
    (at(2026, 10, 20), "general"),    # before it starts: an ordinary help request
])
def test_cold_radiators_are_an_emergency_only_in_the_heating_season(drafter, when, level):
    assert drafter.urgency("我家 暖气 不热 麻烦 派人 来 看看", when).level == level


def test_cold_is_only_a_heating_emergency_when_the_topic_is_heating(drafter):
    """不热 about a water heater complaint must not trigger the heating rule."""
    u = drafter.urgency("我 要 投诉 商家 卖 的 热水器 不热 还 不给 退货", at(2026, 12, 1))
    assert u.level == "general"


def test_repeated_unresolved_complaints_get_the_difficult_time_limit(drafter):
    u = drafter.urgency("这个 问题 我 已经 多次 反映 一直 没 解决 我 要 投诉 物业", at(2026, 11, 23))
    assert (u.level, u.working_days) == ("difficult", 5)
    assert u.due_at == at(2026, 11, 30, 18)


def test_consultation_is_due_the_next_working_day(drafter):
    u = drafter.urgency("请问 社保卡 补办 需要 什么 材料", at(2026, 11, 23, 9))
    assert (u.level, u.working_days, u.due_at) == ("consultation", 1, at(2026, 11, 24, 18))
