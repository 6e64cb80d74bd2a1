"""Each citizen scenario of sipp/ completes real calls against a SIPp stand-in for
the hotline, and SIPp counts them as the scenario says (no Asterisk needed)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gateway.lab import sipp as runner
from gateway.lab.errors import LabError
from gateway.lab.sipp import SippResult, SippRun, run_sipp, scenario_keys, scenario_path

from .conftest import CITIZEN_IP, RtpSink, StandIn

Citizen = Callable[..., SippResult]
Start = Callable[..., StandIn]


def _header(request: str, name: str) -> str:
    match = re.search(rf"^{name}: *(.*)$", request, re.MULTILINE)
    return match.group(1).strip() if match else ""


def test_queue_call_sends_g711_voice_and_ends_with_our_bye(
    citizen: Citizen, stand_in: Start, rtp_sink: RtpSink
) -> None:
    hotline = stand_in("uas_hotline")
    result = citizen("citizen_queue", hotline, greeting_ms=1000, talk_ms=1000)
    assert result.ok, result.summary()
    assert (result.successful, result.answered, result.far_end_hangups) == (1, 1, 0)
    assert result.call_length_ms >= 2000
    assert hotline.finish() == 0
    # 30 ms A-law packets for ~2 s, and no telephone-event
    assert rtp_sink.payload_types().get(8, 0) >= 40
    assert 101 not in rtp_sink.payload_types()


def test_in_dialog_requests_follow_the_record_route_set(citizen: Citizen, stand_in: Start) -> None:
    """ACK and BYE go to the stand-in's Contact with its Record-Route as Route (what Kamailio needs)."""
    hotline = stand_in("uas_hotline")
    assert citizen("citizen_queue", hotline, greeting_ms=200, talk_ms=0).ok
    assert hotline.finish() == 0
    for method in ("ACK", "BYE"):
        (request,) = hotline.requests(method)
        assert request.startswith(f"{method} sip:12345@{hotline.target} SIP/2.0")
        assert _header(request, "Route") == f"<sip:proxy@{hotline.target};lr>"
        assert re.search(r";tag=\d+Hotline1$", _header(request, "To"))


def test_invite_comes_from_the_carrier_side_with_the_dialled_number(citizen: Citizen, stand_in: Start) -> None:
    hotline = stand_in("uas_hotline")
    assert citizen("citizen_queue", hotline, caller="13912345678", greeting_ms=200, talk_ms=0).ok
    hotline.finish()
    (invite,) = hotline.requests("INVITE")
    assert invite.startswith(f"INVITE sip:12345@{hotline.target} SIP/2.0")
    assert _header(invite, "Via").startswith(f"SIP/2.0/UDP {CITIZEN_IP}:")
    assert _header(invite, "P-Asserted-Identity") == f"<sip:13912345678@{CITIZEN_IP}>"
    assert "m=audio " in invite and "RTP/AVP 8 101" in invite and "G729" not in invite


@pytest.mark.parametrize(("digit", "event"), [("9", 9), ("1", 1), ("#", 11)])
def test_key_scenario_sends_the_digit_as_rfc4733_events(
    citizen: Citizen, stand_in: Start, rtp_sink: RtpSink, digit: str, event: int
) -> None:
    hotline = stand_in("uas_hotline")
    result = citizen("citizen_key", hotline, digit=digit, dtmf_delay_ms=500, talk_ms=500)
    assert result.ok, result.summary()
    assert hotline.finish() == 0
    telephone_events = [p for p in rtp_sink.packets if p.payload_type == 101]
    assert len(telephone_events) == 10  # the capture: 7 updates and the end packet sent 3 times
    assert rtp_sink.events() == {event}
    assert telephone_events[-1].payload[1] & 0x80  # the E (end) bit
    assert rtp_sink.payload_types()[8] > 0  # the voice before and after the key
    assert hotline.requests("INFO") == []


def test_info_scenario_sends_the_digit_as_sip_info(citizen: Citizen, stand_in: Start, rtp_sink: RtpSink) -> None:
    hotline = stand_in("uas_hotline")
    result = citizen("citizen_info_dtmf", hotline, digit="9", dtmf_delay_ms=500, talk_ms=500)
    assert result.ok, result.summary()
    assert hotline.finish() == 0
    (info,) = hotline.requests("INFO")
    assert _header(info, "Content-Type") == "application/dtmf-relay"
    assert re.search(r"^Signal=9\s*$", info, re.MULTILINE)
    assert re.search(r"^Duration=250\s*$", info, re.MULTILINE)
    assert _header(info, "Route") == f"<sip:proxy@{hotline.target};lr>"
    assert 101 not in rtp_sink.payload_types()


def test_abandon_hangs_up_after_abandon_ms(citizen: Citizen, stand_in: Start) -> None:
    hotline = stand_in("uas_hotline")
    result = citizen("citizen_abandon", hotline, abandon_ms=1500)
    assert result.ok and result.far_end_hangups == 0
    assert 1500 <= result.call_length_ms < 3000
    assert hotline.finish() == 0 and len(hotline.requests("BYE")) == 1


def test_silent_caller_survives_an_update_and_the_hotline_hanging_up_first(
    citizen: Citizen, stand_in: Start, rtp_sink: RtpSink
) -> None:
    """The lab's agents end their calls: the hotline's BYE gets 200 OK, the call still counts as successful."""
    hotline = stand_in("uas_hangs_up", hangup_ms="1000")
    result = citizen("citizen_silent", hotline, stay_ms=10000)
    assert result.ok, result.summary()
    assert (result.far_end_hangups, result.auto_answered) == (1, 1)
    assert result.call_length_ms < 5000
    assert hotline.finish() == 0
    answered = {_header(response, "CSeq") for response in hotline.received("SIP/2.0 200 OK")}
    assert answered == {"1 UPDATE", "2 BYE"}
    assert 101 not in rtp_sink.payload_types()


@pytest.mark.parametrize(("scenario", "status"), [("citizen_bad_sdp", "400"), ("citizen_bad_codec", "488")])
def test_a_refused_offer_is_the_expected_outcome(
    citizen: Citizen, stand_in: Start, rtp_sink: RtpSink, scenario: str, status: str
) -> None:
    hotline = stand_in("uas_hotline")
    result = citizen(scenario, hotline)
    assert result.ok, result.summary()
    assert (result.refused, result.answered) == (1, 0)
    assert hotline.finish() == 0
    (invite,), (ack,) = hotline.requests("INVITE"), hotline.requests("ACK")
    # the ACK of a non-2xx belongs to the INVITE's transaction: the same branch
    assert _header(ack, "Via").split(";branch=")[1].split(";")[0] == _header(invite, "Via").split(";branch=")[1]
    assert f"{status} " in hotline.messages.read_text()
    assert rtp_sink.packets == []


def test_an_answered_bad_offer_is_torn_down_and_counted_failed(citizen: Citizen, stand_in: Start) -> None:
    hotline = stand_in("uas_hangs_up", hangup_ms="5000")
    result = citizen("citizen_bad_codec", hotline)
    assert not result.ok
    assert (result.failed, result.answered, result.refused) == (1, 1, 0)
    assert dict(result.failures) == {"FailedRegexpDoesntMatch": 1}
    assert hotline.requests("ACK") and hotline.requests("BYE")


def test_load_run_counts_every_call_and_measures_post_dial_delay(
    citizen: Citizen, stand_in: Start, rtp_sink: RtpSink
) -> None:
    hotline = stand_in("uas_hotline", calls=4)
    result = citizen("citizen_key", hotline, calls=4, rate=4, digit="9", dtmf_delay_ms=300, talk_ms=300)
    assert result.ok, result.summary()
    assert (result.calls_created, result.successful, result.answered) == (4, 4, 4)
    assert result.call_rate > 0
    assert result.response_time_ms is not None and result.response_time_ms < 500
    assert hotline.finish() == 0
    assert len([p for p in rtp_sink.packets if p.payload_type == 101]) == 4 * 10


def test_sipps_global_timeout_lets_the_running_call_end(citizen: Citizen, stand_in: Start) -> None:
    """-timeout stops new calls only (the runner's docstring relies on this)."""
    hotline = stand_in("uas_hotline")
    result = citizen("citizen_queue", hotline, timeout_s=1, greeting_ms=2500, talk_ms=0)
    assert result.ok and result.call_length_ms >= 2500


def test_a_scenario_sipp_cannot_load_is_an_error(stand_in: Start, tmp_path) -> None:
    hotline = stand_in("uas_hotline")
    keys = scenario_keys("citizen_queue")
    del keys["talk_ms"]  # SIPp: "Unsupported keyword 'talk_ms' in xml scenario file"
    run = SippRun(scenario_path("citizen_queue"), hotline.target, keys, local_ip=CITIZEN_IP, timeout_s=5)
    with pytest.raises(LabError, match="Unsupported keyword 'talk_ms'"):
        run_sipp(run, tmp_path / "uac")


def test_a_sipp_that_outlives_its_bound_is_stopped(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "slow-sipp"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(runner, "_SIP_TIMERS_S", 0)
    run = SippRun(scenario_path("citizen_bad_codec"), "127.0.0.1:5060", scenario_keys("citizen_bad_codec"), timeout_s=1)
    with pytest.raises(LabError, match="was stopped"):
        run_sipp(run, tmp_path / "uac", sipp=str(fake), grace_s=0.5)
