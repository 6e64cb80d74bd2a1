"""Redis Streams job queue: consumer group, reclaim, dead letter, idempotent store + ack.

Blocking (redis-py) calls only: the worker runs every method in a thread.

Redis keys (defaults, see ``AsrConfig``):
  hotline:jobs:transcribe         STREAM of jobs (fields recording_id, data=JSON), group ``asr``
  hotline:jobs:transcribe:dead    STREAM of dead jobs: recording_id, data, reason, attempts, job_id
  hotline:jobs:transcribe:errors  HASH job id → last error (kept until the job is done or dead)
  hotline:draft:<recording_id>    STRING draft JSON (the visible result; written once, SET NX)
  hotline:drafts                  STREAM of drafts (recording_id, draft_id, data); also the outbox
                                  of the webhook/JSONL sinks: one consumer group per sink

Survey voice comments (job ``kind=survey_comment`` with ``order_id``) make no draft: their
transcript is stored on the survey's order by ``gateway.surveys.store.SurveyStore.attach_comment``
(``hotline:surveys:order:<order id>``), which acks the job in the same Lua step.

A job's attempts are its delivery count in the group (XREADGROUP gives 1,
every XAUTOCLAIM adds one), so a job that kills its worker is counted too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

__all__ = ["Backlog", "Delivery", "JobQueue", "StreamQueue", "decode_job"]

#: store the draft once and acknowledge the job, atomically
_STORE_AND_ACK = """
local stored = 0
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
  redis.call('XADD', KEYS[2], '*', 'recording_id', ARGV[4], 'draft_id', ARGV[5], 'data', ARGV[1])
  stored = 1
end
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[3])
return stored
"""


class JobError(ValueError):
    """A job that cannot be processed as given (bad JSON, missing fields)."""


def decode_job(fields: dict[str, str]) -> dict[str, Any]:
    """The job dict of a stream entry (``data`` JSON, ``recording_id`` checked against it)."""
    raw = fields.get("data")
    if raw is None:
        raise JobError("job has no data field")
    try:
        job = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise JobError(f"job data is not JSON: {exc}") from None
    if not isinstance(job, dict):
        raise JobError("job data is not a JSON object")
    recording_id = job.get("recording_id") or fields.get("recording_id")
    if not recording_id or not isinstance(recording_id, str):
        raise JobError("job has no recording_id")
    if "/" in recording_id or recording_id.startswith("."):
        raise JobError(f"recording_id {recording_id!r} is not a plain name")
    if not isinstance(job.get("path"), str) or not job["path"]:
        raise JobError("job has no recording path")
    job["recording_id"] = recording_id
    return job


@dataclass(frozen=True)
class Delivery:
    id: str
    fields: dict[str, str]
    attempts: int
    reclaimed: bool = False


@dataclass(frozen=True)
class Backlog:
    """A consumer group's unfinished entries."""

    #: not yet delivered to any consumer of the group
    waiting: int
    #: delivered and not acked: being worked on, or failed and waiting to be reclaimed
    pending: int
    #: the id of the oldest of them (None: nothing unfinished)
    oldest_id: str | None = None

    @property
    def total(self) -> int:
        return self.waiting + self.pending

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest unfinished entry was added (its id's time part); 0 when there is none."""
        if self.oldest_id is None:
            return 0.0
        return max(0.0, now - _id_key(self.oldest_id)[0] / 1000.0)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


#: at most this many undelivered entries are counted one by one (only when Redis gives no ``lag``)
_LAG_SCAN = 10_000


class StreamQueue:
    """One consumer of one consumer group (used for jobs and for each sink's outbox)."""

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str) -> None:
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _attempts(self, entry_id: str) -> int:
        rows = self.client.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 1

    def read(self, block_ms: int = 1000) -> Delivery | None:
        """A new entry for this consumer (blocks up to ``block_ms``), or None."""
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=1, block=block_ms)
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                return Delivery(entry_id, dict(fields or {}), 1)
        return None

    def reclaim(self, min_idle_seconds: float) -> Delivery | None:
        """An entry another consumer (or this one) left pending for ``min_idle_seconds``, or None."""
        reply = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                       min_idle_time=int(min_idle_seconds * 1000), start_id="0-0", count=1)
        entries = reply[1] if reply and len(reply) > 1 else []
        for entry_id, fields in entries:
            if fields is None:  # deleted meanwhile (Redis < 7 reports it so); drop it from the PEL
                self.client.xack(self.stream, self.group, entry_id)
                continue
            return Delivery(entry_id, dict(fields), self._attempts(entry_id), reclaimed=True)
        return None

    def touch(self, entry_id: str) -> None:
        """Reset the entry's idle time (still being worked on: nobody should reclaim it)."""
        self.client.xclaim(self.stream, self.group, self.consumer, 0, [entry_id], justid=True)

    def release(self, entry_id: str) -> None:
        """Hand the entry back at once: mark it long idle so the next XAUTOCLAIM takes it."""
        self.client.xclaim(self.stream, self.group, self.consumer, 0, [entry_id], idle=10**9, justid=True)

    def ack(self, entry_id: str) -> None:
        self.client.xack(self.stream, self.group, entry_id)

    def pending_count(self) -> int:
        return int(self.client.xpending(self.stream, self.group)["pending"])

    def backlog(self) -> Backlog:
        """The group's unfinished entries: XINFO GROUPS (``lag``, ``pending``), the first entry after the
        group's last delivered id and the oldest pending one. No stream or no group yet: what the stream holds."""
        try:
            groups = self.client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no such key: nothing was ever queued
            return Backlog(0, 0)
        info = next((g for g in groups if g.get("name") == self.group), None)
        if info is None:
            first = self.client.xrange(self.stream, count=1)
            return Backlog(int(self.client.xlen(self.stream)), 0, first[0][0] if first else None)
        undelivered = f"({info['last-delivered-id']}"  # exclusive: the entries after it
        after = self.client.xrange(self.stream, min=undelivered, count=1)
        waiting = info.get("lag")
        if waiting is None:  # Redis < 7, or entries deleted from the stream: count them (bounded)
            waiting = len(self.client.xrange(self.stream, min=undelivered, count=_LAG_SCAN)) if after else 0
        pending = int(info.get("pending") or 0)
        candidates = [after[0][0]] if after else []
        if pending:
            oldest_pending = self.client.xpending(self.stream, self.group).get("min")
            if oldest_pending:
                candidates.append(oldest_pending)
        return Backlog(int(waiting), pending, min(candidates, key=_id_key) if candidates else None)


class JobQueue(StreamQueue):
    """The transcription job stream, with dead letters and the idempotent draft store."""

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str, *, dead_letter_stream: str,
                 drafts_stream: str, draft_key_prefix: str, draft_ttl: int = 0, callback_stream: str = "") -> None:
        super().__init__(client, stream, group, consumer)
        self.dead_letter_stream = dead_letter_stream
        #: the IVR's callback requests (``hotline:callback:requests``): a lost voice message becomes one
        self.callback_stream = callback_stream
        self.drafts_stream = drafts_stream
        self.draft_key_prefix = draft_key_prefix
        self.draft_ttl = draft_ttl
        self.errors_key = f"{stream}:errors"
        self._store = client.register_script(_STORE_AND_ACK)

    def draft_key(self, recording_id: str) -> str:
        return f"{self.draft_key_prefix}{recording_id}"

    def already_done(self, recording_id: str) -> bool:
        return bool(self.client.exists(self.draft_key(recording_id)))

    def store_and_ack(self, entry_id: str, recording_id: str, draft: dict[str, Any]) -> bool:
        """Write the draft (record + drafts stream) unless it exists, and ack the job — one atomic step.

        Returns False when the draft was already there (a duplicate delivery): nothing new is visible.
        """
        data = json.dumps(draft, ensure_ascii=False, sort_keys=True)
        stored = self._store(
            keys=[self.draft_key(recording_id), self.drafts_stream, self.stream, self.errors_key],
            args=[data, self.group, entry_id, recording_id, str(draft.get("draft_id", "")), self.draft_ttl],
        )
        return bool(stored)

    def store_comment_and_ack(self, entry_id: str, comments: Any, order_id: str, recording_id: str, text: str,
                              confidence: float | None, now: float) -> str:
        """A survey comment's transcript onto its order (``SurveyStore.attach_comment``), the job acked in the
        same atomic step unless the order is unknown or has another comment (``unknown`` / ``other``)."""
        result, _status = comments.attach_comment(order_id, recording_id, text, confidence, now,
                                                  ack=(self.stream, self.group, entry_id, self.errors_key))
        return result

    def ack_done(self, entry_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.hdel(self.errors_key, entry_id)
        pipe.execute()

    def record_error(self, entry_id: str, reason: str) -> None:
        self.client.hset(self.errors_key, entry_id, reason[:2000])

    def last_error(self, entry_id: str) -> str:
        return self.client.hget(self.errors_key, entry_id) or ""

    def dead_letter(self, delivery: Delivery, reason: str, callback: dict[str, Any] | None = None) -> None:
        """Move the job to the dead-letter stream with the reason, and ack it (atomically); with
        ``callback`` (and a callback stream), request a callback for the citizen in the same step."""
        fields = {
            "job_id": delivery.id,
            "recording_id": str(delivery.fields.get("recording_id", "")),
            "data": str(delivery.fields.get("data", "")),
            "reason": reason[:2000],
            "attempts": str(delivery.attempts),
        }
        pipe = self.client.pipeline(transaction=True)
        if callback is not None and self.callback_stream:
            pipe.xadd(self.callback_stream, {"call_id": str(callback.get("call_id", "")),
                                             "data": json.dumps(callback, ensure_ascii=False)})
        pipe.xadd(self.dead_letter_stream, fields)
        pipe.xack(self.stream, self.group, delivery.id)
        pipe.hdel(self.errors_key, delivery.id)
        pipe.execute()
