"""The IVR's Redis writes over a failover window: retried on the injected clock, then given up
(ServiceUnavailable: the engine carries the citizen on to an agent). No sockets, no sleeps."""
from __future__ import annotations

import json

import pytest
import redis
from redis.sentinel import MasterNotFoundError
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.flows.services import ServiceUnavailable
from gateway.metrics import GatewayMetrics
from gateway.storage.flow_store import WRITE_RETRY_DELAYS, RedisFlowServices


class FlakyClient:
    """XADD fails with ``errors`` in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.tries = 0
        self.entries: list[tuple[str, dict]] = []

    def xadd(self, key: str, fields: dict) -> str:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        self.entries.append((key, fields))
        return f"{len(self.entries)}-0"


def services(client, clock):
    return RedisFlowServices(client, defer.maybeDeferred, clock, GatewayMetrics(CollectorRegistry()))


def run(clock, coroutine):
    d = defer.Deferred.fromCoroutine(coroutine)
    box = []
    d.addBoth(box.append)
    clock.pump(WRITE_RETRY_DELAYS)  # each retry waits its delay on the clock
    return box[0]


def test_a_voice_message_written_during_a_failover_lands_once_redis_answers_again():
    clock = task.Clock()
    client = FlakyClient(redis.ConnectionError("primary down"),
                         MasterNotFoundError("no master"), redis.ReadOnlyError("demoted"))
    result = run(clock, services(client, clock).voice_message({"recording_id": "r1", "call_id": "c1"}))
    assert result is True
    assert client.tries == 4
    [(key, fields)] = client.entries
    assert key == "hotline:jobs:transcribe" and json.loads(fields["data"])["recording_id"] == "r1"


def test_a_callback_request_is_given_up_after_the_retry_window_so_the_citizen_reaches_an_agent():
    clock = task.Clock()
    client = FlakyClient(*[redis.ConnectionError("down")] * (len(WRITE_RETRY_DELAYS) + 1))
    result = run(clock, services(client, clock).request_callback({"call_id": "c2"}))
    assert isinstance(result.value, ServiceUnavailable) and "down" in str(result.value)
    assert client.tries == len(WRITE_RETRY_DELAYS) + 1 and client.entries == []


@pytest.mark.parametrize("error", [redis.ResponseError("WRONGTYPE"), ValueError("bug")])
def test_errors_a_failover_does_not_cause_are_not_retried(error):
    clock = task.Clock()
    client = FlakyClient(error, error)
    result = run(clock, services(client, clock).request_callback({"call_id": "c3"}))
    assert isinstance(result.value, ServiceUnavailable)
    assert client.tries == 2  # the first try, then the reporting one: no waiting on the clock
