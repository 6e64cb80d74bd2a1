"""Drive a call flow's coroutine on Deferreds, with less work per await.

``Deferred.fromCoroutine`` is general: it also drives generators, unrolls
Deferreds that are already fired, supports ``returnValue`` and cancels the
awaited Deferred when its own is cancelled. A call flow only awaits Deferreds
that have no result yet (every AGI command's Deferred, Redis look-ups from the
thread pool), and each await costs two driver frames and a fresh callback
tuple in Twisted's driver. ``run_flow`` does the same job for that case with
one bound method per await; the AGI micro-benchmark
(``bench/fastagi_cpu_bench.py``) runs 12 awaits per call.

Kept from ``fromCoroutine``: the flow runs in its own copy of the
``contextvars`` context, its return value or exception fires the returned
Deferred, and a value yielded that is not a Deferred is sent straight back.
Not kept: cancelling the returned Deferred does not cancel the awaited one
(nothing cancels a flow: the server ends a stuck call by closing its
connection, which fails the command on the wire), and a generator or
coroutine *yielded* (not awaited) is not run.
"""
from __future__ import annotations

import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["run_flow"]

_T = TypeVar("_T")


class _FlowRun:
    __slots__ = ("_context", "_coro", "_step", "done")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._context = contextvars.copy_context()
        self.done: Deferred = Deferred()
        self._step = self.step  # one bound method for every await

    def step(self, result: object = None) -> None:
        """Resume the coroutine until it waits on a Deferred, returns or raises.

        Used as the awaited Deferred's callback *and* errback, like Twisted's
        driver: a result is sent in, a failure is thrown in at the ``await``.
        Returning ``None`` leaves the awaited Deferred with no unhandled error.
        """
        while True:
            try:
                if isinstance(result, Failure):
                    awaited = self._context.run(result.throwExceptionIntoGenerator, self._coro)
                else:
                    awaited = self._context.run(self._coro.send, result)
            except StopIteration as stop:
                self.done.callback(stop.value)
                return
            except BaseException:  # noqa: BLE001 — everything the flow raises fails its Deferred
                self.done.errback(Failure())
                return
            if isinstance(awaited, Deferred):
                # A Deferred is only yielded while it has no result (or is
                # paused), so this never runs step() re-entrantly.
                awaited.addBoth(self._step)
                return
            # Not a Deferred: hand the object back, as fromCoroutine does.
            result = awaited


def run_flow(coro: Coroutine[Any, Any, _T]) -> Deferred:
    """Start ``coro`` now; the Deferred fires with its return value or exception."""
    run = _FlowRun(coro)
    run.step()
    return run.done
