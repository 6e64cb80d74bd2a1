"""AMI protocol: one Deferred per action keyed by ActionID; events to a callback.

Kept deliberately small: banner, login (MD5 challenge), actions with an
optional per-action timeout, EventList collection, events. Reconnection
(ClientService) and state resynchronisation live in :mod:`gateway.ami.client`.

Nothing waits forever: every pending action fails with
:class:`AmiConnectionLost` when the connection goes, with
:class:`AmiActionTimeout` when its timeout passes, and the banner Deferred
fails if the connection closes before the greeting.
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import codec

__all__ = ["AmiActionError", "AmiActionTimeout", "AmiConnectionLost", "AmiProtocol"]

log = Logger()


class AmiActionError(RuntimeError):
    """Asterisk answered ``Response: Error`` (the message is kept)."""

    def __init__(self, message: codec.AmiMessage) -> None:
        super().__init__(message.get("Message", "action failed"))
        self.message = message


class AmiConnectionLost(ConnectionError):
    """The AMI connection closed while an action (or the banner) was pending."""


class AmiActionTimeout(TimeoutError):
    """Asterisk did not complete an action in time."""


@dataclass
class _Pending:
    action: str
    deferred: defer.Deferred
    #: None for a plain action; the messages so far for an EventList action
    collected: list[codec.AmiMessage] | None
    timer: IDelayedCall | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class AmiProtocol(protocol.Protocol):
    """One AMI connection.

    ``clock`` and ``action_timeout`` enable per-action timeouts (a
    ``timeout=`` given to :meth:`send_action` wins over the default).
    """

    on_event: Callable[[codec.AmiMessage], None] | None = None

    def __init__(self, clock: IReactorTime | None = None, action_timeout: float | None = None) -> None:
        self.clock = clock
        self.action_timeout = action_timeout
        self.closed = False
        self._buffer = b""
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self.banner: defer.Deferred = defer.Deferred()
        self.connected_banner = ""
        self.lost: defer.Deferred = defer.Deferred()

    # -- Twisted callbacks -------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self.closed or self.transport.disconnecting:
            return  # stop reading once we have decided to go away
        self._buffer += data
        try:
            messages, self._buffer = codec.parse_messages(self._buffer, expect_banner=not self.connected_banner)
        except codec.AmiProtocolError as exc:
            log.warn("AMI protocol error: {error}", error=str(exc))
            self._buffer = b""
            self.transport.abortConnection()
            return
        for message in messages:
            if self.closed:
                return
            self._dispatch(message)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        pending, self._pending = self._pending, {}
        for item in pending.values():
            item.cancel_timer()
            item.deferred.errback(AmiConnectionLost(f"{item.action}: {reason.getErrorMessage()}"))
        if not self.banner.called:
            self.banner.errback(AmiConnectionLost(f"closed before the AMI banner: {reason.getErrorMessage()}"))
        if not self.lost.called:
            self.lost.callback(None)

    # -- dispatch ------------------------------------------------------------
    def _dispatch(self, message: codec.AmiMessage) -> None:
        if "Banner" in message.headers:
            self.connected_banner = message.get("Banner")
            if not self.banner.called:
                self.banner.callback(self.connected_banner)
            return
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id else None
        if pending is None:
            if message.kind == "event":
                self._deliver_event(message)
            return
        if pending.collected is None:
            self._finish(action_id, message if message.get("Response") != "Error" else AmiActionError(message))
            return
        # EventList action: the response, then events, then "...Complete".
        if message.kind == "response":
            if message.get("Response") == "Error":
                self._finish(action_id, AmiActionError(message))
                return
            pending.collected.append(message)
            if "EventList" not in message.headers:
                # a plain reply to a list action (nothing to list): complete
                self._finish(action_id, pending.collected)
            return
        pending.collected.append(message)
        if message.get("EventList") == "Complete":
            self._finish(action_id, pending.collected)

    def _deliver_event(self, message: codec.AmiMessage) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(message)
        except Exception:  # a consumer bug must not cost us the connection
            log.failure("AMI event handler failed for {event}", event=message.name)

    def _finish(self, action_id: str, result: object) -> None:
        item = self._pending.pop(action_id)
        item.cancel_timer()
        if isinstance(result, Exception):
            item.deferred.errback(result)
        else:
            item.deferred.callback(result)

    def _timed_out(self, action_id: str) -> None:
        item = self._pending.pop(action_id, None)
        if item is not None:
            item.timer = None
            item.deferred.errback(AmiActionTimeout(f"{item.action}: no complete answer in time"))

    # -- actions -------------------------------------------------------------
    def send_action(
        self,
        action: str,
        fields: Mapping[str, object] | list | None = None,
        event_list: bool = False,
        timeout: float | None = None,
    ) -> defer.Deferred:
        """Send ``action``; the Deferred fires with the response, or with the
        list of messages (response, events, ``…Complete``) for ``event_list``."""
        if self.closed or self.transport is None:
            return defer.fail(AmiConnectionLost(f"{action}: not connected"))
        action_id = f"hl-{next(self._ids)}"
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields or [])
        pairs.insert(0, ("ActionID", action_id))
        data = codec.format_action(action, pairs)
        d: defer.Deferred = defer.Deferred()
        item = _Pending(action, d, [] if event_list else None)
        timeout = self.action_timeout if timeout is None else timeout
        if timeout is not None and self.clock is not None:
            item.timer = self.clock.callLater(timeout, self._timed_out, action_id)
        self._pending[action_id] = item
        self.transport.write(data)
        return d

    @property
    def pending_actions(self) -> int:
        return len(self._pending)

    async def login(self, username: str, secret: str, events: str = "on") -> None:
        """MD5 challenge login; ``events`` is the event-class mask for this session."""
        challenge = await self.send_action("Challenge", {"AuthType": "MD5"})
        key = hashlib.md5((challenge.get("Challenge") + secret).encode()).hexdigest()
        await self.send_action("Login", {"AuthType": "MD5", "Username": username, "Key": key, "Events": events})
