"""Results to the platform's webhook: one POST per finished order, retried with backoff.

Each finished order is one entry of ``P:outbox`` (written atomically with the result,
see :mod:`.store`). The poster sends entries in order after its cursor
(``P:outbox:cursor``): ``POST <url>`` with ``Authorization: Bearer <token>`` (token from
the environment only) and ``Idempotency-Key: survey-<order id>`` — a delivery repeated
after a crash or a lost answer is recognised by the platform.

Bodies are JSON with an ``event`` field: ``result`` (:func:`result_body`) or ``comment``
— the masked transcript of the order's voice comment when it arrived after the result
(:func:`comment_body`, key ``survey-<order id>-comment``; the platform attaches it to
the order, and to the order's reopened case if ``reopened`` is set). 2xx and 409 (already
have it) are delivered; other answers and network errors are retried with exponential
backoff (injected clock); after ``max_tries`` the entry goes to ``P:outbox:dead`` and
the next one is sent.

Several gateway instances share the outbox and its cursor, so posting is single-flight:
only the holder of the lease ``P:outbox:lock`` (a token per poster, ``PX lease``) posts.
It renews the lease at every poll (also while a POST or a backoff is in progress, so a
failing platform is not hammered by the other instances), and moves the cursor (or
buries an entry) only in a Lua step that checks it still holds the lease. A holder
that dies or stalls longer than ``lease`` is replaced by another instance; the entry it
was posting may then be posted twice — with the same ``Idempotency-Key``. ``stop``
gives the lease up at once.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from .metrics import SurveyMetrics

__all__ = ["ResultPoster", "comment_body", "result_body", "treq_post"]

log = Logger()

#: (url, headers, body bytes) → Deferred[int status]
HttpPost = Callable[[str, dict[str, str], bytes], defer.Deferred]
RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]

#: take or renew the lease (KEYS lock; ARGV owner, ms)
_HOLD = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
#: move the cursor (and bury the entry: ARGV 3.. = dead-letter fields) only while holding the lease
#: (KEYS lock, cursor, dead; ARGV owner, entry id, ...)
_ADVANCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV > 2 then redis.call('XADD', KEYS[3], '*', unpack(ARGV, 3)) end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""
_LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_PUBLIC = ("order_id", "category", "topic", "unit", "closed_at", "status", "solved", "satisfaction", "solved_via",
           "satisfaction_via", "comment", "comment_text", "reopened", "finished_at", "call")
_COMMENT = ("order_id", "status", "reopened", "comment_recording_id", "comment_text", "transcribed_at")


def _confidence(value: Any) -> float | None:
    try:
        return round(float(value), 3) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def result_body(order_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """What the platform gets: the result without the citizen's number.

    ``comment_text`` (masked) and ``comment_confidence`` are there when the comment's
    transcript was stored before the result; otherwise, with a ``comment_recording_id``,
    the transcript follows as a ``comment`` update (:func:`comment_body`).
    """
    body: dict[str, Any] = {"event": "result"}
    body.update({name: data.get(name, "") for name in _PUBLIC})
    body["order_id"] = order_id
    body["comment_recording_id"] = body.pop("comment")
    body["comment_confidence"] = _confidence(data.get("comment_confidence"))
    return body


def comment_body(order_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The transcript of a voice comment that arrived after its order's result was written."""
    body: dict[str, Any] = {"event": "comment"}
    body.update({name: data.get(name, "") for name in _COMMENT})
    body["order_id"] = order_id
    body["comment_confidence"] = _confidence(data.get("comment_confidence"))
    return body


class ResultPoster:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        run_blocking: RunBlocking,
        client: Any,
        outbox: str,
        url: str,
        token: str,
        post: HttpPost,
        metrics: SurveyMetrics,
        interval: float = 5.0,
        initial_backoff: float = 5.0,
        max_backoff: float = 600.0,
        max_tries: int = 10,
        lease: float = 60.0,
        owner: str | None = None,
    ) -> None:
        self.clock = clock
        self._run = run_blocking
        self.client = client
        self.outbox = outbox
        self.cursor_key = f"{outbox}:cursor"
        self.dead = f"{outbox}:dead"
        self.url = url
        self.token = token
        self._post = post
        self.metrics = metrics
        self.interval = interval
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_tries = max_tries
        self.lock_key = f"{outbox}:lock"
        self.lease = lease
        #: this poster's lease token (unique per process and poster)
        self.owner = owner or uuid.uuid4().hex
        self.leader = False
        self._hold = client.register_script(_HOLD)
        self._advance = client.register_script(_ADVANCE)
        self._let_go = client.register_script(_LET_GO)
        self._loop: task.LoopingCall | None = None
        self._busy = False
        self._tries = 0
        self._not_before = 0.0

    def start(self) -> None:
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> defer.Deferred:
        """Stop polling and give the lease up (another instance takes over at its next poll)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.leader = False
        d = self._run(lambda: self._let_go(keys=[self.lock_key], args=[self.owner]))
        d.addErrback(lambda f: log.warn("survey results: lease not released ({error}); it expires",
                                        error=f.getErrorMessage()))
        return d

    def _hold_lease(self) -> bool:
        return bool(self._hold(keys=[self.lock_key], args=[self.owner, max(int(self.lease * 1000), 1)]))

    def _renew(self) -> None:
        d = self._run(self._hold_lease)

        def held(ok):
            if not ok:
                self._lost()

        d.addCallbacks(held, lambda f: log.warn("survey results: lease not renewed ({error})",
                                                error=f.getErrorMessage()))

    def _lost(self) -> None:
        if self.leader:
            log.warn("survey results: another instance holds the posting lease now; this one stops posting")
        self.leader = False

    def poll(self) -> defer.Deferred:
        if self._busy:
            if self.leader:
                self._renew()  # a POST still in progress: keep the lease
            return defer.succeed(0)
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._poll())

        def failed(failure):
            log.warn("survey results: outbox unavailable ({error})", error=failure.getErrorMessage())
            return 0

        def done(result):
            self._busy = False
            return result

        d.addErrback(failed)
        d.addBoth(done)
        return d

    async def _poll(self) -> int:
        """Take or renew the lease (also during a backoff), then post what is due."""
        if not await self._run(self._hold_lease):
            self._lost()
            self.metrics.webhook_backlog.set(0)  # the holder reports it
            return 0
        if not self.leader:
            log.info("survey results: this instance posts the results now (lease {owner})", owner=self.owner)
        self.leader = True
        if self.clock.seconds() < self._not_before:
            return 0
        return await self._drain()

    async def _drain(self) -> int:
        sent = 0
        while True:
            def read():
                cursor = self.client.get(self.cursor_key) or "0-0"
                entries = self.client.xrange(self.outbox, min=f"({cursor}", count=20)
                return entries, self.client.xlen(self.outbox)

            entries, _length = await self._run(read)
            if not entries:
                self.metrics.webhook_backlog.set(0)
                return sent
            self.metrics.webhook_backlog.set(len(entries))
            for entry_id, fields in entries:
                if not self.leader or not await self._deliver(entry_id, fields):
                    return sent
                sent += 1

    async def _deliver(self, entry_id: str, fields: dict[str, str]) -> bool:
        order_id = fields.get("order_id", "")
        try:
            data = json.loads(fields.get("data") or "{}")
        except ValueError:
            data = {}
        if fields.get("kind") == "comment":
            body = json.dumps(comment_body(order_id, data), ensure_ascii=False).encode()
            key = f"survey-{order_id}-comment"
        else:
            body = json.dumps(result_body(order_id, data), ensure_ascii=False).encode()
            key = f"survey-{order_id}"
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            status = await self._post(self.url, headers, body)
            error = "" if 200 <= status < 300 or status == 409 else f"HTTP {status}"
        except Exception as exc:  # noqa: BLE001 — network error: retry later
            error = f"{type(exc).__name__}: {exc}"
        if not error:
            self.metrics.webhook.labels(result="delivered").inc()
            self._tries = 0
            return await self._move_cursor(entry_id)
        self._tries += 1
        if self._tries >= self.max_tries:
            self.metrics.webhook.labels(result="dead").inc()
            log.warn("survey result {order} not delivered after {n} tries ({error}); kept in {dead}", order=order_id,
                     n=self._tries, error=error, dead=self.dead)

            dead: list[str] = []
            for name, value in {**fields, "error": error[:200]}.items():
                dead += [name, value]
            self._tries = 0
            return await self._move_cursor(entry_id, dead)
        self.metrics.webhook.labels(result="retry").inc()
        delay = min(self.max_backoff, self.initial_backoff * 2 ** (self._tries - 1))
        self._not_before = self.clock.seconds() + delay
        log.info("survey result {order}: {error}; retry {n} in {delay:.0f} s", order=order_id, error=error,
                 n=self._tries, delay=delay)
        return False

    async def _move_cursor(self, entry_id: str, dead: list[str] | None = None) -> bool:
        """Past ``entry_id`` (burying it first if ``dead``), only while this poster holds the lease."""
        moved = await self._run(lambda: self._advance(keys=[self.lock_key, self.cursor_key, self.dead],
                                                      args=[self.owner, entry_id, *(dead or [])]))
        if not moved:
            self._lost()  # the next holder posts this entry again (same Idempotency-Key)
        return bool(moved)


@implementer(IBodyProducer)
class _Body:
    """The request body, written at once (treq's default producer cooperates on the global reactor)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred:
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def treq_post(reactor: Any, timeout: float = 10.0) -> HttpPost:
    """The production poster: treq over ``reactor`` (a persistent connection pool of its own)."""
    import treq
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    client = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=True)),
                        data_to_body_producer=_Body)

    def post(url: str, headers: dict[str, str], body: bytes) -> defer.Deferred:
        d = client.post(url, data=body, headers={k: [v] for k, v in headers.items()}, timeout=timeout,
                        reactor=reactor)

        def code(response):
            return treq.content(response).addCallback(lambda _: response.code)

        return d.addCallback(code)

    return post
