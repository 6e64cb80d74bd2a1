"""Redis-backed services for the IVR flows (gateway.flows.services.FlowServices).

Keys (prefix ``hotline``):
  list:<name>                 SET of numbers (e.g. list:priority — registered elderly callers)
  order:<number>              HASH status, unit, caller … (the ticket store's status view)
  caller:<number>:orders      ZSET of the caller's work-order numbers by creation time
  callback:requests           STREAM of "call me back" requests from the IVR (durable, in order)
  jobs:transcribe             STREAM of voice-message transcription jobs

Every call runs in the Redis thread pool; any Redis error becomes
``ServiceUnavailable`` so the engine carries the caller on to an agent. The two
writes a citizen is told about (a callback request, a voice message) are first
retried for a few seconds when Redis is unreachable or read-only — the window of
a Sentinel failover — so a failover does not turn a stored request into an agent
call. A retried XADD may land twice (the first reply lost): both consumers are
idempotent per call id / recording id.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import redis
from twisted.internet import defer, task

from ..flows.recordings import RecordingCheck
from ..flows.services import OrderStatus, ServiceUnavailable
from ..metrics import GatewayMetrics

OPEN_STATUSES = {"received", "dispatched", "processing", "reopened"}
#: seconds between the tries of a write (Redis away or read-only: a failover takes 1-3 s)
WRITE_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
#: the errors a failover produces; anything else is not retried
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


class RedisFlowServices:
    def __init__(self, client: Any, run_blocking: Callable[[Callable[[], Any]], defer.Deferred], clock: Any,
                 metrics: GatewayMetrics, key_prefix: str = "hotline", timezone: str = "Asia/Shanghai",
                 retry_delays: tuple[float, ...] = WRITE_RETRY_DELAYS,
                 recordings: RecordingCheck | None = None) -> None:
        self._client = client
        #: stats Asterisk's recordings when the gateway can see them (flows.recordings_root)
        self._recordings = recordings
        self._retry_delays = retry_delays
        self._run = run_blocking
        self._clock = clock
        self._metrics = metrics
        self._prefix = key_prefix
        self.timezone = ZoneInfo(timezone)

    def key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.seconds(), self.timezone)

    async def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return await self._run(fn)
        except Exception as exc:  # noqa: BLE001 — any Redis/client error means "unavailable"
            raise ServiceUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _write(self, fn: Callable[[], Any]) -> Any:
        """``_call`` for a write, tried again after each of the retry delays while the error
        is one a Redis failover produces."""
        for delay in self._retry_delays:
            try:
                return await self._run(fn)
            except _TRANSIENT:
                await task.deferLater(self._clock, delay, lambda: None)
            except Exception:  # noqa: BLE001 — not transient: the last try below reports it
                break
        return await self._call(fn)

    async def caller_in(self, list_name: str, number: str) -> bool:
        return bool(await self._call(lambda: self._client.sismember(self.key("list", list_name), number)))

    async def order_status(self, number: str) -> OrderStatus | None:
        data = await self._call(lambda: self._client.hgetall(self.key("order", number)))
        if not data or "status" not in data:
            return None
        return OrderStatus(number=number, status=data["status"], unit=data.get("unit", ""))

    async def open_order_for(self, caller: str) -> OrderStatus | None:
        def lookup():
            numbers = self._client.zrevrange(self.key("caller", caller, "orders"), 0, 9)
            if not numbers:
                return None
            pipe = self._client.pipeline(transaction=False)
            for number in numbers:
                pipe.hget(self.key("order", number), "status")
            for number, status in zip(numbers, pipe.execute()):
                if status in OPEN_STATUSES:
                    return OrderStatus(number=number, status=status)
            return None

        return await self._call(lookup)

    async def request_callback(self, request: dict[str, Any]) -> bool:
        fields = {"call_id": request["call_id"], "data": json.dumps(request, ensure_ascii=False)}
        await self._write(lambda: self._client.xadd(self.key("callback", "requests"), fields))
        return True

    async def voice_message(self, job: dict[str, Any]) -> bool:
        fields = {"recording_id": job["recording_id"], "data": json.dumps(job, ensure_ascii=False)}
        await self._write(lambda: self._client.xadd(self.key("jobs", "transcribe"), fields))
        return True

    async def recording_problem(self, path: str, end_position: int = 0) -> str | None:
        if self._recordings is None:
            return None
        return await self._recordings.problem(path, end_position)

    def failed(self, what: str, error: str) -> None:
        self._metrics.flow_service_failures.labels(service=what).inc()
