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


def contexts() -> dict[str, str]:
    """extensions.conf as {context name: its text}."""
    parts = re.split(r"^\[([^\]]+)\]\s*$", CONF.read_text(), flags=re.M)
    return {name: body for name, body in zip(parts[1::2], parts[2::2])}


def test_the_bench_did_is_the_hotline_outside_the_lab():
    """DID 12399 runs the bench's pure-dialplan hotline only when HOTLINE_LAB is 1 (the lab writes it into
    hotline-globals.conf); the shipped default is 0, so on a real trunk 12399 is the hotline like any DID."""
    ctx = contexts()
    assert re.search(r"^HOTLINE_LAB\s*=\s*0\s*$", ctx["globals"], flags=re.M)
    lines = [line.strip() for line in ctx["from-carrier"].splitlines() if line.strip() and not line.startswith(";")]
    i = next(n for n, line in enumerate(lines) if line.startswith("exten => 12399,1,"))
    assert lines[i] == 'exten => 12399,1,GotoIf($["${HOTLINE_LAB}" = "1"]?bench-native-hotline,s,1)'
    assert lines[i + 1] == "same => n,Goto(hotline-inbound,12345,1)"
    # nothing else leads into the bench contexts: only bench contexts and the guarded DID name them
    for name, body in ctx.items():
        if name.startswith("bench-"):
            continue
        for line in body.splitlines():
            if "bench-" in line.split(";", 1)[0]:
                assert name == "from-carrier" and "HOTLINE_LAB" in line, f"[{name}] reaches a bench context: {line}"


def test_no_shipped_file_turns_the_lab_switch_on():
    """Only the lab installer writes HOTLINE_LAB = 1; the Docker image and the shipped configs leave it 0."""
    root = CONF.parents[1]
    for folder in ("asterisk_conf", "docker"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                # a globals line (HOTLINE_LAB = 1), a Set(), an ENV line (HOTLINE_LAB=1); not a comment
                sets = re.search(r"^[^;#]*\bHOTLINE_LAB\s*=\s*1\b", text, flags=re.M)
                assert not sets, f"{path} sets HOTLINE_LAB = 1: {sets.group(0)}"
