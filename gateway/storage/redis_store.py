"""Call records in Redis, written from the reactor without blocking, never in a call's way.

Writes go through an injected ``execute_pipeline(commands) -> Deferred`` (the
non-blocking :class:`~gateway.storage.resp.RespClient` in production, which
fails at once when Redis is not connected; a fake in unit tests). Per record:
``HSET`` of the fields, ``EXPIRE``, and at the start ``ZADD`` to the index.
The start writes the whole hash; the end writes only what a call's end can
change (:meth:`CallRecord.end_fields`).

Writes are batched (one request per ``batch_interval`` or ``batch_size``
writes), and a batch is ONE command: ``EVAL`` of a small Lua script
(:data:`APPLY_SCRIPT`) that runs those commands for every record of the batch,
so the client encodes one command and parses one reply per batch instead of
two or three per record. A failed write is logged, counted and kept in a
bounded in-memory backlog that is replayed, in order (one ``EVAL`` per chunk),
once Redis answers again; while the backlog is non-empty new writes join it
without touching Redis (a cheap circuit breaker), so a dead Redis costs a call
nothing. Backlogged end writes keep the whole record, so a replayed hash is
complete even when the full backlog had to drop the call's start write.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..calls import CallRecord
from ..metrics import GatewayMetrics

__all__ = ["APPLY_SCRIPT", "ExecutePipeline", "RedisCallStore"]

log = Logger()

#: sends a pipeline of commands; fires with the replies or fails (never waits for a connection)
ExecutePipeline = Callable[[Sequence[Sequence[bytes | str | int | float]]], defer.Deferred]

#: ``EVAL APPLY_SCRIPT 0 ttl key_prefix index_key <record>…``, each ``<record>`` being
#: ``call_id, zadd_score, n, field_1, value_1, … field_n, value_n``: ``HSET`` the fields on
#: ``key_prefix .. call_id``, ``EXPIRE`` it, and when ``zadd_score`` is not empty ``ZADD`` the
#: call to the index. Replies the number of records. The keys are built inside the script (none
#: declared): right for one Redis server (or a primary with replicas), NOT for Redis Cluster,
#: where a script may only touch the keys it declares (and all in one slot). Sent with plain
#: EVAL every time: Redis caches the compiled script by its SHA1, so no NOSCRIPT handling.
#: Not transactional: an error stops the script and the records before it stay written (as
#: the commands before an error in a pipeline did); the whole batch is then retried.
APPLY_SCRIPT = """\
local ttl, prefix, index = ARGV[1], ARGV[2], ARGV[3]
local i, last, records = 4, #ARGV, 0
while i <= last do
  local id, score, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = prefix .. id
  redis.call('HSET', key, unpack(ARGV, i + 3, i + 2 + 2 * n))
  redis.call('EXPIRE', key, ttl)
  if score ~= '' then
    redis.call('ZADD', index, score, id)
  end
  i = i + 3 + 2 * n
  records = records + 1
end
return records
"""

#: one record of an ``EVAL`` of :data:`APPLY_SCRIPT`: ``(call_id, zadd_score_or_"", n, *fields)``
Segment = tuple

_STARTED_AT = CallRecord.STARTED_AT_VALUE


class RedisCallStore:
    def __init__(
        self,
        execute_pipeline: ExecutePipeline,
        clock: IReactorTime,
        metrics: GatewayMetrics,
        key_prefix: str = "hotline",
        ttl: int = 90 * 24 * 3600,
        backlog_size: int = 50000,
        retry_interval: float = 5.0,
        batch_interval: float = 0.05,
        batch_size: int = 200,
        ping: Callable[[], defer.Deferred] | None = None,
    ) -> None:
        """``ping`` (Deferred[bool]) answers readiness; without one, a PING goes through ``execute_pipeline``."""
        self._execute = execute_pipeline
        self._ping = ping
        self._clock = clock
        self._metrics = metrics
        self._prefix = key_prefix
        self._ttl = ttl
        self._eval = ("EVAL", APPLY_SCRIPT, 0, ttl, f"{key_prefix}:call:", self.index_key)
        self._retry_interval = retry_interval
        #: segments waiting for Redis, oldest first
        self._backlog: deque[Segment] = deque()
        self._backlog_size = backlog_size
        self._retry_call: IDelayedCall | None = None
        self._flushing = False
        self._dropped_in_flight = 0
        #: (segment, the record for an end write / None for a start, its Deferred)
        self._batch: list[tuple[Segment, CallRecord | None, defer.Deferred]] = []
        self._batch_call: IDelayedCall | None = None
        self._batch_interval = batch_interval
        self._batch_size = batch_size

    def call_key(self, call_id: str) -> str:
        return f"{self._prefix}:call:{call_id}"

    @property
    def index_key(self) -> str:
        return f"{self._prefix}:calls"

    @property
    def backlog_length(self) -> int:
        return len(self._backlog)

    # -- writes ------------------------------------------------------------
    def call_started(self, record: CallRecord) -> defer.Deferred:
        """The whole hash, the TTL and the index entry; fires True (stored) or False (backlogged)."""
        fields = record.hash_fields()
        return self._write((record.call_id, fields[_STARTED_AT], len(fields) >> 1, *fields), None)

    def call_ended(self, record: CallRecord) -> defer.Deferred:
        """The end's fields and the TTL (the whole hash if it has to wait); fires True or False."""
        fields = record.end_fields()
        return self._write((record.call_id, "", len(fields) >> 1, *fields), record)

    @staticmethod
    def _whole_record(record: CallRecord) -> Segment:
        """A backlogged end write: the whole hash (no index entry, as the live end write)."""
        fields = record.hash_fields()
        return (record.call_id, "", len(fields) >> 1, *fields)

    def _write(self, segment: Segment, ended: CallRecord | None) -> defer.Deferred:
        """Queue one record write; the Deferred fires True (stored) or False (backlogged).

        Everything queued within ``batch_interval`` (or ``batch_size`` writes)
        goes to Redis in one ``EVAL``, so a busy hotline costs one round trip
        (one command, one reply) per batch, not per call.
        """
        if self._backlog:
            self._enqueue(segment if ended is None else self._whole_record(ended))
            return defer.succeed(False)
        d = defer.Deferred()
        batch = self._batch
        batch.append((segment, ended, d))
        if len(batch) >= self._batch_size:
            self._flush_batch()
        elif self._batch_call is None:
            self._batch_call = self._clock.callLater(self._batch_interval, self._flush_batch)
        return d

    def _flush_batch(self) -> None:
        if self._batch_call is not None and self._batch_call.active():
            self._batch_call.cancel()
        self._batch_call = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        d = self._send([segment for segment, _, _ in batch])

        def stored(_):
            for _segment, _ended, waiter in batch:
                waiter.callback(True)

        def failed(failure):
            log.warn(
                "Redis write failed for {count} call record(s): {error}; keeping them for retry",
                count=len(batch),
                error=failure.getErrorMessage(),
            )
            failures = self._metrics.redis_failures
            for segment, ended, waiter in batch:
                if ended is None:
                    failures.labels(operation="call_start").inc()
                    self._enqueue(segment)
                else:
                    failures.labels(operation="call_end").inc()
                    self._enqueue(self._whole_record(ended))
                waiter.callback(False)

        d.addCallbacks(stored, failed)

    def _send(self, segments: list[Segment]) -> defer.Deferred:
        """One ``EVAL`` for all ``segments``; a synchronous exception becomes a failed Deferred."""
        return defer.maybeDeferred(self._execute, [self._eval + tuple(itertools.chain.from_iterable(segments))])

    # -- backlog -----------------------------------------------------------
    def _enqueue(self, segment: Segment) -> None:
        if len(self._backlog) >= self._backlog_size:
            self._backlog.popleft()
            self._metrics.redis_dropped.inc()
            if self._flushing:
                # the oldest entries are the ones a replay in flight is sending
                self._dropped_in_flight += 1
        self._backlog.append(segment)
        self._metrics.redis_backlog.set(len(self._backlog))
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry_call is None and not self._flushing:
            self._retry_call = self._clock.callLater(self._retry_interval, self.flush)

    def flush(self) -> defer.Deferred:
        """Try to write the backlog (oldest first); reschedule on failure."""
        self._retry_call = None
        if not self._backlog or self._flushing:
            return defer.succeed(None)
        self._flushing = True
        self._dropped_in_flight = 0
        batch = list(itertools.islice(self._backlog, 500))
        d = self._send(batch)

        def done(_):
            # Remove what was sent and is still queued: entries dropped from
            # the front while the replay was in flight were part of it, so
            # popping len(batch) would also drop records never written.
            for _ in range(max(0, len(batch) - self._dropped_in_flight)):
                self._backlog.popleft()
            self._metrics.redis_backlog.set(len(self._backlog))
            log.info("Redis is back: wrote {count} delayed call record(s)", count=len(batch))

        def failed(failure):
            self._metrics.redis_failures.labels(operation="backlog_flush").inc()
            log.debug("Redis still unreachable: {error}", error=failure.getErrorMessage())

        def finished(_):
            self._flushing = False
            if self._backlog:
                if _ is True:
                    self._retry_call = self._clock.callLater(0, self.flush)
                else:
                    self._schedule_retry()

        d.addCallbacks(lambda r: (done(r), True)[1], lambda f: (failed(f), False)[1])
        d.addCallback(finished)
        return d

    # -- reads -------------------------------------------------------------
    def ping(self) -> defer.Deferred:
        """Fires True when Redis answers now, False otherwise (``/readyz``)."""
        d = defer.maybeDeferred(self._ping) if self._ping is not None else self._send_ping()
        d.addCallbacks(lambda answer: answer is not False, lambda _f: False)
        return d

    def _send_ping(self) -> defer.Deferred:
        return defer.maybeDeferred(self._execute, [("PING",)])

    def stop(self) -> None:
        """Send the pending batch now and stop retrying (the backlog stays in memory)."""
        self._flush_batch()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
