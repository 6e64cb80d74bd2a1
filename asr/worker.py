"""The transcription worker service (Twisted): jobs → Vosk → draft → Redis; sinks from the outbox.

One decode at a time per process (Vosk is CPU-bound; scale by starting more
worker processes, on any machine that sees Redis and the recordings). Every
Redis call and the decoding run in threads; the reactor only schedules.

Job life: XREADGROUP (or XAUTOCLAIM of a job idle ≥ reclaim_idle_seconds) →
skip if ``hotline:draft:<recording_id>`` exists (ack) → decode (the job's idle
time is reset every reclaim_idle/3 s meanwhile, so a long recording is not
stolen) → draft → one Lua step: SET NX the record, XADD hotline:drafts, XACK.
A failure leaves the job pending (retried after reclaim_idle_seconds); at
``max_attempts`` deliveries it goes to the dead-letter stream with its reason.
Every ``backlog_interval`` s (own timer, so also while a recording is decoded) the job
group's unfinished jobs — not yet delivered, or delivered and not acked — and the age of
the oldest one are read into ``hotline_asr_jobs_backlog`` and
``hotline_asr_oldest_job_age_seconds`` (the same for every worker: alert on ``max()``).

Survey voice comments (job ``kind=survey_comment``, ``order_id``; written by the survey
flow, ``gateway/flows/survey_nodes.py``) are not citizen requests and make no draft: the
masked transcript and its confidence are stored on the survey's order
(``SurveyStore.attach_comment``: onto the result, or as a ``comment`` update of the
results webhook and the reopen stream), and the job is acked in that same Lua step.
Skipped when the order already has this recording's transcript (redelivery); an unknown
order, or one whose comment is another recording, is dead-lettered at once.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import redis
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.masking import mask_text

from .engine import Cancelled, Transcript
from .jobs import Delivery, JobError, JobQueue, StreamQueue, decode_job
from .lost_messages import callback_request
from .metrics import AsrMetrics
from .sinks import SinkError, backoff_delay

__all__ = ["SURVEY_COMMENT", "SinkRunner", "TranscriptionWorker", "consumer_name", "resolve_recording"]

log = Logger(namespace="asr.worker")

RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]

#: the job ``kind`` of a survey's voice comment (gateway/flows/survey_nodes.py)
SURVEY_COMMENT = "survey_comment"


def consumer_name() -> str:
    """Unique per process and machine: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def resolve_recording(root: str, path: str) -> Path:
    """The local path of a recording named by its path inside Asterisk's filesystem.

    ``root`` is prepended (the lab's chroot, a shared volume's mount point);
    ``..`` components are refused so a job cannot point outside it.
    """
    pure = PurePosixPath(path)
    if ".." in pure.parts:
        raise JobError(f"recording path {path!r} contains '..'")
    if not root:
        return Path(pure)
    return Path(root) / pure.relative_to(pure.anchor)


class _StreamLoop:
    """Shared loop machinery: Redis calls retried with backoff, reclaim-or-read, clean stop."""

    name = "loop"

    def __init__(self, queue: StreamQueue, *, clock: Any, run_redis: RunBlocking, metrics: AsrMetrics,
                 reclaim_idle: float, read_block_ms: int | None = 1000) -> None:
        self.queue = queue
        self.clock = clock
        self._run_redis = run_redis
        self.metrics = metrics
        self.reclaim_idle = reclaim_idle
        self.read_block_ms = read_block_ms
        self.stopping = False
        self._next_reclaim = 0.0
        self._loop: defer.Deferred | None = None

    async def redis(self, what: str, fn: Callable[[], Any], *, until_stopped: bool = False) -> Any:
        """``fn`` in the Redis thread, retried with backoff while Redis is away.

        With ``until_stopped`` the retrying ends (``_Stop``) once the loop is stopping.
        """
        attempt = 0
        while True:
            try:
                return await self._run_redis(fn)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._run_redis(self.queue.ensure_group)  # the stream was deleted: recreate
            except redis.RedisError as exc:
                attempt += 1
                self.metrics.redis_errors.labels(operation=what).inc()
                delay = backoff_delay(attempt, 0.5, 30.0)
                log.warn("{loop}: Redis {what} failed ({error}); retry in {delay:.1f} s",
                         loop=self.name, what=what, error=f"{type(exc).__name__}: {exc}", delay=delay)
                if until_stopped and self.stopping:
                    raise _Stop() from None
                await task.deferLater(self.clock, delay, lambda: None)
                if until_stopped and self.stopping:
                    raise _Stop() from None

    async def next_delivery(self) -> Delivery | None:
        now = self.clock.seconds()
        if now >= self._next_reclaim:
            delivery = await self.redis("reclaim", lambda: self.queue.reclaim(self.reclaim_idle), until_stopped=True)
            if delivery is not None:
                return delivery  # look again at once: there may be more
            self._next_reclaim = now + min(max(self.reclaim_idle / 4, 0.5), 15.0)
        return await self.redis("read", lambda: self.queue.read(self.read_block_ms), until_stopped=True)

    async def handle(self, delivery: Delivery) -> str:
        raise NotImplementedError

    async def run_once(self) -> str | None:
        """Take one delivery (if any) and handle it; returns the outcome (None: nothing to do)."""
        delivery = await self.next_delivery()
        if delivery is None:
            return None
        if self.stopping:  # arrived while we were asked to stop: hand it straight back
            await self.redis("release", lambda: self.queue.release(delivery.id))
            return "released"
        return await self.handle(delivery)

    async def _run(self) -> None:
        await self.redis("ensure_group", self.queue.ensure_group, until_stopped=True)
        while not self.stopping:
            try:
                outcome = await self.run_once()
                if outcome is None and self.read_block_ms is None:
                    await task.deferLater(self.clock, 0.2, lambda: None)
            except _Stop:
                break
            except Exception:  # noqa: BLE001 — keep serving; the failure is logged with its traceback
                log.failure("{loop}: unexpected error; continuing in 1 s", loop=self.name)
                await task.deferLater(self.clock, 1.0, lambda: None)

    def start(self) -> defer.Deferred:
        async def guarded() -> None:
            try:
                await self._run()
            except _Stop:
                pass

        self._loop = defer.ensureDeferred(guarded())
        return self._loop

    def stop(self) -> defer.Deferred:
        self.stopping = True
        return self._loop if self._loop is not None else defer.succeed(None)


class _Stop(Exception):
    pass


class TranscriptionWorker(_StreamLoop):
    name = "asr-worker"

    def __init__(self, queue: JobQueue, transcribe: Callable[[Path, Callable[[], bool]], Transcript], drafter: Any,
                 *, clock: Any, run_redis: RunBlocking, run_decode: RunBlocking, metrics: AsrMetrics,
                 recordings_root: str = "", max_attempts: int = 3, reclaim_idle: float = 60.0,
                 timezone: str = "Asia/Shanghai", shutdown_grace: float = 20.0,
                 read_block_ms: int | None = 1000, model_name: str = "",
                 on_stored: Callable[[dict[str, Any]], None] | None = None, comments: Any = None,
                 backlog_interval: float = 15.0) -> None:
        super().__init__(queue, clock=clock, run_redis=run_redis, metrics=metrics, reclaim_idle=reclaim_idle,
                         read_block_ms=read_block_ms)
        self.jobs: JobQueue = queue
        self._transcribe = transcribe
        self._drafter = drafter
        self._run_decode = run_decode
        self.recordings_root = recordings_root
        self.max_attempts = max_attempts
        self.timezone = ZoneInfo(timezone)
        self.shutdown_grace = shutdown_grace
        self.model_name = model_name
        self._on_stored = on_stored
        #: the survey store (``attach_comment``, ``comment_transcribed``) for survey comments; None = refused
        self._comments = comments
        self._cancel = False
        self.current: str | None = None
        #: seconds between reads of the job stream's backlog into the gauges (0: never)
        self.backlog_interval = backlog_interval
        self._backlog_loop: task.LoopingCall | None = None

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.seconds(), self.timezone)

    async def _fail(self, delivery: Delivery, reason: str, recording_id: str = "") -> str:
        if delivery.attempts >= self.max_attempts:
            callback = callback_request(delivery, reason)  # a lost voice message: the citizen is called back
            await self.redis("dead_letter", lambda: self.jobs.dead_letter(delivery, reason, callback))
            self.metrics.jobs.labels(outcome="dead_lettered").inc()
            if callback is not None and self.jobs.callback_stream:
                self.metrics.callbacks_requested.inc()
            log.error("Job {job_id} ({recording_id}) dead-lettered after {attempts} attempt(s): {reason}",
                      job_id=delivery.id, recording_id=recording_id, attempts=delivery.attempts, reason=reason)
            return "dead_lettered"
        await self.redis("record_error", lambda: self.jobs.record_error(delivery.id, reason))
        self.metrics.jobs.labels(outcome="failed").inc()
        log.warn("Job {job_id} ({recording_id}) failed, attempt {attempts}/{max_attempts}, retried after "
                 "{idle} s: {reason}", job_id=delivery.id, recording_id=recording_id, attempts=delivery.attempts,
                 max_attempts=self.max_attempts, idle=self.reclaim_idle, reason=reason)
        return "failed"

    async def handle(self, delivery: Delivery) -> str:
        if delivery.reclaimed:
            self.metrics.reclaimed.inc()
        try:
            job = decode_job(delivery.fields)
        except JobError as exc:
            return await self._fail(delivery, f"bad job: {exc}")
        recording_id = job["recording_id"]
        if delivery.attempts > self.max_attempts:  # it kept killing its workers (or they were stopped)
            last = await self.redis("last_error", lambda: self.jobs.last_error(delivery.id))
            return await self._fail(delivery, last or f"delivered {delivery.attempts} times without finishing",
                                    recording_id)
        if job.get("kind") == SURVEY_COMMENT:
            return await self._survey_comment(delivery, job)
        if await self.redis("exists", lambda: self.jobs.already_done(recording_id)):
            return await self._ack_duplicate(delivery, f"draft for {recording_id} already stored")
        transcript = await self._decode_job(delivery, job, recording_id)
        if isinstance(transcript, str):
            return transcript
        try:
            draft = self._drafter.draft(job, transcript.text, transcript.confidence, self.now())
        except Exception as exc:  # noqa: BLE001 — a drafting bug fails this job, not the worker
            return await self._fail(delivery, f"drafting failed: {type(exc).__name__}: {exc}", recording_id)
        draft = dict(draft)
        draft.setdefault("asr", {**transcript.as_dict(), "model": self.model_name})
        stored = await self.redis("store", lambda: self.jobs.store_and_ack(delivery.id, recording_id, draft))
        outcome = "done" if stored else "duplicate"
        self.metrics.jobs.labels(outcome=outcome).inc()
        log.info("Job {job_id}: {recording_id} transcribed ({audio:.1f} s audio, rtf {rtf:.2f}, confidence "
                 "{confidence:.2f}); draft {draft_id} {how}", job_id=delivery.id, recording_id=recording_id,
                 audio=transcript.duration, rtf=transcript.real_time_factor, confidence=transcript.confidence,
                 draft_id=draft.get("draft_id"), how="stored" if stored else "was already stored")
        if stored and self._on_stored is not None:
            self._on_stored(draft)
        return outcome

    def mask(self, text: str) -> str:
        """The transcript as stored for a survey comment: numerals normalised, personal numbers masked."""
        normalize = getattr(self._drafter, "normalize", None)
        return normalize(text).masked if normalize is not None else mask_text(text)

    async def _survey_comment(self, delivery: Delivery, job: dict[str, Any]) -> str:
        recording_id = job["recording_id"]
        order_id = str(job.get("order_id") or delivery.fields.get("order_id") or "")
        if not order_id:
            return await self._fail(delivery, "bad job: survey comment without order_id", recording_id)
        comments = self._comments
        if comments is None:
            return await self._fail(delivery, "survey comment but this worker has no survey store", recording_id)
        if await self.redis("exists", lambda: comments.comment_transcribed(order_id, recording_id)):
            return await self._ack_duplicate(delivery, f"comment {recording_id} of survey order {order_id} "
                                                       "already stored")
        transcript = await self._decode_job(delivery, job, recording_id)
        if isinstance(transcript, str):
            return transcript
        try:
            text = self.mask(transcript.text)
        except Exception as exc:  # noqa: BLE001 — a normalisation bug fails this job, not the worker
            return await self._fail(delivery, f"masking failed: {type(exc).__name__}: {exc}", recording_id)
        now = self.clock.seconds()
        result = await self.redis("store", lambda: self.jobs.store_comment_and_ack(
            delivery.id, comments, order_id, recording_id, text, transcript.confidence, now))
        if result in ("unknown", "other"):
            reason = ("survey order unknown (expired, or another key prefix)" if result == "unknown"
                      else "the survey order has another comment recording")
            await self.redis("dead_letter", lambda: self.jobs.dead_letter(delivery, f"{reason}: {order_id}"))
            self.metrics.jobs.labels(outcome="dead_lettered").inc()
            log.error("Job {job_id}: comment {recording_id} dead-lettered: {reason} ({order})", job_id=delivery.id,
                      recording_id=recording_id, reason=reason, order=order_id)
            return "dead_lettered"
        outcome = "duplicate" if result == "duplicate" else "done"
        self.metrics.jobs.labels(outcome=outcome).inc()
        log.info("Job {job_id}: survey comment {recording_id} transcribed ({audio:.1f} s audio, confidence "
                 "{confidence:.2f}); order {order}: {result}", job_id=delivery.id, recording_id=recording_id,
                 audio=transcript.duration, confidence=transcript.confidence, order=order_id, result=result)
        return outcome

    async def _ack_duplicate(self, delivery: Delivery, what: str) -> str:
        """A redelivered job whose result is already stored: acknowledge it, store nothing."""
        await self.redis("ack", lambda: self.jobs.ack_done(delivery.id))
        self.metrics.jobs.labels(outcome="duplicate").inc()
        log.info("Job {job_id}: {what}; acked", job_id=delivery.id, what=what)
        return "duplicate"

    async def _decode_job(self, delivery: Delivery, job: dict[str, Any], recording_id: str) -> Transcript | str:
        """The job's recording transcribed, or the outcome of a job that could not be (failed, released)."""
        try:
            path = resolve_recording(self.recordings_root, job["path"])
        except JobError as exc:
            return await self._fail(delivery, f"bad job: {exc}", recording_id)
        return await self._decode(delivery, path, recording_id)

    async def _decode(self, delivery: Delivery, path: Path, recording_id: str) -> Transcript | str:
        heartbeat = task.LoopingCall(self._touch, delivery.id)
        heartbeat.clock = self.clock
        heartbeat.start(max(self.reclaim_idle / 3, 0.1), now=False)
        self.current = delivery.id
        self.metrics.busy.set(1)
        try:
            transcript = await self._run_decode(lambda: self._transcribe(path, lambda: self._cancel))
        except Cancelled:
            await self.redis("release", lambda: self.jobs.release(delivery.id))
            self.metrics.jobs.labels(outcome="released").inc()
            log.info("Job {job_id} ({recording_id}) released: the worker is stopping", job_id=delivery.id,
                     recording_id=recording_id)
            return "released"
        except Exception as exc:  # noqa: BLE001 — missing/corrupt audio, decoder errors: a counted attempt
            return await self._fail(delivery, f"{type(exc).__name__}: {exc}", recording_id)
        finally:
            heartbeat.stop()
            self.current = None
            self.metrics.busy.set(0)
        self.metrics.transcription_seconds.observe(transcript.elapsed)
        self.metrics.audio_seconds.inc(transcript.duration)
        if transcript.duration > 0:
            self.metrics.real_time_factor.observe(transcript.real_time_factor)
        return transcript

    def _touch(self, entry_id: str) -> defer.Deferred:
        d = self._run_redis(lambda: self.jobs.touch(entry_id))
        d.addErrback(lambda f: log.warn("Could not refresh job {job_id}: {error}", job_id=entry_id,
                                        error=f.getErrorMessage()))
        return d

    async def refresh_backlog(self) -> None:
        """The job stream's backlog and its oldest job's age into the gauges (read in the Redis thread).

        Runs on its own timer, so it is fresh while a long recording is decoded; a failure is logged and
        counted (``redis_errors_total{operation="backlog"}``), the gauges keep their last value.
        """
        try:
            backlog = await self._run_redis(self.jobs.backlog)
        except redis.RedisError as exc:
            self.metrics.redis_errors.labels(operation="backlog").inc()
            log.warn("{loop}: could not read the job backlog ({error})", loop=self.name,
                     error=f"{type(exc).__name__}: {exc}")
            return
        except Exception:  # noqa: BLE001 — a metric must not stop the timer; logged with its traceback
            log.failure("{loop}: could not read the job backlog", loop=self.name)
            return
        self.metrics.backlog.set(backlog.total)
        self.metrics.oldest_job_age.set(backlog.oldest_age(self.clock.seconds()))

    def start(self) -> defer.Deferred:
        loop = super().start()
        if self.backlog_interval > 0:
            self._backlog_loop = task.LoopingCall(lambda: defer.ensureDeferred(self.refresh_backlog()))
            self._backlog_loop.clock = self.clock
            self._backlog_loop.start(self.backlog_interval, now=True)
        return loop

    def stop(self) -> defer.Deferred:
        """Stop taking jobs; let the current one finish for ``shutdown_grace`` s, then release it."""
        if self._backlog_loop is not None and self._backlog_loop.running:
            self._backlog_loop.stop()
        loop = super().stop()
        if self.current is None or loop.called:
            return loop

        def cancel() -> None:
            if not loop.called:
                self._cancel = True

        timer = self.clock.callLater(self.shutdown_grace, cancel)

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        return loop.addBoth(done)


class SinkRunner(_StreamLoop):
    """Delivers drafts from the drafts stream to one sink (its own consumer group), acking when delivered."""

    def __init__(self, queue: StreamQueue, deliver: Callable[[dict[str, Any]], Awaitable[None]], sink: str, *,
                 clock: Any, run_redis: RunBlocking, metrics: AsrMetrics, redeliver_after: float,
                 read_block_ms: int | None = 1000) -> None:
        super().__init__(queue, clock=clock, run_redis=run_redis, metrics=metrics, reclaim_idle=redeliver_after,
                         read_block_ms=read_block_ms)
        self.name = f"sink-{sink}"
        self.sink = sink
        self._deliver = deliver
        metrics.sink_started(sink)

    def stop(self, patience: float = 2.0) -> defer.Deferred:
        """Stop; a delivery still retrying after ``patience`` s is abandoned (its entry stays pending)."""
        loop = super().stop()
        if loop.called:
            return loop
        timer = self.clock.callLater(patience, loop.cancel)

        def done(result):
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure) and result.check(defer.CancelledError):
                return None
            return result

        return loop.addBoth(done)

    async def handle(self, delivery: Delivery) -> str:
        import json

        try:
            draft = json.loads(delivery.fields.get("data", ""))
        except json.JSONDecodeError:
            log.error("{loop}: drafts entry {entry} is not JSON; skipped", loop=self.name, entry=delivery.id)
            await self.redis("ack", lambda: self.queue.ack(delivery.id))
            return "skipped"
        try:
            await self._deliver(draft)
        except Exception as exc:  # noqa: BLE001 — stays pending, redelivered later
            self.metrics.sink_failures.labels(sink=self.sink).inc()
            log.warn("{loop}: draft {draft_id} not delivered ({error}); redelivered after {after} s",
                     loop=self.name, draft_id=draft.get("draft_id"), error=str(exc) if isinstance(exc, SinkError)
                     else f"{type(exc).__name__}: {exc}", after=self.reclaim_idle)
            return "failed"
        await self.redis("ack", lambda: self.queue.ack(delivery.id))
        self.metrics.sink_deliveries.labels(sink=self.sink).inc()
        return "delivered"
