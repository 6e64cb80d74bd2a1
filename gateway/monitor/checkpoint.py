"""What the monitor has counted, kept in Redis so a restarted gateway can recover what it missed.

While the gateway process is down, calls still end — abandoned, answered,
completed — and Asterisk writes them to queue_log. A new process starts its
counters at zero (Prometheus sees a reset and adds what it counts next), so
it must count exactly what the old process did not: the queue_log entries
after the old process's *position*, and the outcome of the calls that were
open when it stopped — nothing else. The checkpoint therefore keeps:

* ``position``: queue_log before it has been accounted for (the start of a
  replay still pending, else "now" while a session is live, else the last
  event's time);
* ``calls``: the calls still open (offered — maybe answered — by the old
  process): the new one adopts them without counting them again, and counts
  their outcome once, from the replay, the resync snapshots or live events;
* ``finished``: the calls that ended just before ``position`` (within the
  replay margin): queue_log has whole seconds, so their last entries fall
  inside the replayed window, and must not be counted again.

:class:`Checkpointer` writes it every ``interval`` seconds and once more when
the monitor stops (after the AMI session is closed, so nothing is counted
after the last write), and reads it once, for the first resync of the
process. Redis is reached through an injected ``run_blocking`` (a thread
pool): the reactor never waits for it. A Redis failure is logged and counted
(``hotline_monitor_checkpoint_failures_total``) and costs only the recovery:
no checkpoint read → the first connection behaves as a first start.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol as TypingProtocol

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .model import HotlineState, OpenCall

__all__ = ["Checkpoint", "Checkpointer", "RedisCheckpointStore", "decode", "encode", "take_checkpoint"]

log = Logger()

VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    position: float
    calls: tuple[OpenCall, ...] = ()
    finished: tuple[str, ...] = ()


def take_checkpoint(state: HotlineState, position: float | None, margin: float) -> Checkpoint | None:
    """The state's checkpoint at ``position`` (None: nothing to keep yet)."""
    if position is None:
        return None
    # queue_log stamps whole seconds: a call ended in the second before the window still has entries in it
    finished = state.finished_since(position - margin - 1.0)
    return Checkpoint(position, tuple(state.unfinished_calls()), tuple(finished))


def encode(checkpoint: Checkpoint) -> str:
    calls = []
    for c in checkpoint.calls:
        item: dict[str, Any] = {"id": c.uniqueid, "queue": c.queue, "joined": c.joined_at}
        if c.answered:
            item["answered"] = True
        if c.completed:
            item["completed"] = True
        if c.position or c.original_position:
            item["pos"] = [c.position, c.original_position]
        if c.abandon_hint is not None:
            item["hint"] = list(c.abandon_hint)
        if c.caller:
            item["caller"] = c.caller
        calls.append(item)
    return json.dumps(
        {"v": VERSION, "position": checkpoint.position, "calls": calls, "finished": list(checkpoint.finished)},
        separators=(",", ":"), ensure_ascii=False,
    )


def decode(text: str | bytes) -> Checkpoint:
    """Parse a stored checkpoint; ValueError if it is not one this version wrote."""
    try:
        data = json.loads(text)
        if data.get("v") != VERSION:
            raise ValueError(f"checkpoint version {data.get('v')!r}, expected {VERSION}")
        calls = []
        for item in data.get("calls", ()):
            position, original = item.get("pos", (0, 0))
            hint = item.get("hint")
            calls.append(OpenCall(
                str(item["id"]), str(item["queue"]), float(item["joined"]), bool(item.get("answered")),
                bool(item.get("completed")), int(position), int(original),
                (float(hint[0]), int(hint[1]), int(hint[2])) if hint is not None else None,
                caller=str(item.get("caller", "")),
            ))
        return Checkpoint(float(data["position"]), tuple(calls), tuple(str(u) for u in data.get("finished", ())))
    except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a monitor checkpoint: {exc}") from exc


class CheckpointStore(TypingProtocol):
    def load(self) -> defer.Deferred: ...

    def save(self, text: str) -> defer.Deferred: ...


class CheckpointObserver(TypingProtocol):
    def checkpoint_failed(self, operation: str) -> None: ...


class RedisCheckpointStore:
    """One Redis string per Asterisk node, ``<prefix>:monitor:checkpoint:<node>``, read and written in
    ``run_blocking``: the gateways of a cluster share one Redis, and each resumes only its own node's
    queue_log and open calls."""

    def __init__(
        self,
        client: Any,
        run_blocking: Callable[[Callable[[], Any]], defer.Deferred],
        key_prefix: str = "hotline",
        ttl: int = 7 * 24 * 3600,
        *,
        node: str,
    ) -> None:
        self._client = client
        self._run = run_blocking
        self.key = f"{key_prefix}:monitor:checkpoint:{node}"
        #: a checkpoint older than this is not worth replaying from (and queue_log may have rotated)
        self.ttl = ttl

    def load(self) -> defer.Deferred:
        return self._run(lambda: self._client.get(self.key))

    def save(self, text: str) -> defer.Deferred:
        return self._run(lambda: self._client.set(self.key, text, ex=self.ttl))


class Checkpointer:
    """Writes the state's checkpoint periodically and at stop; reads it once (:meth:`load`)."""

    def __init__(
        self,
        state: HotlineState,
        store: CheckpointStore,
        *,
        clock: IReactorTime,
        position: Callable[[], float | None],
        margin: float = 2.0,
        interval: float = 10.0,
        observer: CheckpointObserver | None = None,
    ) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.position = position
        self.margin = margin
        self.interval = interval
        self.observer = observer
        self._loop: task.LoopingCall | None = None
        #: no write before the stored checkpoint was read: it must not be overwritten unreplayed
        self._loaded = False
        self._loading: defer.Deferred | None = None
        self._writing: defer.Deferred | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Read the stored checkpoint at once (usually done before the AMI login is), then write periodically."""
        self.load()
        if self.interval > 0:
            self._loop = task.LoopingCall(self.save)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def stop(self) -> defer.Deferred:
        """The last write (after any write in flight); fires when it is done, whatever its result."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._writing is not None:
            d: defer.Deferred = defer.Deferred()
            self._writing.addBoth(lambda _: self.save().chainDeferred(d))
            return d
        return self.save()

    # -- read ----------------------------------------------------------------------------
    def load(self) -> defer.Deferred:
        """``Deferred[Checkpoint | None]`` — read once, whoever asks; never fails (a failure is
        logged and counted → None)."""
        if self._loading is None:
            self._loading = defer.Deferred.fromCoroutine(self._load())
        d: defer.Deferred = defer.Deferred()

        def hand_over(result):
            d.callback(result)
            return result

        self._loading.addBoth(hand_over)
        return d

    async def _load(self) -> Checkpoint | None:
        try:
            text = await self.store.load()
        except Exception as exc:  # Redis away: start as if for the first time
            self._failed("load", exc)
            return None
        finally:
            self._loaded = True
        if text is None:
            log.info("monitor checkpoint: none stored; no queue_log replay at start")
            return None
        try:
            checkpoint = decode(text)
        except ValueError as exc:
            self._failed("load", exc)
            return None
        log.info("monitor checkpoint: replaying queue_log from {position} ({calls} call(s) were open)",
                 position=checkpoint.position, calls=len(checkpoint.calls))
        return checkpoint

    # -- write -----------------------------------------------------------------------------
    def save(self) -> defer.Deferred:
        """Write the checkpoint now; ``Deferred[bool]`` (False: skipped or failed — never an error)."""
        if not self._loaded or self._writing is not None:
            return defer.succeed(False)
        checkpoint = take_checkpoint(self.state, self.position(), self.margin)
        if checkpoint is None:
            return defer.succeed(False)
        try:
            d = self.store.save(encode(checkpoint))
        except Exception as exc:  # a store that raises instead of failing its Deferred
            d = defer.fail(exc)

        def written(_: object) -> bool:
            return True

        def failed(failure) -> bool:
            self._failed("save", failure.value)
            return False

        def done(result: bool) -> bool:
            self._writing = None
            return result

        d.addCallbacks(written, failed)
        d.addBoth(done)
        if not d.called:
            self._writing = d
        return d

    def _failed(self, operation: str, error: BaseException) -> None:
        log.warn("monitor checkpoint {operation} failed: {error}", operation=operation,
                 error=str(error) or type(error).__name__)
        if self.observer is not None:
            self.observer.checkpoint_failed(operation)
