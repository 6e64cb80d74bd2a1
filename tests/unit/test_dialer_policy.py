"""Number policy: only allowed kinds are dialled, always as a digits-only national dial string."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialer.policy import NumberPolicy

DEFAULT = NumberPolicy()


@pytest.mark.parametrize(
    "raw, dial, kind",
    [
        ("13800138000", "13800138000", "mobile"),
        ("+86 138 0013 8000", "13800138000", "mobile"),
        ("008613800138000", "13800138000", "mobile"),
        ("02088889999", "02088889999", "landline"),
        ("020-8888-9999", "02088889999", "landline"),
        ("+86 10 6552 9988", "01065529988", "landline"),
    ],
)
def test_mobile_and_landline_numbers_are_normalised_to_national_digits(raw, dial, kind):
    decision = DEFAULT.check(raw)
    assert decision.allowed and decision.dial == dial and decision.kind == kind


def test_the_same_number_written_differently_has_one_identity():
    assert DEFAULT.check("13800138000").e164 == DEFAULT.check("+86-138-0013-8000").e164 == "+8613800138000"


def test_local_landline_without_area_code_is_refused_unless_the_area_code_is_configured():
    assert not DEFAULT.check("88889999").allowed
    decision = NumberPolicy(local_area_code="020").check("8888 9999")
    assert decision.allowed and decision.dial == "02088889999"


@pytest.mark.parametrize("raw, kind", [("4008001234", "shared"), ("8008101234", "tollfree")])
def test_400_and_800_numbers_are_refused_by_default_and_allowed_when_configured(raw, kind):
    refused = DEFAULT.check(raw)
    assert not refused.allowed and refused.kind == kind
    allowed = NumberPolicy({"mobile", "landline", kind}).check(raw)
    assert allowed.allowed and allowed.dial == raw


@pytest.mark.parametrize("raw", ["95598", "12345", "110", "1900123456", "106912345678", "10086"])
def test_short_codes_and_premium_shaped_numbers_are_never_dialled(raw):
    assert not DEFAULT.check(raw).allowed


def test_international_numbers_are_refused_by_default():
    decision = DEFAULT.check("+14155552671")
    assert not decision.allowed and decision.kind == "international"
    allowed = NumberPolicy({"international"}).check("+14155552671")
    assert allowed.allowed and allowed.dial == "0014155552671"


@pytest.mark.parametrize("raw", ["", "   ", "abc", "138001380OO", "1" * 60, None, 13800138000, "+", "--", "１３８００１３８０００x"])
def test_garbage_is_refused_with_a_reason(raw):
    decision = DEFAULT.check(raw)
    assert not decision.allowed and decision.reason


def test_unknown_kinds_and_bad_area_codes_are_configuration_errors():
    with pytest.raises(ValueError):
        NumberPolicy({"satellite"})
    with pytest.raises(ValueError):
        NumberPolicy(local_area_code="20")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=50))
def test_the_normaliser_never_crashes_and_only_emits_digits(raw):
    decision = NumberPolicy({"mobile", "landline", "tollfree", "shared", "international"}, "0755").check(raw)
    assert decision.allowed in (True, False)
    if decision.allowed:
        assert decision.dial.isdigit() and decision.dial.isascii()


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\+?[0-9 ()\-]{0,25}", fullmatch=True))
def test_number_like_input_never_crashes(raw):
    decision = DEFAULT.check(raw)
    if decision.allowed:
        assert decision.kind in ("mobile", "landline")
