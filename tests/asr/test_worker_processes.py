"""Real `hotline-asr worker` processes (real Vosk, real Redis): SIGKILL mid-job, SIGTERM release, sinks, /metrics."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

JOBS = "hotline:jobs:transcribe"


@pytest.fixture(scope="module")
def long_audio(audio_dir):
    """~16 s of 8 kHz speech, so that a decode is surely in progress when the worker is signalled."""
    path = audio_dir / "long2-8k.wav"
    if not path.exists():
        subprocess.run(["sox", str(audio_dir / "long-8k.wav"), str(audio_dir / "long-8k.wav"), str(path)], check=True)
    return "/long2-8k.wav"


class Worker:
    def __init__(self, name, env):
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asr", "worker", "--consumer", name], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r} in output:\n{''.join(self.lines)}")

    def metrics_port(self) -> int:
        return int(self.wait_for(r"metrics on 127\.0\.0\.1:(\d+)").group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def worker_env(redis_server, model_path, audio_dir, **asr):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update({
        "HOTLINE_REDIS_URL": redis_server,
        "HOTLINE_ASR_MODEL_PATH": model_path,
        "HOTLINE_ASR_RECORDINGS_ROOT": str(audio_dir),
        "HOTLINE_ASR_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({f"HOTLINE_ASR_{k.upper()}": str(v) for k, v in asr.items()})
    return env


def add_job(client, recording_id, path):
    job = {"recording_id": recording_id, "path": path, "call_id": "1763770875.42", "caller": "13800138000",
           "recorded_at": "2026-11-20T10:00:00+08:00"}
    client.xadd(JOBS, {"recording_id": recording_id, "data": json.dumps(job)})


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pending_of(client, consumer) -> int:
    for row in client.xpending_range(JOBS, "asr", min="-", max="+", count=10):
        if row["consumer"] == consumer:
            return 1
    return 0


def test_sigkill_mid_job_then_another_worker_reclaims_and_one_draft_is_stored(
        redis_client, redis_server, model_path, audio_dir, long_audio):
    env = worker_env(redis_server, model_path, audio_dir, reclaim_idle_seconds=3)
    first = Worker("doomed", env)
    try:
        first.wait_for("ASR worker doomed")
        add_job(redis_client, "crash-1", long_audio)
        wait_until(lambda: pending_of(redis_client, "doomed"), 30, "the first worker to take the job")
        time.sleep(1.0)
        assert not redis_client.exists("hotline:draft:crash-1"), "job finished before the kill: test invalid"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    second = Worker("rescuer", env)
    try:
        port = second.metrics_port()
        wait_until(lambda: redis_client.exists("hotline:draft:crash-1"), 120, "the reclaimed job's draft")
        wait_until(lambda: redis_client.xpending(JOBS, "asr")["pending"] == 0, 10, "the ack")
        assert redis_client.xlen("hotline:drafts") == 1
        draft = json.loads(redis_client.get("hotline:draft:crash-1"))
        assert draft["transcript"]["text"].strip()
        assert "13800138000" not in "".join(second.lines)  # the caller's number never reaches the log
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "hotline_asr_jobs_reclaimed_total 1.0" in body
        assert 'hotline_asr_jobs_total{outcome="done"} 1.0' in body
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read() == b"ok\n"
    finally:
        assert second.stop() == 0


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_sigterm_releases_the_job_and_the_next_worker_delivers_to_every_sink(
        redis_client, redis_server, model_path, audio_dir, long_audio, tmp_path):
    env = worker_env(redis_server, model_path, audio_dir, shutdown_grace=0)
    first = Worker("stopping", env)
    try:
        first.wait_for("ASR worker stopping")
        add_job(redis_client, "term-1", long_audio)
        wait_until(lambda: pending_of(redis_client, "stopping"), 30, "the first worker to take the job")
        time.sleep(0.5)
        assert first.stop() == 0
        first.wait_for(r"released: the worker is stopping", timeout=5)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    assert not redis_client.exists("hotline:draft:term-1")

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    jsonl = tmp_path / "drafts.jsonl"
    env = worker_env(redis_server, model_path, audio_dir, reclaim_idle_seconds=600, jsonl_path=jsonl,
                     webhook_url=f"http://127.0.0.1:{server.server_port}/drafts", webhook_token="tok-123")
    second = Worker("next", env)
    try:
        # reclaim_idle is 10 minutes: only the release lets this worker take the job now
        wait_until(lambda: redis_client.exists("hotline:draft:term-1"), 120, "the released job's draft")
        wait_until(lambda: _Receiver.received and jsonl.exists(), 30, "the webhook and JSONL deliveries")
        headers, body = _Receiver.received[0]
        assert body["recording_id"] == "term-1"
        assert headers["Idempotency-Key"] == body["draft_id"]
        assert headers["Authorization"] == "Bearer tok-123"
        assert json.loads(jsonl.read_text().splitlines()[0])["draft_id"] == body["draft_id"]
        assert "tok-123" not in "".join(second.lines)
    finally:
        assert second.stop() == 0
        server.shutdown()
