"""A scripted Asterisk for AMI unit tests (StringTransport, no sockets, no sleeps).

Replies are shaped like Asterisk 22's (see tests/lab/fixtures/*.ami for the
recorded real thing): CRLF lines, a blank line after each message, ActionID
echoed, EventList actions answered by ``EventList: start`` … ``Complete``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from gateway.ami import codec

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CHALLENGE = "840415273"


def message(**headers: object) -> bytes:
    """One AMI message; ``Event_``-style keys are not needed: use a dict for odd names."""
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"


def event(name: str, **headers: object) -> bytes:
    return message(Event=name, **headers)


class FakeAsterisk:
    """The server side of one connection: reads actions, writes scripted replies."""

    def __init__(self, proto, transport: StringTransportWithDisconnection, secret: str) -> None:
        self.proto = proto
        self.transport = transport
        self.secret = secret
        self.login_ok = True
        self.answer_pings = True
        #: action name → list of event dicts (an EventList reply); missing → Error
        self.lists: dict[str, list[dict[str, object]]] = {}
        #: Getvar: variable/function expression → value; missing → Error (as when the
        #: function's module is not loaded)
        self.variables: dict[str, str] = {}
        #: action name → "hold": do not answer (the test answers, or nobody does)
        self.hold: set[str] = set()
        self.actions: list[codec.AmiMessage] = []
        self.held: list[codec.AmiMessage] = []

    # -- wire ------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.transport.connected:
            self.proto.dataReceived(data)

    def greet(self) -> None:
        self.send(BANNER)

    def drop(self) -> None:
        """Asterisk closes the connection."""
        if self.transport.connected:
            self.transport.connected = False
            self.proto.connectionLost(Failure(ConnectionDone("Asterisk went away")))

    def read_actions(self) -> list[codec.AmiMessage]:
        data = self.transport.value()
        self.transport.clear()
        actions, rest = codec.parse_messages(data)
        assert rest == b"", rest
        self.actions.extend(actions)
        return actions

    def pump(self) -> list[codec.AmiMessage]:
        """Answer every action written so far (repeats until quiet); returns them."""
        handled = []
        while self.transport.connected:
            actions = self.read_actions()
            if not actions:
                break
            for action in actions:
                handled.append(action)
                self._answer(action)
        return handled

    # -- replies -----------------------------------------------------------------
    def _answer(self, action: codec.AmiMessage) -> None:
        name = action.get("Action")
        action_id = action.action_id
        if name in self.hold:
            self.held.append(action)
            return
        if name == "Challenge":
            self.send(message(Response="Success", ActionID=action_id, Challenge=CHALLENGE))
        elif name == "Login":
            expected = hashlib.md5((CHALLENGE + self.secret).encode()).hexdigest()
            if self.login_ok and action.get("Key") == expected:
                self.send(message(Response="Success", ActionID=action_id, Message="Authentication accepted"))
            else:
                self.send(message(Response="Error", ActionID=action_id, Message="Authentication failed"))
        elif name == "Ping":
            if self.answer_pings:
                self.send(message(Response="Success", ActionID=action_id, Ping="Pong", Timestamp="1795307447.1"))
        elif name in self.lists:
            self.reply_list(action, self.lists[name])
        elif name == "Getvar" and action.get("Variable") in self.variables:
            self.send(message(Response="Success", ActionID=action_id, Variable=action.get("Variable"),
                              Value=self.variables[action.get("Variable")]))
        else:
            self.send(message(Response="Error", ActionID=action_id, Message="Invalid/unknown command"))

    def reply_list(self, action: codec.AmiMessage, events: list[dict[str, object]]) -> None:
        action_id = action.action_id
        name = action.get("Action")
        self.send(message(Response="Success", ActionID=action_id, EventList="start", Message=f"{name} will follow"))
        for fields in events:
            self.send(message(**{**fields, "ActionID": action_id}))
        complete = {"QueueStatus": "QueueStatusComplete", "CoreShowChannels": "CoreShowChannelsComplete"}.get(
            name, f"{name}Complete"
        )
        self.send(event(complete, ActionID=action_id, EventList="Complete", ListItems=len(events)))


class FakeEndpoint:
    """An endpoint whose connections are :class:`FakeAsterisk` peers."""

    def __init__(self, secret: str = "s3cret", greet: bool = True) -> None:
        self.secret = secret
        self.greet = greet
        self.refuse = False
        self.peers: list[FakeAsterisk] = []
        self.attempts = 0
        self.on_connect: Callable[[FakeAsterisk], None] | None = None

    def connect(self, factory) -> defer.Deferred:
        self.attempts += 1
        if self.refuse:
            return defer.fail(ConnectionRefusedError("Connection refused"))
        proto = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        peer = FakeAsterisk(proto, transport, self.secret)
        self.peers.append(peer)
        if self.on_connect is not None:
            self.on_connect(peer)
        if self.greet:
            peer.greet()
        return defer.succeed(proto)

    @property
    def peer(self) -> FakeAsterisk:
        return self.peers[-1]
