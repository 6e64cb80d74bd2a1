"""The SIPp runner's pure parts: the sipp command line, the scenario keys, and the
-trace_stat parser over statistics files recorded from real SIPp 3.6 runs
(tests/lab/fixtures/sipp-*.stats.csv, captured from the runs in tests/sippua)."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.lab.errors import LabError
from gateway.lab.sipp import (
    AUDIO_PCAP,
    SCENARIO_DIR,
    SCENARIOS,
    SippFiles,
    SippRun,
    build_command,
    dtmf_pcap,
    hard_bound_s,
    parse_stats,
    run_sipp,
    scenario_keys,
    scenario_path,
)

FIXTURES = Path(__file__).parent / "fixtures"
FILES = SippFiles.in_dir(Path("/run/sipp"))


def _recorded(name: str) -> str:
    return (FIXTURES / f"sipp-{name}.stats.csv").read_text()


def test_load_run_command_line() -> None:
    """Pins the whole argv of a load run against the hotline from the carrier's address."""
    keys = scenario_keys("citizen_key", digit="9", dtmf_delay_ms=3000, talk_ms=20000)
    run = SippRun(
        scenario_path("citizen_key"), "127.0.0.1:5060", keys, local_port=5080, media_port=40000,
        calls=100, rate=5, rate_period_ms=1000, concurrency=50, timeout_s=300,
    )  # fmt: skip
    assert build_command(run, FILES) == [
        "sipp", "127.0.0.1:5060",
        "-sf", str(SCENARIO_DIR / "citizen_key.xml"),
        "-s", "12345",
        "-i", "127.0.0.2", "-mi", "127.0.0.2", "-bind_local", "-p", "5080", "-mp", "40000",
        "-m", "100", "-r", "5", "-rp", "1000", "-l", "50",
        "-timeout", "300s", "-nostdin",
        "-trace_stat", "-stf", "/run/sipp/stats.csv",
        "-trace_err", "-error_file", "/run/sipp/errors.log",
        "-trace_screen", "-screen_file", "/run/sipp/screen.log",
        "-aa",
        "-key", "caller", "13800138000",
        "-key", "dtmf_delay_ms", "3000",
        "-key", "dtmf_pcap", "/usr/share/sip-tester/dtmf_2833_9.pcap",
        "-key", "talk_ms", "20000",
        "-key", "audio_pcap", str(AUDIO_PCAP),
    ]  # fmt: skip


def test_a_uas_has_no_target_and_no_concurrency_limit_unless_asked() -> None:
    cmd = build_command(SippRun(Path("uas.xml"), "", local_ip="127.0.0.61", auto_answer=False), FILES)
    assert cmd[:3] == ["sipp", "-sf", "uas.xml"]
    assert "-l" not in cmd and "-aa" not in cmd


def test_the_front_door_is_just_another_target_and_rates_keep_fractions() -> None:
    run = SippRun(scenario_path("citizen_queue"), "127.0.0.10:5060", rate=0.5, rate_period_ms=2000)
    cmd = build_command(run, FILES)
    assert cmd[1] == "127.0.0.10:5060"
    assert cmd[cmd.index("-r") + 1 : cmd.index("-rp") + 2] == ["0.5", "-rp", "2000"]


@pytest.mark.parametrize("field", ["calls", "rate", "rate_period_ms", "timeout_s"])
def test_non_positive_run_figures_are_refused(field: str) -> None:
    with pytest.raises(LabError):
        build_command(SippRun(Path("x.xml"), "127.0.0.1:5060", **{field: 0}), FILES)


@pytest.mark.parametrize(("digit", "name"), [("0", "dtmf_2833_0.pcap"), ("9", "dtmf_2833_9.pcap"),
                                             ("*", "dtmf_2833_star.pcap"), ("#", "dtmf_2833_pound.pcap")])  # fmt: skip
def test_each_key_maps_to_the_capture_sipp_ships(digit: str, name: str) -> None:
    assert dtmf_pcap(digit) == Path("/usr/share/sip-tester") / name


@pytest.mark.parametrize("digit", ["A", "12", "", "w"])
def test_keys_without_a_capture_are_refused(digit: str) -> None:
    with pytest.raises(LabError):
        dtmf_pcap(digit)


def test_the_digit_becomes_a_capture_path_or_an_info_signal() -> None:
    assert scenario_keys("citizen_key", digit="1")["dtmf_pcap"].endswith("/dtmf_2833_1.pcap")
    assert scenario_keys("citizen_info_dtmf", digit="#")["digit"] == "#"
    with pytest.raises(LabError):
        scenario_keys("citizen_info_dtmf", digit="x")
    with pytest.raises(LabError, match="keys no digit"):
        scenario_keys("citizen_queue", digit="1")


def test_keys_a_scenario_does_not_have_and_bad_durations_are_refused() -> None:
    """SIPp refuses a scenario with an unknown or missing key only once it runs; the runner refuses earlier."""
    with pytest.raises(LabError, match="no key 'talk_ms'"):
        scenario_keys("citizen_abandon", talk_ms=1000)
    with pytest.raises(LabError, match="whole number"):
        scenario_keys("citizen_queue", greeting_ms="8 s")
    with pytest.raises(LabError, match="unknown SIPp scenario"):
        scenario_keys("citizen_sings")


_BUILTIN = re.compile(
    r"^(service|remote_ip|remote_port|transport|local_ip|local_port|local_ip_type|media_ip|media_ip_type"
    r"|auto_media_port|branch|pid|call_number|call_id|len|next_url|routes|peer_tag_param|last_.*|\$.*)$"
)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_file_uses_exactly_the_keys_the_catalogue_gives_it(name: str) -> None:
    text = scenario_path(name).read_text()
    used = {word for word in re.findall(r"\[([^\]\s]+)\]", text) if not _BUILTIN.match(word)} - {"CDATA"}
    assert used == set(SCENARIOS[name].keys)


def test_every_voice_scenario_offers_only_pcma_and_telephone_events() -> None:
    """The shipped voice capture is A-law (payload type 8); DTMF captures use payload type 101."""
    for name, spec in SCENARIOS.items():
        text = scenario_path(name).read_text()
        if "audio_pcap" in spec.keys:
            assert "m=audio [auto_media_port] RTP/AVP 8 101" in text
            assert "a=rtpmap:101 telephone-event/8000" in text


def test_recorded_load_run_of_four_keyed_calls() -> None:
    result = parse_stats(_recorded("citizen-key-4calls"))
    assert (result.calls_created, result.successful, result.failed, result.incomplete) == (4, 4, 0, 0)
    assert result.answered == 4 and result.far_end_hangups == 0
    assert result.call_rate == pytest.approx(1.01549)
    assert result.response_time_ms == 4.0
    assert result.call_length_ms == 2936.0
    assert result.elapsed_s == 3
    assert dict(result.failures) == {}


def test_recorded_answered_bad_codec_offer_is_a_failed_call() -> None:
    result = parse_stats(_recorded("bad-codec-answered"))
    assert (result.successful, result.failed) == (0, 1)
    assert dict(result.failures) == {"FailedRegexpDoesntMatch": 1}
    assert result.answered == 1 and result.refused == 0


def test_a_run_cut_by_the_global_timeout_made_fewer_calls_than_asked() -> None:
    result = parse_stats(_recorded("queue-cut-by-timeout"))
    assert result.calls_created == 2
    assert replace(result, exit_code=0, calls_requested=2).ok
    assert not replace(result, exit_code=0, calls_requested=10).ok


def test_only_the_last_row_counts_and_blank_lines_are_ignored() -> None:
    text = _recorded("citizen-key-4calls")
    header, *rows = text.strip().splitlines()
    assert parse_stats("\n".join([header, rows[-1], "", ""])) == parse_stats(text)


@pytest.mark.parametrize("text", ["", "StartTime;TotalCallCreated\n", "a;b\n1;2\n"])
def test_a_statistics_file_without_a_usable_row_is_an_error(text: str) -> None:
    with pytest.raises(LabError):
        parse_stats(text)


def test_the_hard_bound_covers_the_timeout_the_waits_and_sip_timers() -> None:
    keys = scenario_keys("citizen_queue", greeting_ms=8000, talk_ms=20000)
    run = SippRun(scenario_path("citizen_queue"), "127.0.0.1:5060", keys, timeout_s=60)
    assert hard_bound_s(run, grace_s=0) == 60 + 28 + 64


_FAKE_SIPP = """\
import shutil, sys
args = sys.argv[1:]
if {stats!r}:
    shutil.copy({stats!r}, args[args.index("-stf") + 1])
print("fake sipp says hello", file=sys.stderr)
sys.exit({code})
"""


def _fake_sipp(tmp_path: Path, code: int, stats: str = "") -> str:
    script = tmp_path / "fake-sipp"
    script.write_text(f"#!{sys.executable}\n" + _FAKE_SIPP.format(stats=stats, code=code))
    script.chmod(0o755)
    return str(script)


def test_run_sipp_returns_a_failed_run_as_a_result(tmp_path: Path) -> None:
    """Exit code 1 with statistics: some calls failed, which is a result, not an error."""
    sipp = _fake_sipp(tmp_path, 1, str(FIXTURES / "sipp-bad-codec-answered.stats.csv"))
    run = SippRun(scenario_path("citizen_bad_codec"), "127.0.0.1:5060", scenario_keys("citizen_bad_codec"))
    result = run_sipp(run, tmp_path / "run", sipp=sipp)
    assert (result.exit_code, result.calls_requested, result.failed, result.ok) == (1, 1, 1, False)


def test_run_sipp_without_statistics_is_an_error_with_sipps_words(tmp_path: Path) -> None:
    """SIPp exits 1 also when the scenario does not load; then no statistics file exists."""
    run = SippRun(scenario_path("citizen_bad_codec"), "127.0.0.1:5060", scenario_keys("citizen_bad_codec"))
    with pytest.raises(LabError, match="fake sipp says hello"):
        run_sipp(run, tmp_path / "run", sipp=_fake_sipp(tmp_path, 1))


def test_run_sipp_names_the_missing_package(tmp_path: Path) -> None:
    run = SippRun(scenario_path("citizen_bad_codec"), "127.0.0.1:5060", scenario_keys("citizen_bad_codec"))
    with pytest.raises(LabError, match="sip-tester"):
        run_sipp(run, tmp_path / "run", sipp=str(tmp_path / "no-such-sipp"))
