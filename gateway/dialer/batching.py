"""Batched blocking writes: one in the Redis pool at a time, the rest wait and go together."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer

__all__ = ["Coalesced", "RunBlocking"]

RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]


class Coalesced:
    """One blocking batch write in the Redis pool at a time: items submitted while one is in
    flight go together in the next (one pool hop and one round trip for all of them).

    ``write_many(items)`` runs in the pool and returns one result per item, in order; each
    :meth:`submit` gets its own item's result (or the batch's failure). Nothing waits when the
    pool is idle: the first item goes at once.
    """

    def __init__(self, run: RunBlocking, write_many: Callable[[list[Any]], list[Any]]) -> None:
        self._run = run
        self._write_many = write_many
        self._queued: list[tuple[Any, defer.Deferred]] = []
        self._busy = False

    def submit(self, item: Any) -> defer.Deferred:
        d = defer.Deferred()
        self._queued.append((item, d))
        if not self._busy:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        if not batch:
            return
        self._busy = True
        items = [item for item, _ in batch]

        def done(results):
            # what the callers submit from their callbacks goes in the next batch, all together
            for (_, d), result in zip(batch, results):
                d.callback(result)
            self._busy = False
            self._flush()

        def failed(failure):
            for _, d in batch:
                d.errback(failure)
            self._busy = False
            self._flush()

        self._run(lambda: self._write_many(items)).addCallbacks(done, failed)



