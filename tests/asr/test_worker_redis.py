"""Worker and job queue against a real Redis (private server, port 6393); time is a task.Clock.

Blocking calls run synchronously here (no reactor): ``run_redis``/``run_decode``
return already-fired Deferreds, so a worker step completes at once unless it
waits on the clock (backoff), which the test then advances.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from asr.engine import Transcript, Word
from asr.jobs import JobQueue, StreamQueue
from asr.metrics import AsrMetrics
from asr.worker import SinkRunner, TranscriptionWorker

JOBS = "hotline:jobs:transcribe"


class StubDrafter:
    """Stands in for gateway.drafting where the draft content does not matter."""

    def draft(self, job, text, confidence, now):
        assert now.tzinfo is not None
        return {"draft_id": f"D-{job['recording_id']}", "recording_id": job["recording_id"],
                "transcript": {"text": text, "confidence": confidence}}


def run_sync(fn):
    return defer.maybeDeferred(fn)


def fake_transcribe(path: Path, should_stop) -> Transcript:
    if not path.exists():
        raise FileNotFoundError(f"recording {path} does not exist")
    return Transcript("가 나", (Word("가", 0.0, 0.5, 0.9), Word("나", 0.5, 1.0, 0.8)), duration=1.0, elapsed=0.5,
                      sample_rate=16000)


def make_queue(client, consumer="w1"):
    return JobQueue(client, JOBS, "asr", consumer, dead_letter_stream=f"{JOBS}:dead",
                    drafts_stream="hotline:drafts", draft_key_prefix="hotline:draft:", draft_ttl=3600)


def make_worker(client, clock, *, consumer="w1", transcribe=fake_transcribe, drafter=None, root="", registry=None,
                max_attempts=3, reclaim_idle=60.0, run_redis=run_sync):
    registry = registry or CollectorRegistry()
    worker = TranscriptionWorker(
        make_queue(client, consumer), transcribe, drafter or StubDrafter(), clock=clock, run_redis=run_redis,
        run_decode=run_sync, metrics=AsrMetrics(registry), recordings_root=root, max_attempts=max_attempts,
        reclaim_idle=reclaim_idle, read_block_ms=None,
    )
    worker.queue.ensure_group()
    return worker, registry


def add_job(client, recording_id, path, **extra):
    """The job exactly as gateway.storage.flow_store.voice_message writes it."""
    job = {"recording_id": recording_id, "path": path, "call_id": "1763770875.42", "caller": "13800138000",
           "recorded_at": "2026-11-20T10:00:00+08:00", **extra}
    return client.xadd(JOBS, {"recording_id": recording_id, "data": json.dumps(job, ensure_ascii=False)})


def step(worker):
    d = defer.ensureDeferred(worker.run_once())
    results = []
    d.addBoth(results.append)
    return results


def run_step(worker):
    results = step(worker)
    assert results, "the worker step waited on something"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def recording(tmp_path):
    """A recording at /var/spool/asterisk/recording/… inside an Asterisk root."""
    path = tmp_path / "root" / "var/spool/asterisk/recording/msg-1.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"placeholder")
    return tmp_path / "root", "/var/spool/asterisk/recording/msg-1.wav"


def test_job_is_transcribed_drafted_stored_and_acked(redis_client, recording):
    root, path = recording
    worker, registry = make_worker(redis_client, task.Clock(), root=str(root))
    add_job(redis_client, "msg-1", path)
    assert run_step(worker) == "done"
    draft = json.loads(redis_client.get("hotline:draft:msg-1"))
    assert draft["draft_id"] == "D-msg-1" and draft["transcript"]["text"] == "가 나"
    assert [w["word"] for w in draft["asr"]["words"]] == ["가", "나"]
    assert redis_client.ttl("hotline:draft:msg-1") > 0
    entries = redis_client.xrange("hotline:drafts")
    assert len(entries) == 1 and entries[0][1]["draft_id"] == "D-msg-1"
    assert worker.queue.pending_count() == 0
    assert sample(registry, "hotline_asr_jobs_total", outcome="done") == 1
    assert sample(registry, "hotline_asr_transcription_duration_seconds_count") == 1


def test_same_recording_twice_gives_one_draft(redis_client, recording):
    root, path = recording
    worker, registry = make_worker(redis_client, task.Clock(), root=str(root))
    add_job(redis_client, "msg-1", path)
    add_job(redis_client, "msg-1", path)
    assert run_step(worker) == "done"
    assert run_step(worker) == "duplicate"
    assert redis_client.xlen("hotline:drafts") == 1
    assert worker.queue.pending_count() == 0


def test_store_script_acks_but_does_not_overwrite_an_existing_draft(redis_client):
    queue = make_queue(redis_client)
    queue.ensure_group()
    add_job(redis_client, "r1", "/x.wav")
    add_job(redis_client, "r1", "/x.wav")
    first, second = queue.read(None), queue.read(None)
    assert queue.store_and_ack(first.id, "r1", {"draft_id": "D-r1", "n": 1}) is True
    assert queue.store_and_ack(second.id, "r1", {"draft_id": "D-r1", "n": 2}) is False
    assert json.loads(redis_client.get("hotline:draft:r1"))["n"] == 1
    assert redis_client.xlen("hotline:drafts") == 1 and queue.pending_count() == 0


def test_missing_recording_is_retried_then_dead_lettered_with_the_reason(redis_client, tmp_path):
    clock = task.Clock()
    worker, registry = make_worker(redis_client, clock, root=str(tmp_path), reclaim_idle=0.001, max_attempts=3)
    add_job(redis_client, "gone", "/var/spool/asterisk/recording/gone.wav")
    outcomes = [run_step(worker)]
    for _ in range(2):
        time.sleep(0.01)  # Redis measures the idle time (real milliseconds)
        clock.advance(1)
        outcomes.append(run_step(worker))
    assert outcomes == ["failed", "failed", "dead_lettered"]
    dead = redis_client.xrange(f"{JOBS}:dead")
    assert len(dead) == 1
    assert "does not exist" in dead[0][1]["reason"] and dead[0][1]["attempts"] == "3"
    assert dead[0][1]["recording_id"] == "gone" and json.loads(dead[0][1]["data"])["path"].endswith("gone.wav")
    assert worker.queue.pending_count() == 0 and not redis_client.exists("hotline:draft:gone")
    assert sample(registry, "hotline_asr_jobs_total", outcome="failed") == 2
    assert sample(registry, "hotline_asr_jobs_total", outcome="dead_lettered") == 1
    assert sample(registry, "hotline_asr_jobs_reclaimed_total") == 2


def test_bad_job_json_goes_to_the_dead_letter_stream(redis_client):
    worker, registry = make_worker(redis_client, task.Clock(), max_attempts=1)
    redis_client.xadd(JOBS, {"recording_id": "x", "data": "{not json"})
    assert run_step(worker) == "dead_lettered"
    (entry,) = redis_client.xrange(f"{JOBS}:dead")
    assert "not JSON" in entry[1]["reason"]


def test_path_escaping_the_recordings_root_is_refused(redis_client, tmp_path):
    worker, _ = make_worker(redis_client, task.Clock(), root=str(tmp_path), max_attempts=1)
    add_job(redis_client, "evil", "/var/spool/../../etc/passwd")
    assert run_step(worker) == "dead_lettered"
    assert "'..'" in redis_client.xrange(f"{JOBS}:dead")[0][1]["reason"]


def test_job_left_by_a_dead_consumer_is_reclaimed_and_completed_once(redis_client, recording):
    root, path = recording
    dead_consumer = make_queue(redis_client, "crashed")
    dead_consumer.ensure_group()
    add_job(redis_client, "msg-1", path)
    assert dead_consumer.read(None) is not None  # taken, never acked: its process died
    clock = task.Clock()
    worker, registry = make_worker(redis_client, clock, consumer="w2", root=str(root), reclaim_idle=0.001)
    time.sleep(0.01)
    assert run_step(worker) == "done"
    assert sample(registry, "hotline_asr_jobs_reclaimed_total") == 1
    assert redis_client.xlen("hotline:drafts") == 1 and worker.queue.pending_count() == 0


def test_not_yet_idle_job_of_another_consumer_is_left_alone(redis_client, recording):
    root, path = recording
    busy = make_queue(redis_client, "busy")
    busy.ensure_group()
    add_job(redis_client, "msg-1", path)
    busy.read(None)
    worker, _ = make_worker(redis_client, task.Clock(), consumer="w2", root=str(root), reclaim_idle=60)
    assert run_step(worker) is None
    assert not redis_client.exists("hotline:draft:msg-1")


def test_released_job_is_reclaimable_at_once(redis_client):
    """On SIGTERM a worker releases its job: another one takes it without waiting for the min-idle."""
    queue = make_queue(redis_client, "stopping")
    queue.ensure_group()
    add_job(redis_client, "r", "/r.wav")
    delivery = queue.read(None)
    other = make_queue(redis_client, "other")
    assert other.reclaim(60) is None
    queue.release(delivery.id)
    taken = other.reclaim(60)
    assert taken is not None and taken.id == delivery.id and taken.attempts == 2


def test_redis_outage_is_retried_with_backoff_and_the_job_done_once(redis_client, recording):
    root, path = recording
    add_job(redis_client, "msg-1", path)
    failures = {"left": 3}

    def flaky(fn):
        if failures["left"] > 0:
            failures["left"] -= 1
            return defer.fail(redis.ConnectionError("Connection refused"))
        return defer.maybeDeferred(fn)

    clock = task.Clock()
    worker, registry = make_worker(redis_client, clock, root=str(root), run_redis=flaky)
    results = step(worker)
    assert results == []  # waiting on the backoff, not spinning
    clock.pump([0.5, 1.0, 2.0])
    assert results == ["done"]
    assert sample(registry, "hotline_asr_redis_errors_total", operation="reclaim") == 3
    assert redis_client.xlen("hotline:drafts") == 1 and worker.queue.pending_count() == 0


def test_real_vosk_and_real_drafter_end_to_end(redis_client, engine, audio_dir):
    """A real recording through the real engine and gateway.drafting gives a stored draft."""
    drafting = pytest.importorskip("gateway.drafting")
    drafter = drafting.load_drafter(taxonomy_path=None, gazetteer_path=None, low_confidence=0.6)
    worker, registry = make_worker(
        redis_client, task.Clock(), drafter=drafter,
        transcribe=lambda p, stop: engine.transcribe_file(p, should_stop=stop), root=str(audio_dir))
    add_job(redis_client, "greeting", "/greeting-8k.wav")
    assert run_step(worker) == "done"
    draft = json.loads(redis_client.get("hotline:draft:greeting"))
    assert draft["recording_id"] == "greeting" and draft["draft_id"]
    assert draft["transcript"]["text"].strip()
    assert draft["asr"]["sample_rate"] == 16000 and draft["asr"]["words"]
    assert 0 < sample(registry, "hotline_asr_audio_seconds_total") < 5


# -- sinks over the drafts stream ---------------------------------------------------------------------------
def test_failing_webhook_does_not_block_jsonl_and_is_redelivered_later(redis_client, recording, tmp_path):
    root, path = recording
    worker, registry = make_worker(redis_client, task.Clock(), root=str(root))
    add_job(redis_client, "msg-1", path)
    assert run_step(worker) == "done"  # stored and acked before any sink ran

    from asr.sinks import JsonlSink

    metrics = worker.metrics
    jsonl = JsonlSink(str(tmp_path / "drafts.jsonl"))
    delivered = []
    up = {"ok": False}

    async def webhook(draft):
        if not up["ok"]:
            raise ConnectionRefusedError("platform down")
        delivered.append(draft["draft_id"])

    async def write(draft):
        jsonl.write(draft)

    clock = task.Clock()
    hook = SinkRunner(StreamQueue(redis_client, "hotline:drafts", "webhook", "w1"), webhook, "webhook", clock=clock,
                      run_redis=run_sync, metrics=metrics, redeliver_after=0.001, read_block_ms=None)
    lines = SinkRunner(StreamQueue(redis_client, "hotline:drafts", "jsonl", "w1"), write, "jsonl", clock=clock,
                       run_redis=run_sync, metrics=metrics, redeliver_after=0.001, read_block_ms=None)
    for runner in (hook, lines):
        runner.queue.ensure_group()
    assert run_step(hook) == "failed"
    assert run_step(lines) == "delivered"
    assert [json.loads(line)["draft_id"] for line in (tmp_path / "drafts.jsonl").read_text().splitlines()] == [
        "D-msg-1"]
    assert hook.queue.pending_count() == 1  # parked on the outbox, not lost
    assert sample(registry, "hotline_asr_sink_failures_total", sink="webhook") == 1
    up["ok"] = True
    time.sleep(0.01)
    clock.advance(1)
    assert run_step(hook) == "delivered"
    assert delivered == ["D-msg-1"] and hook.queue.pending_count() == 0
    assert sample(registry, "hotline_asr_sink_deliveries_total", sink="jsonl") == 1


def test_stopping_sink_abandons_a_retrying_delivery_and_leaves_it_pending(redis_client, recording):
    """A webhook stuck in its backoff must not hold the process's shutdown; the draft stays on the outbox."""
    root, path = recording
    worker, _ = make_worker(redis_client, task.Clock(), root=str(root))
    add_job(redis_client, "msg-1", path)
    assert run_step(worker) == "done"
    clock = task.Clock()

    async def never(draft):
        await task.deferLater(clock, 3600, lambda: None)

    hook = SinkRunner(StreamQueue(redis_client, "hotline:drafts", "webhook", "w1"), never, "webhook", clock=clock,
                      run_redis=run_sync, metrics=worker.metrics, redeliver_after=300, read_block_ms=None)
    hook.start()
    stopped = []
    hook.stop(patience=2.0).addBoth(stopped.append)
    assert stopped == []
    clock.advance(2.0)
    assert stopped == [None]
    assert hook.queue.pending_count() == 1


class HeldDecode:
    """run_decode whose result the test releases: the decode 'runs' until ``finish()``."""

    def __init__(self):
        self.pending = []

    def __call__(self, fn):
        d = defer.Deferred()
        self.pending.append((fn, d))
        return d

    def finish(self):
        fn, d = self.pending.pop(0)
        try:
            d.callback(fn())
        except Exception as exc:  # handed to the worker as the decode's failure
            d.errback(exc)


def stoppable_transcribe(path, should_stop):
    from asr.engine import Cancelled

    if should_stop():
        raise Cancelled()
    return fake_transcribe(path, should_stop)


def _held_worker(redis_client, clock, root, grace):
    held = HeldDecode()
    worker, registry = make_worker(redis_client, clock, transcribe=stoppable_transcribe, root=str(root))
    worker._run_decode = held
    worker.shutdown_grace = grace
    return worker, registry, held


def test_stop_lets_the_current_job_finish_within_the_grace(redis_client, recording):
    root, path = recording
    clock = task.Clock()
    worker, registry, held = _held_worker(redis_client, clock, root, grace=20)
    add_job(redis_client, "msg-1", path)
    worker.start()
    assert worker.current is not None and held.pending
    stopped = []
    worker.stop().addBoth(stopped.append)
    clock.advance(5)
    assert stopped == []
    held.finish()
    assert len(stopped) == 1
    assert redis_client.exists("hotline:draft:msg-1") and worker.queue.pending_count() == 0


def test_stop_releases_the_current_job_after_the_grace(redis_client, recording):
    root, path = recording
    clock = task.Clock()
    worker, registry, held = _held_worker(redis_client, clock, root, grace=20)
    add_job(redis_client, "msg-1", path)
    worker.start()
    stopped = []
    worker.stop().addBoth(stopped.append)
    clock.advance(20)
    held.finish()  # the decoder sees the stop request at its next chunk
    assert len(stopped) == 1
    assert not redis_client.exists("hotline:draft:msg-1")
    assert sample(registry, "hotline_asr_jobs_total", outcome="released") == 1
    taker = make_queue(redis_client, "next")
    assert taker.reclaim(60) is not None  # released: no need to wait for the min-idle
