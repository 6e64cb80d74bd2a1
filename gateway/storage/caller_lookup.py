"""The caller look-up of the fast path on the reactor: one Redis pipeline, no worker thread.

The flow engine's ``caller_lookup`` node asks the flow services twice (priority list, then open
work orders), each a hop to the blocking redis-py pool. The fast path
(``gateway/flows/fastpath.py``) runs the same look-up as one pipeline (``SISMEMBER`` and
``ZREVRANGE``) through the non-blocking RESP client that already writes the call records, and
a second one (``HGET`` of each order's status) only for a caller with orders. Same keys and the
same rule for "open" as :class:`gateway.storage.flow_store.RedisFlowServices`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer

from ..flows.services import OrderStatus, ServiceUnavailable
from .flow_store import OPEN_STATUSES

__all__ = ["ReactorCallerLookup"]


class ReactorCallerLookup:
    def __init__(self, execute: Callable[[Sequence[tuple]], defer.Deferred], key_prefix: str = "hotline") -> None:
        self._execute = execute
        self._prefix = key_prefix

    def key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def _run(self, commands: list[tuple]) -> list[Any]:
        try:
            return await self._execute(commands)
        except Exception as exc:  # noqa: BLE001 — any Redis/client error means "unavailable"
            raise ServiceUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def profile(self, list_name: str, caller: str) -> tuple[bool, OrderStatus | None]:
        """(the caller is on ``list_name``, the caller's first open work order or None)."""
        member, numbers = await self._run([
            ("SISMEMBER", self.key("list", list_name), caller),
            ("ZREVRANGE", self.key("caller", caller, "orders"), 0, 9),
        ])
        if not numbers:
            return bool(member), None
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in numbers]
        statuses = await self._run([("HGET", self.key("order", name), "status") for name in names])
        for name, status in zip(names, statuses):
            text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
            if text in OPEN_STATUSES:
                return bool(member), OrderStatus(number=name, status=text)
        return bool(member), None
