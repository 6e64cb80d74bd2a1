"""The transcription backlog gauges (hotline_asr_jobs_backlog, hotline_asr_oldest_job_age_seconds): read from the
job stream's consumer group in the Redis thread on the worker's own timer (task.Clock, the dialer tests' private
Redis), fresh while a recording is decoded; a Redis failure is counted, never stops the timer or the worker."""
from __future__ import annotations

import json

import pytest
import redis
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from asr.engine import Transcript
from asr.jobs import Backlog, JobQueue
from asr.metrics import AsrMetrics
from asr.worker import TranscriptionWorker

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

JOBS = "t:jobs:transcribe"
#: the reactor's time in these tests; jobs get stream ids of their own time (XADD with an explicit id)
NOW = 1_763_770_000.0


def sync(fn):
    return defer.maybeDeferred(fn)


class Drafter:
    def draft(self, job, text, confidence, now):
        return {"draft_id": f"d-{job['recording_id']}", "text": text}


class Engine:
    def __call__(self, path, should_stop):
        return Transcript("路灯 不 亮", (), duration=3.0, elapsed=0.3, sample_rate=16000)


class Setup:
    def __init__(self, client, *, run_redis=sync, run_decode=sync, interval=15.0):
        self.client = client
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.queue = JobQueue(client, JOBS, "asr", "w1", dead_letter_stream=f"{JOBS}:dead",
                              drafts_stream="t:drafts", draft_key_prefix="t:draft:")
        self.registry = CollectorRegistry()
        self.worker = TranscriptionWorker(
            self.queue, Engine(), Drafter(), clock=self.clock, run_redis=run_redis, run_decode=run_decode,
            metrics=AsrMetrics(self.registry), read_block_ms=None, backlog_interval=interval)

    def enqueue(self, recording_id: str, at: float) -> str:
        job = {"recording_id": recording_id, "path": f"/var/spool/asterisk/hotline/messages/{recording_id}.wav"}
        return self.client.xadd(JOBS, {"recording_id": recording_id, "data": json.dumps(job)},
                                id=f"{int(at * 1000)}-0")

    def refresh(self):
        d = defer.ensureDeferred(self.worker.refresh_backlog())
        assert d.called
        return d.result

    def gauge(self, name, labels=None):
        return self.registry.get_sample_value(name, labels or {})


def test_no_stream_and_no_group_is_an_empty_backlog(dialer_redis):
    s = Setup(dialer_redis)
    assert s.queue.backlog() == Backlog(0, 0)
    s.refresh()
    assert s.gauge("hotline_asr_jobs_backlog") == 0
    assert s.gauge("hotline_asr_oldest_job_age_seconds") == 0


def test_jobs_queued_before_any_worker_created_the_group_are_the_backlog(dialer_redis):
    s = Setup(dialer_redis)
    first = s.enqueue("r1", NOW - 120)
    s.enqueue("r2", NOW - 30)
    assert s.queue.backlog() == Backlog(2, 0, first)
    s.refresh()
    assert s.gauge("hotline_asr_jobs_backlog") == 2
    assert s.gauge("hotline_asr_oldest_job_age_seconds") == 120


def test_waiting_and_pending_jobs_count_and_the_oldest_unfinished_one_gives_the_age(dialer_redis):
    """A job delivered and not acked (being decoded, or failed) is older than the ones still waiting."""
    s = Setup(dialer_redis)
    s.queue.ensure_group()
    delivered = s.enqueue("r1", NOW - 600)
    s.enqueue("r2", NOW - 60)
    s.enqueue("r3", NOW - 10)
    assert s.queue.read(block_ms=None).id == delivered  # taken, not acked
    assert s.queue.backlog() == Backlog(2, 1, delivered)
    s.refresh()
    assert s.gauge("hotline_asr_jobs_backlog") == 3
    assert s.gauge("hotline_asr_oldest_job_age_seconds") == 600


def test_finished_jobs_leave_the_backlog(dialer_redis):
    s = Setup(dialer_redis)
    s.queue.ensure_group()
    s.enqueue("r1", NOW - 300)
    late = s.enqueue("r2", NOW - 20)
    assert defer.ensureDeferred(s.worker.run_once()).result == "done"
    assert s.queue.backlog() == Backlog(1, 0, late)
    assert defer.ensureDeferred(s.worker.run_once()).result == "done"
    s.refresh()
    assert s.queue.backlog() == Backlog(0, 0)
    assert s.gauge("hotline_asr_jobs_backlog") == 0
    assert s.gauge("hotline_asr_oldest_job_age_seconds") == 0


def test_undelivered_jobs_are_counted_when_redis_gives_no_lag(dialer_redis):
    """An entry deleted from the stream (XDEL) makes the group's lag unknown: the entries are counted."""
    s = Setup(dialer_redis)
    s.queue.ensure_group()
    taken = s.enqueue("r1", NOW - 50)
    gone = s.enqueue("r2", NOW - 40)
    assert s.queue.read(block_ms=None).id == taken
    s.enqueue("r3", NOW - 30)
    s.enqueue("r4", NOW - 20)
    dialer_redis.xdel(JOBS, gone)
    [info] = dialer_redis.xinfo_groups(JOBS)
    assert info["lag"] is None
    assert s.queue.backlog() == Backlog(2, 1, taken)  # r3 and r4 waiting, r1 pending


def test_dead_lettered_jobs_leave_the_backlog(dialer_redis):
    s = Setup(dialer_redis)
    s.queue.ensure_group()
    dialer_redis.xadd(JOBS, {"recording_id": "bad", "data": "{oops"}, id=f"{int((NOW - 5) * 1000)}-0")
    s.worker.max_attempts = 1
    assert defer.ensureDeferred(s.worker.run_once()).result == "dead_lettered"
    assert s.queue.backlog() == Backlog(0, 0)


class Decoding:
    """run_decode that never finishes by itself: the test fires the Deferreds."""

    def __init__(self):
        self.calls: list[defer.Deferred] = []

    def __call__(self, fn):
        self.calls.append(defer.Deferred())
        return self.calls[-1]


def test_the_backlog_is_read_on_the_workers_timer_also_while_a_recording_is_decoded(dialer_redis):
    """start() reads at once and every ``backlog_interval`` s; a decode in progress does not hold the reading."""
    decoding = Decoding()
    s = Setup(dialer_redis, run_decode=decoding, interval=15.0)
    s.enqueue("r1", NOW - 40)
    s.worker.start()
    assert len(decoding.calls) == 1 and s.worker.current is not None  # r1 taken, being decoded
    assert s.gauge("hotline_asr_jobs_backlog") == 1  # r1 pending
    r2 = s.enqueue("r2", NOW + 5)
    s.clock.advance(15)
    assert s.gauge("hotline_asr_jobs_backlog") == 2  # r1 pending (decoding), r2 waiting
    assert s.gauge("hotline_asr_oldest_job_age_seconds") == pytest.approx(55)
    stopped = s.worker.stop()
    decoding.calls[0].callback(Transcript("路灯", (), duration=1.0, elapsed=0.1, sample_rate=16000))
    assert stopped.called
    assert s.queue.backlog() == Backlog(1, 0, r2)  # r1 done, r2 left for the other workers
    s.clock.advance(30)
    assert s.gauge("hotline_asr_jobs_backlog") == 2  # the timer stopped with the worker


def test_a_redis_failure_is_counted_and_the_timer_goes_on(dialer_redis):
    """Redis away at one reading: the gauges keep their value, the failure is counted, the next reading works."""
    failures = [redis.ConnectionError("Connection refused")]
    s = None

    def run_redis(fn):
        if fn == s.queue.backlog and failures:
            return defer.fail(failures.pop())
        return defer.maybeDeferred(fn)

    s = Setup(dialer_redis, run_redis=run_redis, run_decode=Decoding())
    s.enqueue("r1", NOW - 90)
    s.worker.start()
    assert s.gauge("hotline_asr_redis_errors_total", {"operation": "backlog"}) == 1
    assert s.gauge("hotline_asr_jobs_backlog") == 0
    s.clock.advance(15)
    assert s.gauge("hotline_asr_jobs_backlog") == 1
    assert s.gauge("hotline_asr_oldest_job_age_seconds") == pytest.approx(105)
    s.worker.stop()


def test_an_unexpected_error_reading_the_backlog_is_logged_not_raised(dialer_redis):
    s = Setup(dialer_redis, run_redis=lambda fn: defer.fail(KeyError("last-delivered-id")))
    s.refresh()  # no exception: the timer would have stopped
    assert s.gauge("hotline_asr_jobs_backlog") == 0
