"""A fake Asterisk AMI server that floods recorded events (for bench/ami_flood_bench.py).

Runs in its own process so that its writing does not share the reactor being
measured. Listens on an ephemeral 127.0.0.1 port chosen by the kernel (never
one of the lab's ports), prints ``PORT <n>`` once the streams are built, and
serves one AMI session: banner, MD5 Challenge/Login, Ping, the resync lists
(QueueStatus with queue 12345, empty PJSIPShowRegistrationsOutbound and
CoreShowChannels) and the bench's own action::

    Action: BenchFlood
    Stream: subscribed | all        (see bench/ami_stream.py)
    Events: <n>                     (at most the --events built at start)
    Rate: <events/s>                (0: as fast as the client reads — a pull producer
                                     that writes ~64 KiB of whole events each time
                                     the socket buffer drains)
    Limit: <seconds>                (the flood stops by itself after this)

answered, once the flood has been written, with ``Events`` (how many were
sent), ``Seconds`` (server side) and ``Reason`` (``done`` or ``time limit``).
Because TCP keeps the order, the client has processed every flood event when
it reads that reply. The process exits when the client disconnects, or after
``--deadline`` seconds whatever happens.

    .venv/bin/python bench/fake_ami_server.py --events 200000 --secret bench
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from twisted.internet import protocol, task
from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from bench.ami_stream import BANNER, Stream, build_stream
from gateway.ami import codec

#: the lab's and the running services' ports: never listen on these
FORBIDDEN_PORTS = frozenset({5038, 4573, 4574, 4575, 4576, 9512, 9513, 6379, 6391})
CHALLENGE = "271828182"
WRITE = 65536


def message(*pairs: tuple[str, object]) -> bytes:
    return "".join(f"{key}: {value}\r\n" for key, value in pairs).encode() + b"\r\n"


class Flood:
    """Writes events ``0 … count-1`` of ``stream`` to ``transport``, then calls ``done``."""

    def __init__(self, clock, transport, stream: Stream, count: int, rate: float, limit: float, done) -> None:
        self.clock = clock
        self.transport = transport
        self.stream = stream
        self.count = min(count, stream.events)
        self.rate = rate
        self.sent = 0
        self.done = done
        self.started = clock.seconds()
        self._limit = clock.callLater(limit, self.finish, "time limit")
        self._pacer: task.LoopingCall | None = None
        self.finished = False

    def start(self) -> None:
        if self.rate > 0:
            self._pacer = task.LoopingCall(self._paced)
            self._pacer.clock = self.clock
            self._pacer.start(0.005, now=True)
        else:
            self.transport.registerProducer(_Pull(self), False)

    def write_upto(self, stop: int) -> None:
        stop = min(stop, self.count)
        if stop > self.sent:
            self.transport.write(self.stream.slice(self.sent, stop))
            self.sent = stop
        if self.sent >= self.count:
            self.finish("done")

    def next_block(self) -> None:
        """About WRITE bytes of whole events (at least one)."""
        target = self.stream.offsets[self.sent] + WRITE
        stop = max(self.sent + 1, bisect.bisect_right(self.stream.offsets, target) - 1)
        self.write_upto(stop)

    def _paced(self) -> None:
        self.write_upto(int((self.clock.seconds() - self.started) * self.rate))

    def finish(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        if self._limit.active():
            self._limit.cancel()
        if self._pacer is not None and self._pacer.running:
            self._pacer.stop()
        if self.rate <= 0 and self.transport.producer is not None:
            self.transport.unregisterProducer()
        self.done(self, reason)


@implementer(IPullProducer)
class _Pull:
    def __init__(self, flood: Flood) -> None:
        self.flood = flood

    def resumeProducing(self) -> None:
        if not self.flood.finished:
            self.flood.next_block()

    def stopProducing(self) -> None:
        self.flood.finish("connection lost")


class FakeAsterisk(protocol.Protocol):
    def __init__(self, factory: FakeFactory) -> None:
        self.factory = factory
        self.buffer = b""
        self.logged_in = False
        self.flood: Flood | None = None

    def connectionMade(self) -> None:
        self.transport.write(BANNER)

    def connectionLost(self, reason=None) -> None:
        if self.flood is not None and not self.flood.finished:
            self.flood.finished = True
        self.factory.lost()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        actions, self.buffer = codec.parse_messages(self.buffer)
        for action in actions:
            self.answer(action)

    def answer(self, action: codec.AmiMessage) -> None:
        name = action.get("Action")
        action_id = action.action_id
        reply = self.transport.write
        if name == "Challenge":
            reply(message(("Response", "Success"), ("ActionID", action_id), ("Challenge", CHALLENGE)))
        elif name == "Login":
            key = hashlib.md5((CHALLENGE + self.factory.secret).encode()).hexdigest()
            self.logged_in = action.get("Key") == key
            if self.logged_in:
                reply(message(("Response", "Success"), ("ActionID", action_id), ("Message", "Authentication accepted")))
            else:
                reply(message(("Response", "Error"), ("ActionID", action_id), ("Message", "Authentication failed")))
        elif not self.logged_in:
            reply(message(("Response", "Error"), ("ActionID", action_id), ("Message", "Permission denied")))
        elif name == "Ping":
            reply(message(("Response", "Success"), ("ActionID", action_id), ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")))
        elif name == "QueueStatus":
            self.reply_list(action_id, name, [[("Event", "QueueParams"), ("Queue", "12345"), ("Max", "0"), ("Calls", "0")]])
        elif name in ("PJSIPShowRegistrationsOutbound", "CoreShowChannels"):
            self.reply_list(action_id, name, [])
        elif name == "BenchFlood":
            self.start_flood(action)
        else:
            reply(message(("Response", "Error"), ("ActionID", action_id), ("Message", "Invalid/unknown command")))

    def reply_list(self, action_id: str, name: str, events: list[list[tuple[str, object]]]) -> None:
        out = [message(("Response", "Success"), ("ActionID", action_id), ("EventList", "start"), ("Message", f"{name} will follow"))]
        out += [message(*fields, ("ActionID", action_id)) for fields in events]
        complete = {"QueueStatus": "QueueStatusComplete", "CoreShowChannels": "CoreShowChannelsComplete"}.get(
            name, "OutboundRegistrationDetailComplete"
        )
        out.append(message(("Event", complete), ("ActionID", action_id), ("EventList", "Complete"), ("ListItems", len(events))))
        self.transport.write(b"".join(out))

    def start_flood(self, action: codec.AmiMessage) -> None:
        action_id = action.action_id
        stream = self.factory.streams.get(action.get("Stream", "subscribed"))
        if stream is None or (self.flood is not None and not self.flood.finished):
            self.transport.write(message(("Response", "Error"), ("ActionID", action_id), ("Message", "no such stream, or busy")))
            return

        def done(flood: Flood, reason: str) -> None:
            if reason == "connection lost":
                return
            seconds = self.factory.clock.seconds() - flood.started
            self.transport.write(
                message(("Response", "Success"), ("ActionID", action_id), ("Events", flood.sent),
                        ("Seconds", f"{seconds:.6f}"), ("Reason", reason))
            )

        self.flood = Flood(
            self.factory.clock, self.transport, stream, int(action.get("Events", "0") or 0),
            float(action.get("Rate", "0") or 0), float(action.get("Limit", "60") or 60), done,
        )
        self.flood.start()


class FakeFactory(protocol.Factory):
    def __init__(self, clock, streams: dict[str, Stream], secret: str, on_lost) -> None:
        self.clock = clock
        self.streams = streams
        self.secret = secret
        self.on_lost = on_lost

    def buildProtocol(self, addr) -> FakeAsterisk:
        return FakeAsterisk(self)

    def lost(self) -> None:
        self.on_lost()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events built per stream kind")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--deadline", type=float, default=180.0, help="exit after this many seconds regardless")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    streams = {kind: build_stream(args.events, kind) for kind in ("subscribed", "all")}
    factory = FakeFactory(reactor, streams, args.secret, on_lost=lambda: reactor.callLater(0, _stop, reactor))
    for _ in range(20):
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        if port.getHost().port not in FORBIDDEN_PORTS:
            break
        port.stopListening()
    else:
        raise SystemExit("could not get an ephemeral port outside the forbidden ones")
    reactor.callLater(args.deadline, _stop, reactor)
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()


def _stop(reactor) -> None:
    if reactor.running:
        reactor.stop()


if __name__ == "__main__":
    main()
