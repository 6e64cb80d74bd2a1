"""A voice message whose recording cannot be transcribed (empty, truncated, unreadable) is not dropped:
when its job is dead-lettered the citizen gets a callback request (asr/lost_messages.py), in the same Redis
transaction, counted in hotline_asr_callbacks_requested_total (the dialer tests' private Redis, task.Clock)."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from asr.jobs import Delivery, JobQueue
from asr.lost_messages import LOST_VOICE_MESSAGE, callback_request
from asr.metrics import AsrMetrics
from asr.worker import TranscriptionWorker

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

JOBS = "t:jobs:transcribe"
CALLBACKS = "t:callback:requests"
VOICE_MESSAGE = {"recording_id": "r1", "path": "/var/spool/asterisk/hotline/messages/r1.wav",
                 "call_id": "1763770875.42", "caller": "13800138000", "recorded_at": "2026-11-20T10:00:00+08:00",
                 "flow": "main", "choices": ["offer=2"]}


def delivery(job) -> Delivery:
    data = job if isinstance(job, str) else json.dumps(job)
    return Delivery(id="1-0", fields={"recording_id": "r1", "data": data}, attempts=3)


def test_a_voice_message_becomes_the_ivr_s_callback_request_for_its_caller():
    request = callback_request(delivery(VOICE_MESSAGE), "ValueError: truncated WAV")
    assert request["call_id"] == "1763770875.42" and request["caller"] == "13800138000"
    assert request["requested_at"] == "2026-11-20T10:00:00+08:00" and request["choices"] == ["offer=2"]
    assert request["reason"] == LOST_VOICE_MESSAGE and request["recording_id"] == "r1"
    assert "truncated" in request["error"]


def test_no_callback_without_a_citizen_to_call():
    assert callback_request(delivery({**VOICE_MESSAGE, "caller": ""}), "x") is None
    assert callback_request(delivery({**VOICE_MESSAGE, "kind": "survey_comment"}), "x") is None
    assert callback_request(delivery("{not json"), "x") is None


class Unreadable:
    def __call__(self, path, should_stop):
        raise ValueError(f"{path}: not a WAV file (4 bytes)")


def worker_over(client, callback_stream):
    clock = task.Clock()
    queue = JobQueue(client, JOBS, "asr", "w1", dead_letter_stream=f"{JOBS}:dead", drafts_stream="t:drafts",
                     draft_key_prefix="t:draft:", callback_stream=callback_stream)
    registry = CollectorRegistry()
    worker = TranscriptionWorker(queue, Unreadable(), object(), clock=clock, run_redis=defer.maybeDeferred,
                                 run_decode=defer.maybeDeferred, metrics=AsrMetrics(registry), max_attempts=1,
                                 read_block_ms=None, backlog_interval=0)
    queue.ensure_group()
    client.xadd(JOBS, {"recording_id": "r1", "data": json.dumps(VOICE_MESSAGE)})
    return worker, registry


def test_an_unreadable_voice_message_is_dead_lettered_and_its_citizen_called_back(dialer_redis):
    worker, registry = worker_over(dialer_redis, CALLBACKS)
    assert defer.ensureDeferred(worker.run_once()).result == "dead_lettered"
    assert dialer_redis.xlen(f"{JOBS}:dead") == 1
    ((_, fields),) = dialer_redis.xrange(CALLBACKS)
    assert fields["call_id"] == "1763770875.42"
    assert json.loads(fields["data"])["caller"] == "13800138000"
    assert registry.get_sample_value("hotline_asr_callbacks_requested_total") == 1


def test_without_a_callback_stream_the_job_is_only_dead_lettered(dialer_redis):
    worker, registry = worker_over(dialer_redis, "")
    assert defer.ensureDeferred(worker.run_once()).result == "dead_lettered"
    assert dialer_redis.xlen(f"{JOBS}:dead") == 1 and not dialer_redis.exists(CALLBACKS)
    assert registry.get_sample_value("hotline_asr_callbacks_requested_total") == 0


def test_the_gateway_s_callback_source_schedules_the_request_like_an_ivr_one(dialer_redis):
    from gateway.callbacks.sources import ivr_request_handler

    from .test_callback_service import NOW, Rig

    worker, _ = worker_over(dialer_redis, CALLBACKS)
    defer.ensureDeferred(worker.run_once())
    ((entry_id, fields),) = dialer_redis.xrange(CALLBACKS)
    rig = Rig(dialer_redis)
    rig.resolve(defer.Deferred.fromCoroutine(ivr_request_handler(rig.service)(entry_id, fields)))
    (job,) = rig.store.claim(NOW, 10, 30)
    assert job.id == "cb-1763770875.42"
