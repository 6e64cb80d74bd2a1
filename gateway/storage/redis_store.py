"""Call records in Redis, written off the reactor thread, never in a call's way.

redis-py is a blocking client, so every operation runs in a small thread pool
(``run_blocking`` is injected: a thread pool in production, direct calls in
unit tests). Socket timeouts are short. A failed write is logged, counted and
kept in a bounded in-memory backlog that is replayed, in order, once Redis
answers again; while the backlog is non-empty new writes join it without
touching Redis (a cheap circuit breaker), so a dead Redis costs a call nothing.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..calls import CallRecord
from ..metrics import GatewayMetrics

__all__ = ["RedisCallStore"]

log = Logger()

RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]


class RedisCallStore:
    def __init__(
        self,
        client: Any,
        run_blocking: RunBlocking,
        clock: IReactorTime,
        metrics: GatewayMetrics,
        key_prefix: str = "hotline",
        ttl: int = 90 * 24 * 3600,
        backlog_size: int = 50000,
        retry_interval: float = 5.0,
        batch_interval: float = 0.05,
        batch_size: int = 200,
    ) -> None:
        self._client = client
        self._run = run_blocking
        self._clock = clock
        self._metrics = metrics
        self._prefix = key_prefix
        self._ttl = ttl
        self._retry_interval = retry_interval
        self._backlog: deque[tuple[str, dict[str, str]]] = deque()
        self._backlog_size = backlog_size
        self._retry_call: IDelayedCall | None = None
        self._flushing = False
        self._batch: list[tuple[str, dict[str, str], defer.Deferred]] = []
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
        return self._write("start", record.as_hash())

    def call_ended(self, record: CallRecord) -> defer.Deferred:
        return self._write("end", record.as_hash())

    def _write(self, operation: str, fields: dict[str, str]) -> defer.Deferred:
        """Queue one record write; the Deferred fires True (stored) or False (backlogged).

        Writes are batched: everything queued within ``batch_interval`` (or
        ``batch_size`` writes) goes to Redis in one pipeline from one worker
        thread, so a busy hotline costs one round trip per batch, not per call.
        """
        d: defer.Deferred = defer.Deferred()
        if self._backlog:
            self._enqueue(operation, fields)
            d.callback(False)
            return d
        self._batch.append((operation, fields, d))
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
        items = [(operation, fields) for operation, fields, _ in batch]
        d = self._run(lambda: self._apply(items))

        def stored(_):
            for _op, _fields, waiter in batch:
                waiter.callback(True)

        def failed(failure):
            log.warn(
                "Redis write failed for {count} call record(s): {error}; keeping them for retry",
                count=len(batch),
                error=failure.getErrorMessage(),
            )
            for operation, fields, waiter in batch:
                self._metrics.redis_failures.labels(operation=f"call_{operation}").inc()
                self._enqueue(operation, fields)
                waiter.callback(False)

        d.addCallbacks(stored, failed)

    def _apply(self, items: list[tuple[str, dict[str, str]]]) -> None:
        """Runs in a worker thread: one pipeline round trip for all items."""
        pipe = self._client.pipeline(transaction=False)
        for operation, fields in items:
            key = self.call_key(fields["call_id"])
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._ttl)
            if operation == "start":
                pipe.zadd(self.index_key, {fields["call_id"]: float(fields["started_at"])})
        pipe.execute()

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
        batch = list(self._backlog)[:500]
        d = self._run(lambda: self._apply(batch))

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
        d = self._run(self._client.ping)
        d.addCallbacks(lambda _: True, lambda _f: False)
        return d

    def stop(self) -> None:
        self._flush_batch()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
