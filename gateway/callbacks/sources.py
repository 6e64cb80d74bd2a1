"""Durable stream sources: the safety net's missed calls and the IVR's callback requests.

Both are Redis STREAMs written by others (``agi_scripts/missed_call.py`` →
``hotline:missed:calls``; the IVR's ``callback_request`` node →
``hotline:callback:requests``). A :class:`StreamSource` reads entries after its
cursor (``hotline:callbacks:cursor:<stream>``), hands each to the service and
moves the cursor after it; scheduling is idempotent per call id, so an entry
read twice (a crash between scheduling and the cursor write) adds nothing.
While Redis is away the source simply tries again at the next poll.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .service import CallbackService

__all__ = ["StreamSource", "ivr_request_handler", "missed_call_handler"]

log = Logger()

Handler = Callable[[str, dict[str, str]], Awaitable[object]]


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _entry_time(entry_id: str) -> float:
    """A stream id's milliseconds → seconds (when the entry was written)."""
    return _float(entry_id.split("-", 1)[0]) / 1000.0


def missed_call_handler(service: CallbackService) -> Handler:
    async def handle(entry_id: str, fields: dict[str, str]) -> object:
        missed_at = _float(fields.get("missed_at"), _entry_time(entry_id))
        wait = fields.get("wait_seconds")
        if wait and service.settings.min_wait > 0 and _float(wait) < service.settings.min_wait:
            service.metrics.ignored.labels(reason="short").inc()
            return "ignored:short"
        original_at = missed_at - _float(wait) if wait else missed_at
        return await service.schedule(
            source="safety-net", call_id=fields.get("call_id") or entry_id, caller=fields.get("caller", ""),
            original_at=original_at, details={"missed_at": missed_at, "queue_status": fields.get("queue_status", "")},
        )

    return handle


def ivr_request_handler(service: CallbackService) -> Handler:
    async def handle(entry_id: str, fields: dict[str, str]) -> object:
        try:
            data = json.loads(fields.get("data") or "{}")
        except ValueError:
            data = {}
        original_at = _entry_time(entry_id)
        requested = data.get("requested_at") or data.get("time")
        if isinstance(requested, str):
            try:
                original_at = dt.datetime.fromisoformat(requested).timestamp()
            except ValueError:
                pass
        elif isinstance(requested, (int, float)):
            original_at = float(requested)
        return await service.schedule(
            source="ivr-request", call_id=fields.get("call_id") or data.get("call_id") or entry_id,
            caller=str(data.get("caller") or fields.get("caller") or ""), original_at=original_at,
            queue=str(data.get("queue") or ""),
            details={"position": data.get("position"), "estimated_wait": data.get("estimated_wait")},
        )

    return handle


class StreamSource:
    def __init__(
        self,
        *,
        name: str,
        clock: IReactorTime,
        run_blocking: Callable[[Callable[[], Any]], defer.Deferred],
        client: Any,
        stream: str,
        cursor_key: str,
        handler: Handler,
        interval: float = 2.0,
        batch: int = 200,
    ) -> None:
        self.name = name
        self.clock = clock
        self._run = run_blocking
        self.client = client
        self.stream = stream
        self.cursor_key = cursor_key
        self.handler = handler
        self.interval = interval
        self.batch = batch
        self._loop: task.LoopingCall | None = None
        self._busy = False
        self.healthy = True

    def start(self) -> None:
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def poll(self) -> defer.Deferred:
        if self._busy:
            return defer.succeed(0)
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._poll())

        def done(result):
            self._busy = False
            return result

        def failed(failure):
            if self.healthy:
                log.warn("callback source {name}: {error}; retrying", name=self.name, error=failure.getErrorMessage())
            self.healthy = False
            return 0

        d.addErrback(failed)
        d.addBoth(done)
        return d

    async def _poll(self) -> int:
        handled = 0
        while True:
            def read():
                cursor = self.client.get(self.cursor_key) or "0-0"
                return cursor, self.client.xrange(self.stream, min=f"({cursor}", count=self.batch)

            cursor, entries = await self._run(read)
            self.healthy = True
            if not entries:
                return handled
            for entry_id, fields in entries:
                await self.handler(entry_id, dict(fields))
                await self._run(lambda entry_id=entry_id: self.client.set(self.cursor_key, entry_id))
                handled += 1
            if len(entries) < self.batch:
                return handled
