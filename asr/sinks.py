"""Where drafts go after the Redis store: the work-order platform's webhook and a JSON-lines file.

"Stored" means the Redis record ``hotline:draft:<recording_id>`` and its entry on
``hotline:drafts`` exist; the job is acked in the same atomic step. The drafts
stream is also the outbox of the other sinks: each sink is a consumer group on
it (``webhook``, ``jsonl``) and acks an entry only once delivered. A sink that
keeps failing leaves its entries pending; they are redelivered after
``sink_redeliver_seconds`` (XAUTOCLAIM), so a draft is never lost and one
failing sink never blocks the store, the ack or another sink. Delivery is
at-least-once: receivers dedupe by ``draft_id`` (the webhook's
``Idempotency-Key`` header).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

__all__ = ["JsonlSink", "SinkError", "WebhookSink", "backoff_delay"]

log = Logger(namespace="asr.sinks")


class SinkError(RuntimeError):
    """A delivery failed (after its retries)."""


def backoff_delay(attempt: int, initial: float = 1.0, maximum: float = 60.0) -> float:
    """Delay before retry number ``attempt`` (1-based): initial·2^(attempt-1), capped."""
    return min(maximum, initial * 2 ** max(attempt - 1, 0))


class WebhookSink:
    """HTTP POST of the draft as JSON, retried with backoff.

    ``post`` is ``treq.post``-like (injected so tests need no network); the token
    comes from the environment via the config (``HOTLINE_ASR_WEBHOOK_TOKEN``).
    """

    name = "webhook"

    def __init__(self, url: str, token: str, clock: Any, post: Callable[..., defer.Deferred] | None = None,
                 timeout: float = 10.0, retries: int = 5, initial_backoff: float = 1.0,
                 max_backoff: float = 60.0) -> None:
        if post is None:
            import treq
            post = treq.post
        self.url, self._token, self._clock, self._post = url, token, clock, post
        self.timeout, self.retries = timeout, retries
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff

    def headers(self, draft: dict[str, Any]) -> dict[bytes, list[bytes]]:
        headers = {
            b"Content-Type": [b"application/json; charset=utf-8"],
            b"Idempotency-Key": [str(draft["draft_id"]).encode()],
        }
        if self._token:
            headers[b"Authorization"] = [b"Bearer " + self._token.encode()]
        return headers

    async def _once(self, body: bytes, headers) -> None:
        response = await self._post(self.url, data=body, headers=headers, timeout=self.timeout)
        code = response.code
        try:
            await response.content() if hasattr(response, "content") else None
        except Exception:  # noqa: BLE001 — the body is not needed, the status decides
            pass
        if not 200 <= code < 300:
            raise SinkError(f"HTTP {code}")

    async def deliver(self, draft: dict[str, Any]) -> None:
        body = json.dumps(draft, ensure_ascii=False, sort_keys=True).encode()
        headers = self.headers(draft)
        last = ""
        for attempt in range(1, self.retries + 1):
            try:
                await self._once(body, headers)
                return
            except Exception as exc:  # noqa: BLE001 — any failure is retried, then reported
                last = f"{type(exc).__name__}: {exc}"
                log.warn("Webhook delivery of {draft_id} failed (try {attempt}/{retries}): {error}",
                         draft_id=draft.get("draft_id"), attempt=attempt, retries=self.retries, error=last)
            if attempt < self.retries:
                await task.deferLater(self._clock, backoff_delay(attempt, self.initial_backoff, self.max_backoff),
                                      lambda: None)
        raise SinkError(f"webhook gave up after {self.retries} tries: {last}")


class JsonlSink:
    """One JSON object per line, appended and fsynced (blocking: run it in a thread)."""

    name = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, draft: dict[str, Any]) -> None:
        line = json.dumps(draft, ensure_ascii=False, sort_keys=True) + "\n"
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
