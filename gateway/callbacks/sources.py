"""Durable stream sources: the safety net's missed calls and the IVR's callback requests.

Both are Redis STREAMs written by others (``agi_scripts/missed_call.py`` →
``hotline:missed:calls``; the IVR's ``callback_request`` node →
``hotline:callback:requests``). A :class:`StreamSource` reads entries after its
cursor (``hotline:callbacks:cursor:<stream>``), hands each to the service and
moves the cursor after it; scheduling is idempotent per call id, so an entry
read twice (a crash between scheduling and the cursor write) adds nothing.
While Redis is away the source simply tries again at the next poll.
:class:`SpoolSource` does the same for the safety net's spool file (the
records it wrote while Redis was away).
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

__all__ = ["SpoolSource", "StreamSource", "ivr_request_handler", "missed_call_handler"]

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


class SpoolSource:
    """The safety net's spool file (JSON lines written while Redis was away), read like a stream.

    ``agi_scripts/missed_call.py`` appends a record per missed call to the
    spool when Redis does not answer. This source reads complete lines after
    its cursor (``<cursor_key>`` = ``inode:offset`` in Redis), hands each record
    to the same handler as the ``missed:calls`` stream and moves the cursor; a
    rotated or truncated file starts again from its beginning. Scheduling is
    idempotent per call id, so a record read twice adds nothing. File reads run
    in the thread pool (``run_blocking``).
    """

    def __init__(
        self,
        *,
        clock: IReactorTime,
        run_blocking: Callable[[Callable[[], Any]], defer.Deferred],
        client: Any,
        path: str,
        cursor_key: str,
        handler: Handler,
        interval: float = 10.0,
        max_bytes: int = 1 << 20,
    ) -> None:
        self.clock = clock
        self._run = run_blocking
        self.client = client
        self.path = path
        self.cursor_key = cursor_key
        self.handler = handler
        self.interval = interval
        self.max_bytes = max_bytes
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

    def _read(self) -> tuple[int, list[tuple[int, dict[str, str]]]]:
        import os

        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return 0, []
        inode, _, offset_text = (self.client.get(self.cursor_key) or "0:0").partition(":")
        offset = int(offset_text or 0)
        if int(inode or 0) != stat.st_ino or stat.st_size < offset:
            offset = 0
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(self.max_bytes)
        records = []
        position = offset
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # a line still being written
            position += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                log.warn("missed-call spool {path}: skipping a line that is not JSON", path=self.path)
                continue
            if isinstance(record, dict):
                records.append((position, {str(k): str(v) for k, v in record.items()}))
            else:
                records.append((position, {}))
        return stat.st_ino, records

    def poll(self) -> defer.Deferred:
        if self._busy:
            return defer.succeed(0)
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._poll())

        def done(result):
            self._busy = False
            return result

        def failed(failure):
            if self.healthy:  # once per outage, not every poll
                log.warn("missed-call spool {path}: {error}; retrying", path=self.path, error=failure.getErrorMessage())
            self.healthy = False
            return 0

        d.addErrback(failed)
        d.addBoth(done)
        return d

    async def _poll(self) -> int:
        inode, records = await self._run(self._read)
        self.healthy = True
        for position, record in records:
            if record.get("call_id"):
                await self.handler(f"spool-{position}", record)
            await self._run(lambda position=position: self.client.set(self.cursor_key, f"{inode}:{position}"))
        return len(records)
