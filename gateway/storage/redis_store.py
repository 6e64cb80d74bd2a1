"""Call records in Redis, written from the reactor without blocking, never in a call's way.

Writes go through an injected ``execute_pipeline(commands) -> Deferred`` (the
non-blocking :class:`~gateway.storage.resp.RespClient` in production, which
fails at once when Redis is not connected; a fake in unit tests). Per record:
``HSET`` of the fields, ``EXPIRE``, and at the start ``ZADD`` to the index.
The start writes the whole hash; the end writes only what a call's end can
change (:meth:`CallRecord.end_hash`).

Writes are batched (one pipeline per ``batch_interval`` or ``batch_size``
writes). A failed write is logged, counted and kept in a bounded in-memory
backlog that is replayed, in order, once Redis answers again; while the
backlog is non-empty new writes join it without touching Redis (a cheap
circuit breaker), so a dead Redis costs a call nothing. Backlogged end writes
keep the whole record, so a replayed hash is complete even when the full
backlog had to drop the call's start write.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..calls import CallRecord
from ..metrics import GatewayMetrics

__all__ = ["ExecutePipeline", "RedisCallStore"]

log = Logger()

#: sends a pipeline of commands; fires with the replies or fails (never waits for a connection)
ExecutePipeline = Callable[[Sequence[Sequence[bytes | str | int | float]]], defer.Deferred]


@dataclass(frozen=True, slots=True)
class _Write:
    operation: str
    #: what a live write sends
    fields: dict[str, str]
    #: end writes: the record, for the whole hash if this write has to wait in the backlog
    record: CallRecord | None = None

    def replay_fields(self) -> dict[str, str]:
        return self.record.as_hash() if self.record is not None else self.fields


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
        self._retry_interval = retry_interval
        self._backlog: deque[tuple[str, dict[str, str]]] = deque()
        self._backlog_size = backlog_size
        self._retry_call: IDelayedCall | None = None
        self._flushing = False
        self._batch: list[tuple[_Write, defer.Deferred]] = []
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
        return self._write(_Write("start", record.as_hash()))

    def call_ended(self, record: CallRecord) -> defer.Deferred:
        return self._write(_Write("end", record.end_hash(), record))

    def _write(self, write: _Write) -> defer.Deferred:
        """Queue one record write; the Deferred fires True (stored) or False (backlogged).

        Everything queued within ``batch_interval`` (or ``batch_size`` writes)
        goes to Redis in one pipeline, so a busy hotline costs one round trip
        per batch, not per call.
        """
        d: defer.Deferred = defer.Deferred()
        if self._backlog:
            self._enqueue(write.operation, write.replay_fields())
            d.callback(False)
            return d
        self._batch.append((write, d))
        if len(self._batch) >= self._batch_size:
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
        d = self._send([(write.operation, write.fields) for write, _ in batch])

        def stored(_):
            for _write, waiter in batch:
                waiter.callback(True)

        def failed(failure):
            log.warn(
                "Redis write failed for {count} call record(s): {error}; keeping them for retry",
                count=len(batch),
                error=failure.getErrorMessage(),
            )
            for write, waiter in batch:
                self._metrics.redis_failures.labels(operation=f"call_{write.operation}").inc()
                self._enqueue(write.operation, write.replay_fields())
                waiter.callback(False)

        d.addCallbacks(stored, failed)

    def _send(self, items: list[tuple[str, dict[str, str]]]) -> defer.Deferred:
        """One pipeline for all ``items``; a synchronous exception becomes a failed Deferred."""
        return defer.maybeDeferred(self._execute, self._commands(items))

    def _commands(self, items: list[tuple[str, dict[str, str]]]) -> list[tuple]:
        commands: list[tuple] = []
        for operation, fields in items:
            key = self.call_key(fields["call_id"])
            hset: list = ["HSET", key]
            for name, value in fields.items():
                hset += (name, value)
            commands.append(tuple(hset))
            commands.append(("EXPIRE", key, self._ttl))
            if operation == "start":
                commands.append(("ZADD", self.index_key, fields["started_at"], fields["call_id"]))
        return commands

    # -- backlog -----------------------------------------------------------
    def _enqueue(self, operation: str, fields: dict[str, str]) -> None:
        if len(self._backlog) >= self._backlog_size:
            self._backlog.popleft()
            self._metrics.redis_dropped.inc()
        self._backlog.append((operation, fields))
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
        batch = list(itertools.islice(self._backlog, 500))
        d = self._send(batch)

        def done(_):
            for _ in batch:
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
