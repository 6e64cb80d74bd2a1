"""FastAGI protocol: the Twisted side of one AGI connection.

One connection carries one call. The protocol reads the ``agi_*`` header
block, hands the environment to its factory (which starts the call flow), and
from then on sends commands one at a time: every command gets its own
Deferred, fired by the reply, by a per-command timeout, or by the connection
going away. AGI replies carry no sequence number, so only one command is on
the wire at once; later commands wait in a FIFO.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from twisted.internet import defer, protocol, tcp
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import codec

__all__ = [
    "AgiCommandTimeout",
    "AgiConnectionLost",
    "FastAgiProtocol",
    "SessionHost",
]

log = Logger()

#: the blank line (empty, or only ``\r``) that ends the AGI header, with the ``\n``
#: before it; a plain pattern, so the regex engine scans for its first byte in C
#: (an ``\A`` alternative for a blank first line made the search ~20× slower)
_BLANK_LINE = re.compile(rb"\n\r*\n")
_FIRST_LINE_BLANK = re.compile(rb"\r*\n")
_MAX_HEADER_LINES = 500


class AgiConnectionLost(ConnectionError):
    """The FastAGI socket closed (usually: the caller hung up)."""


class AgiCommandTimeout(TimeoutError):
    """Asterisk did not answer a command in time; the connection is dropped."""


class SessionHost(TypingProtocol):
    """What the protocol needs from its factory."""

    clock: IReactorTime
    max_line: int
    header_timeout: float
    #: write command lines straight to a plain TCP socket (``_write_line``)
    direct_writes: bool

    def session_started(self, proto: FastAgiProtocol, env: codec.AgiEnvironment) -> None: ...

    def protocol_error(self, proto: FastAgiProtocol, reason: str) -> None: ...

    def observe_command(self, name: bytes, seconds: float) -> None: ...


def _has_long_line(buffer: bytes, start: int, end: int, limit: int) -> bool:
    """Whether the complete lines ``buffer[start:end]`` hold one longer than ``limit``: the limit of a line
    still being received, for lines that arrived whole (so how the header was cut never changes the verdict)."""
    return end - start > limit and max(map(len, buffer[start:end].split(b"\n"))) > limit


class _Pending:
    """One command: queued, then on the wire. Its name is only worked out for errors."""

    __slots__ = ("deferred", "line", "sent_at", "timeout")

    def __init__(self, line: bytes, timeout: float, deferred: defer.Deferred) -> None:
        self.line = line
        self.timeout = timeout
        self.deferred = deferred
        self.sent_at = 0.0

    @property
    def name(self) -> str:
        return " ".join(codec.command_words(self.line))


class FastAgiProtocol(protocol.Protocol):
    """One FastAGI connection. Flows never see this class: they get a session."""

    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.clock = host.clock
        self.environment: codec.AgiEnvironment | None = None
        self.hangup_received = False
        self.closed = False
        self._buffer = b""
        #: header bytes already scanned (complete, non-blank lines) and their count
        self._header_scanned = 0
        self._header_count = 0
        self._queue: deque[_Pending] = deque()
        self._in_flight: _Pending | None = None
        self._header_timer: IDelayedCall | None = None
        #: one reusable timer for the command on the wire (reset, not re-created)
        self._timer: IDelayedCall | None = None
        self._hangup_listeners: list[Callable[[], None]] = []
        #: the TCP socket commands are written to directly (see _write_line)
        self._socket = None

    # -- Twisted callbacks -------------------------------------------------
    def connectionMade(self) -> None:
        self._header_timer = self.clock.callLater(self.host.header_timeout, self._header_timed_out)
        if isinstance(self.transport, tcp.Server) and self.host.direct_writes:
            self._socket = self.transport.getHandle()

    def dataReceived(self, data: bytes) -> None:
        if self.closed or self.transport.disconnecting:
            return  # stop reading once we have decided to go away
        self._buffer += data
        try:
            if self.environment is None:
                self._read_header()
            if self.environment is not None and self._buffer:
                self._read_replies()
        except codec.AgiProtocolError as exc:
            self._fail_protocol(str(exc))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self._cancel_header_timer()
        pending = list(self._queue)
        if self._in_flight is not None:
            pending.insert(0, self._in_flight)
        self._queue.clear()
        self._in_flight = None
        self._cancel_timer()
        for item in pending:
            item.deferred.errback(AgiConnectionLost(f"connection closed during {item.name}"))
        self._notify_hangup()

    # -- header ------------------------------------------------------------
    def _read_header(self) -> None:
        """Wait for the blank line that ends the header, then parse the block at once.

        The blank line (empty, or only ``\r``) is found with one regex search
        in C from where the last look stopped, not line by line; what is not
        complete yet is held to the same limits (``max_line`` for the line
        being received, 500 header lines).
        """
        buffer = self._buffer
        start = self._header_scanned
        end = _FIRST_LINE_BLANK.match(buffer) if start == 0 else None
        if end is not None:
            block_end = 0  # no variables at all: parse_header_block says what is wrong
        else:
            end = _BLANK_LINE.search(buffer, start - 1 if start else 0)
            if end is None:
                last = buffer.rfind(b"\n") + 1  # the start of the line still being received
                if len(buffer) - last > self.host.max_line or _has_long_line(buffer, start, last, self.host.max_line):
                    raise codec.AgiProtocolError("AGI header line too long")
                self._header_count += buffer.count(b"\n", start, last)
                if self._header_count > _MAX_HEADER_LINES:
                    raise codec.AgiProtocolError("AGI header has no end")
                self._header_scanned = last
                return
            block_end = end.start() + 1
        if self._header_count + buffer.count(b"\n", start, block_end) > _MAX_HEADER_LINES:
            raise codec.AgiProtocolError("AGI header has no end")
        if _has_long_line(buffer, start, block_end, self.host.max_line):
            raise codec.AgiProtocolError("AGI header line too long")
        environment = codec.parse_header_block(buffer[:block_end])
        self._buffer = buffer[end.end() :]
        self._cancel_header_timer()
        self.environment = environment
        self.host.session_started(self, environment)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        self._fail_protocol("no complete AGI header within the header timeout")

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None and self._header_timer.active():
            self._header_timer.cancel()
        self._header_timer = None

    # -- replies -----------------------------------------------------------
    def _read_replies(self) -> None:
        messages, self._buffer = codec.parse_replies(self._buffer, self.host.max_line)
        for message in messages:
            if isinstance(message, codec.HangupNotice):
                self.hangup_received = True
                self._notify_hangup()
                continue
            item = self._in_flight
            if item is None:
                raise codec.AgiProtocolError(f"unsolicited AGI reply {message.code}")
            self._in_flight = None
            self.host.observe_command(item.line[: item.line.find(b" ")], self.clock.seconds() - item.sent_at)
            item.deferred.callback(message)
            if self.closed:
                return
        self._send_next()

    # -- commands ----------------------------------------------------------
    def send_command(self, line: bytes, timeout: float) -> defer.Deferred:
        """Queue one formatted command; the Deferred fires with its AgiReply."""
        d: defer.Deferred = defer.Deferred()
        if self.closed or self.transport is None or self.transport.disconnecting:
            d.errback(AgiConnectionLost("connection already closed"))
            return d
        item = _Pending(line, timeout, d)
        if self._in_flight is None and not self._queue:
            self._put_on_wire(item)  # the usual case: nothing waiting before it
        else:
            self._queue.append(item)
        return d

    def _send_next(self) -> None:
        if self._in_flight is not None or not self._queue or self.closed:
            return
        self._put_on_wire(self._queue.popleft())

    def _put_on_wire(self, item: _Pending) -> None:
        self._in_flight = item
        item.sent_at = now = self.clock.seconds()
        # One timer per connection, moved only when this command's deadline is
        # earlier than the timer's; a timer that fires early for a later
        # deadline re-arms itself (see _command_timed_out). Commands are
        # usually answered in milliseconds, so most never touch the timer.
        timer = self._timer
        if timer is None:
            self._timer = self.clock.callLater(item.timeout, self._command_timed_out)
        elif timer.getTime() > now + item.timeout:
            timer.reset(item.timeout)
        self._write_line(item.line)

    def _write_line(self, line: bytes) -> None:
        """Send one command line now, straight to the socket when we can.

        ``transport.write`` only buffers: the bytes go out on the reactor's next
        turn, after an ``epoll_ctl`` to watch for writability and before
        another to stop. AGI is strict request/reply — one short line, then
        nothing until Asterisk answers — so there is never anything to
        coalesce, and the socket's send buffer is empty. Writing directly saves
        the two ``epoll_ctl`` calls and a reactor turn per command (lower CPU
        per call and a shorter round trip; ``bench/fastagi_cpu_bench.py``).
        Only for a plain ``tcp.Server`` transport (never under TLS or a
        wrapping protocol). If the kernel takes less than the whole line
        (or refuses it), the rest — and every later line, to keep the order —
        goes through ``transport.write``, whose buffer and error handling
        then take over; a broken socket is noticed by the reactor as usual.
        """
        sock = self._socket
        if sock is not None:
            try:
                sent = sock.send(line)
            except OSError:  # EAGAIN, EPIPE, ECONNRESET …: Twisted's path decides
                sent = 0
            if sent == len(line):
                return
            self._socket = None
            line = line[sent:]
        self.transport.write(line)

    def _command_timed_out(self) -> None:
        self._timer = None
        item = self._in_flight
        if item is None:
            return  # the timer outlived its command (no command on the wire now)
        left = item.sent_at + item.timeout - self.clock.seconds()
        if left > 0:  # armed for an earlier command: wait for this one's own deadline
            self._timer = self.clock.callLater(left, self._command_timed_out)
            return
        self._in_flight = None
        item.deferred.errback(AgiCommandTimeout(f"no reply to {item.name} within {item.timeout:g} s"))
        # AGI replies are positional: once one is missing we can never pair
        # the next reply with the right command again. Drop the connection;
        # the dialplan goes on (to the queue) without us.
        self.close(abort=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- hang-up notification ---------------------------------------------
    def on_hangup(self, listener: Callable[[], None]) -> None:
        self._hangup_listeners.append(listener)

    def _notify_hangup(self) -> None:
        listeners, self._hangup_listeners = self._hangup_listeners, []
        for listener in listeners:
            listener()

    # -- closing -----------------------------------------------------------
    def close(self, abort: bool = False) -> None:
        if self.transport is None or self.closed:
            return
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _fail_protocol(self, reason: str) -> None:
        self.host.protocol_error(self, reason)
        self._buffer = b""
        item, self._in_flight = self._in_flight, None
        self._cancel_timer()
        if item is not None:
            item.deferred.errback(codec.AgiProtocolError(reason))
        self.close(abort=True)

