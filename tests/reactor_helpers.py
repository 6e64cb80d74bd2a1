"""Helpers for tests that drive Twisted code: what a Deferred fired with, and a private real reactor.

The real-reactor helpers are for tests against real servers (a private
``redis-server``, Redis with Sentinel): the reactor is our own instance, driven
with ``iterate()``, so the global one is never started (it cannot be restarted)
and nothing outlives the test.
"""
from __future__ import annotations

import time

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["outcome", "private_reactor", "run_until", "wait"]


def outcome(d: defer.Deferred) -> list:
    """What ``d`` fired with so far: [] (pending), [value] or [Failure]."""
    out: list = []
    d.addBoth(out.append)
    return out


@pytest.fixture
def private_reactor():
    """A reactor of our own, driven with ``iterate()``: real sockets without touching the global one.

    (The global reactor cannot be restarted once stopped and other tests build
    gateways on memory reactors; a private instance is thrown away here.)
    """
    from twisted.internet.selectreactor import SelectReactor

    reactor = SelectReactor()
    yield reactor
    for call in reactor.getDelayedCalls():
        call.cancel()
    reactor.disconnectAll()
    for reader in list(getattr(reactor, "_internalReaders", ())):
        reactor.removeReader(reader)
        reader.connectionLost(None)


def run_until(reactor, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting on the real reactor")
        reactor.iterate(0.01)


def wait(reactor, d: defer.Deferred, timeout: float = 10.0):
    result = outcome(d)
    run_until(reactor, lambda: bool(result), timeout)
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
