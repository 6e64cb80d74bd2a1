"""ops/fail2ban's filter for Asterisk's security log: real lines from the lab (captured from
tests/integration/test_security_live.py's run) are counted against the sender's address, the
normal challenge is not, and values the sender chose cannot get another address banned."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

FILTER = Path(__file__).resolve().parents[2] / "ops" / "fail2ban" / "filter.d" / "hotline-asterisk.conf"
JAIL = Path(__file__).resolve().parents[2] / "ops" / "fail2ban" / "jail.d" / "hotline-asterisk.local"
#: fail2ban's <HOST> (IPv4 or IPv6), good enough to test the rest of the expression
HOST = r"(?P<host>(?:\d{1,3}\.){3}\d{1,3}|[0-9a-fA-F:]+)"

PREFIX = '[2026-12-05 12:33:50.926] SECURITY[10364] res_security_log.c: '
INVALID_ACCOUNT = PREFIX + (
    'SecurityEvent="InvalidAccountID",EventTV="2026-12-05T12:33:50.926+0000",Severity="Error",Service="PJSIP",'
    'EventVersion="1",AccountID="02112345",SessionID="1-10557@127.0.0.81",LocalAddress="IPV4/UDP/127.0.0.1/5060",'
    'RemoteAddress="IPV4/UDP/127.0.0.81/5091"')
CHALLENGE_SENT = PREFIX + (
    'SecurityEvent="ChallengeSent",EventTV="2026-12-05T12:33:50.926+0000",Severity="Informational",'
    'Service="PJSIP",EventVersion="1",AccountID="<unknown>",SessionID="1-10557@127.0.0.81",'
    'LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/127.0.0.81/5091",Challenge=""')
WRONG_PASSWORD = PREFIX + (
    'SecurityEvent="ChallengeResponseFailed",EventTV="2026-12-05T12:33:51.994+0000",Severity="Error",'
    'Service="PJSIP",EventVersion="1",AccountID="agent1",SessionID="1-10558@127.0.0.81",'
    'LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/127.0.0.81/5092",'
    'Challenge="1796474031/ad95f84d986202b10c1e8cb25845419d",Response="a25e3cad1135eaed292cc35ea6f62ef6",'
    'ExpectedResponse=""')


def failregexes() -> list[re.Pattern]:
    parser = configparser.ConfigParser()  # fail2ban interpolates %(name)s the same way
    parser.read(FILTER)
    lines = [line.strip() for line in parser.get("Definition", "failregex").splitlines() if line.strip()]
    assert lines
    return [re.compile(line.replace("<HOST>", HOST)) for line in lines]


def banned(line: str) -> str | None:
    for pattern in failregexes():
        match = pattern.search(line)
        if match:
            return match.group("host")
    return None


@pytest.mark.parametrize("line, host", [(INVALID_ACCOUNT, "127.0.0.81"), (WRONG_PASSWORD, "127.0.0.81")])
def test_failures_count_against_the_sender(line, host):
    assert banned(line) == host


def test_fail2ban_cuts_the_time_stamp_first_and_the_line_still_matches():
    assert banned(INVALID_ACCOUNT.split("] ", 1)[1]) == "127.0.0.81"


def test_the_normal_challenge_is_not_a_failure():
    assert banned(CHALLENGE_SENT) is None


@pytest.mark.parametrize("field, value", [
    ("AccountID", '02112345",RemoteAddress="IPV4/UDP/198.51.100.7/5060'),
    ("SessionID", 'x",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/198.51.100.7/5060'),
])
def test_a_value_chosen_by_the_sender_cannot_name_another_address(field, value):
    line = re.sub(rf'{field}="[^"]*"', lambda _m: f'{field}="{value}"', INVALID_ACCOUNT, count=1)
    assert "198.51.100.7" in line
    assert banned(line) in (None, "127.0.0.81")


def test_a_digest_response_cannot_name_another_address():
    line = WRONG_PASSWORD.replace('Response="a25e', 'Response="x",RemoteAddress="IPV4/UDP/198.51.100.7/1",X="a25e')
    assert banned(line) in (None, "127.0.0.81")


def test_the_jail_uses_the_filter_and_the_security_log_and_spares_loopback():
    jail = configparser.ConfigParser()
    jail.read(JAIL)
    section = jail["hotline-asterisk"]
    assert section["filter"] == FILTER.stem and section["logpath"] == "/var/log/asterisk/security"
    assert "127.0.0.1/8" in section["ignoreip"].split()
    assert int(section["maxretry"]) >= 3
