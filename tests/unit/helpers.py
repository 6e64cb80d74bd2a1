"""Shared fakes for unit tests (no sockets, no real time)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from gateway.agi.registry import ScriptRegistry
from gateway.agi.server import FastAgiFactory
from gateway.metrics import GatewayMetrics

ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: {script}\n"
    b"agi_request: agi://127.0.0.1:4573/{script}\n"
    b"agi_channel: Local/12345@from-lab-00000001;2\n"
    b"agi_uniqueid: call-1\n"
    b"agi_callerid: 13800138000\n"
    b"\n"
)


def env(script: str = "main") -> bytes:
    return ENV.replace(b"{script}", script.encode())


class MemoryStore:
    """A call store that keeps what it was given."""

    def __init__(self) -> None:
        self.started = []
        self.ended = []

    def call_started(self, record):
        self.started.append(record.call_id)
        return defer.succeed(True)

    def call_ended(self, record):
        self.ended.append(record)
        return defer.succeed(True)


def make_factory(scripts: ScriptRegistry, **kwargs):
    clock = task.Clock()
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    store = MemoryStore()
    factory = FastAgiFactory(scripts, store, metrics, clock, **kwargs)
    return factory, clock, store, registry


def connect(factory):
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def sent_lines(transport: StringTransport) -> list[str]:
    return [line for line in transport.value().decode().split("\n") if line]
