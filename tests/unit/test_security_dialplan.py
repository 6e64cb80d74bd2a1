"""The dialplan's own number check ([hotline-dialable] in extensions.conf) and the gateway's number
policy (phonenumbers' ranges) agree: every number the policy lets through the dialplan dials, and the
dialplan dials no premium, international, short or unassigned-range number the policy refuses."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from gateway.dialer.policy import NumberPolicy

CONF = Path(__file__).resolve().parents[2] / "asterisk_conf" / "extensions.conf"


def dialable_patterns() -> list[re.Pattern]:
    text = CONF.read_text()
    context = text.split("\n[hotline-dialable]\n", 1)[1].split("\n[", 1)[0]
    patterns = re.findall(r'REGEX\("([^"]+)"', context)
    assert len(patterns) == 2, patterns  # mobile, landline
    return [re.compile(p) for p in patterns]


def dialplan_allows(number: str) -> bool:
    return number.isdigit() and any(p.search(number) for p in dialable_patterns())


def sample(prefix: str, length: int, count: int = 60) -> list[str]:
    rng = random.Random(prefix)
    return [prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix))) for _ in range(count)]


@pytest.mark.parametrize("second", "0123456789")
def test_mobile_ranges_agree_with_the_policy(second):
    """For every 1XY prefix: a number the policy admits is dialable, and a prefix the dialplan dials
    holds numbers the policy admits (so no range outside phonenumbers' mobile ranges is dialled)."""
    policy = NumberPolicy()
    for third in "0123456789":
        prefix = f"1{second}{third}"
        numbers = sample(prefix, 11)
        admitted = [n for n in numbers if policy.check(n).allowed]
        for number in admitted:
            assert dialplan_allows(number), f"policy admits {number}, the dialplan refuses it"
        if dialplan_allows(numbers[0]):
            assert admitted, f"the dialplan dials the {prefix} range, the policy admits none of it"


@pytest.mark.parametrize("number", ["16895551234", "16012345678", "17951234567", "0012125551234",
                                    "00442079460958", "110", "119", "120", "12345", "95598", "10086",
                                    "4008001234", "8008101234", "", "+8613812345678", "138 1234 5678"])
def test_the_dialplan_refuses_what_the_policy_refuses(number):
    assert not NumberPolicy().check(number).allowed or not number.isdigit()
    assert not dialplan_allows(number)


@pytest.mark.parametrize("number", ["13812345678", "02088889999", "075512345678", "01012345678", "19912345678"])
def test_the_dialplan_dials_what_the_policy_admits(number):
    decision = NumberPolicy().check(number)
    assert decision.allowed and dialplan_allows(decision.dial)


def test_both_outbound_contexts_use_the_check():
    text = CONF.read_text()
    for context in ("hotline-callback-out", "hotline-outbound"):
        body = text.split(f"\n[{context}]\n", 1)[1].split("\n[", 1)[0]
        assert "Gosub(hotline-dialable,s,1(${EXTEN}))" in body, context
