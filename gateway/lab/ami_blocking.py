"""A small blocking AMI client for the lab CLI and the integration tests.

Not for the gateway (which is asynchronous, on the reactor): this one blocks
on a plain socket with timeouts, which is what a command-line tool and a
pytest test want. Framing is a pure function (:func:`parse_messages`);
replies are paired with their action by ActionID, never by order; events
that arrive while waiting for a reply are kept for :meth:`AmiClient.events`.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Self

from .errors import LabError

__all__ = ["AmiClient", "AmiError", "AmiMessage", "format_action", "parse_messages"]

AmiMessage = dict[str, str]
Fields = Mapping[str, "str | int | Sequence[str]"] | Iterable[tuple[str, "str | int"]]

_SEPARATOR = b"\r\n\r\n"


class AmiError(LabError):
    """AMI refused an action (Response: Error) or the connection failed."""


def parse_messages(buffer: bytes) -> tuple[list[AmiMessage], bytes]:
    """Split complete AMI messages off ``buffer``: (messages, leftover bytes).

    A message is ``Key: Value`` lines ended by a blank line. A key seen twice
    keeps every value, joined by newlines.
    """
    messages: list[AmiMessage] = []
    while True:
        end = buffer.find(_SEPARATOR)
        if end < 0:
            return messages, buffer
        block, buffer = buffer[:end], buffer[end + len(_SEPARATOR) :]
        message: AmiMessage = {}
        for raw in block.split(b"\r\n"):
            line = raw.decode("utf-8", "replace")
            key, sep, value = line.partition(":")
            if not sep:
                # Response: Follows bodies and banners have bare lines
                message.setdefault("_lines", "")
                message["_lines"] += line + "\n"
                continue
            key, value = key.strip(), value.strip()
            message[key] = f"{message[key]}\n{value}" if key in message else value
        if message:
            messages.append(message)


def format_action(name: str, fields: Fields = (), action_id: str | None = None) -> bytes:
    """Serialize an action; a list value repeats the header (Variable: ...)."""
    lines = [f"Action: {name}"]
    if action_id is not None:
        lines.append(f"ActionID: {action_id}")
    items = fields.items() if isinstance(fields, Mapping) else fields
    for key, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            text = str(item)
            if "\r" in text or "\n" in text or "\r" in key or "\n" in key:
                raise ValueError(f"AMI header {key!r} must be a single line")
            lines.append(f"{key}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class AmiClient:
    """One AMI session: connect, log in, send actions, read events."""

    _ids = itertools.count(1)

    def __init__(self, host: str = "127.0.0.1", port: int = 5038, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.banner = ""
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._pending_events: deque[AmiMessage] = deque()
        self._replies: dict[str, AmiMessage] = {}

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> AmiClient:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise AmiError(f"cannot connect to AMI at {self.host}:{self.port}: {exc}") from None
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self._buffer:
            self._recv(deadline)
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        self.banner = line.decode("utf-8", "replace")
        if not self.banner.startswith("Asterisk Call Manager"):
            raise AmiError(f"not an AMI server at {self.host}:{self.port}: {self.banner!r}")
        return self

    def login(self, username: str, secret: str, events: bool = True) -> AmiMessage:
        reply = self.action(
            "Login", {"Username": username, "Secret": secret, "Events": "on" if events else "off"}, check=False
        )
        if reply.get("Response") != "Success":
            raise AmiError(f"AMI login as {username!r} refused: {reply.get('Message', reply)}")
        return reply

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendall(format_action("Logoff", action_id=self._next_id()))
        except OSError:
            pass  # closing anyway
        self._sock.close()
        self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- I/O -------------------------------------------------------------------------------
    def _next_id(self) -> str:
        return f"lab-{next(self._ids)}"

    def _recv(self, deadline: float) -> bool:
        """Read once; False on timeout. Raises when the connection is gone."""
        if self._sock is None:
            raise AmiError("AMI connection is closed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return False
        except OSError as exc:
            raise AmiError(f"AMI connection failed: {exc}") from None
        if not data:
            raise AmiError("AMI connection closed by Asterisk")
        self._buffer += data
        return True

    def _pump(self, deadline: float) -> bool:
        """Read and sort what arrived: replies by ActionID, the rest as events."""
        if not self._recv(deadline):
            return False
        messages, self._buffer = parse_messages(self._buffer)
        for message in messages:
            if "Event" not in message and "ActionID" in message:
                self._replies[message["ActionID"]] = message
            else:
                self._pending_events.append(message)
        return True

    def send(self, name: str, fields: Fields = ()) -> str:
        action_id = self._next_id()
        if self._sock is None:
            raise AmiError("AMI connection is not open")
        try:
            self._sock.sendall(format_action(name, fields, action_id))
        except OSError as exc:
            raise AmiError(f"AMI send failed: {exc}") from None
        return action_id

    def action(self, name: str, fields: Fields = (), timeout: float | None = None, check: bool = True) -> AmiMessage:
        """Send an action and wait for its reply (by ActionID)."""
        action_id = self.send(name, fields)
        deadline = time.monotonic() + (timeout or self.timeout)
        while action_id not in self._replies:
            if not self._pump(deadline) and time.monotonic() >= deadline:
                raise AmiError(f"no reply to AMI {name} within {timeout or self.timeout:.0f} s")
        reply = self._replies.pop(action_id)
        if check and reply.get("Response") == "Error":
            raise AmiError(f"AMI {name} failed: {reply.get('Message', '')}")
        return reply

    def action_list(self, name: str, fields: Fields = (), timeout: float | None = None) -> list[AmiMessage]:
        """An action answered by a list of events (EventList: start ... Complete)."""
        action_id = self.send(name, fields)
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        items: list[AmiMessage] = []
        others: deque[AmiMessage] = deque()
        try:
            while True:
                while self._pending_events:
                    event = self._pending_events.popleft()
                    if event.get("ActionID") != action_id:
                        others.append(event)
                    elif event.get("EventList") == "Complete":
                        return items
                    else:
                        items.append(event)
                reply = self._replies.pop(action_id, None)
                if reply is not None and reply.get("Response") == "Error":
                    raise AmiError(f"AMI {name} failed: {reply.get('Message', '')}")
                if not self._pump(deadline) and time.monotonic() >= deadline:
                    raise AmiError(f"AMI {name}: no complete list within {limit:.0f} s")
        finally:
            # events of other sources stay available, in order, for events()
            self._pending_events.extendleft(reversed(others))

    def events(self, timeout: float) -> Iterator[AmiMessage]:
        """Yield events as they arrive until ``timeout`` seconds pass quietly."""
        while True:
            while self._pending_events:
                yield self._pending_events.popleft()
            if not self._pump(time.monotonic() + timeout):
                return

    def next_event(self, deadline: float) -> AmiMessage | None:
        """The next event before the (monotonic) deadline, or None."""
        while not self._pending_events:
            if not self._pump(deadline) and time.monotonic() >= deadline:
                return None
        return self._pending_events.popleft()


def open_session(host: str, port: int, username: str, secret: str, timeout: float = 10.0) -> AmiClient:
    """Connect and log in; the caller closes it (or uses ``with``)."""
    client = AmiClient(host, port, timeout).connect()
    try:
        client.login(username, secret)
    except AmiError:
        client.close()
        raise
    return client


__all__ += ["open_session"]
