"""A small reactor-native Redis client: pipelines over one connection, no threads.

Why: the call records used to go through blocking redis-py in a thread pool;
the worker thread and the hand-off cost ~10–15 % of the gateway's CPU per call
and the GIL contention added latency under load. Here the reactor writes a
whole pipeline in one ``transport.write`` and parses the replies as they come.

Wire format is left to hiredis (the C library redis-py uses too):
``hiredis.pack_command`` encodes, ``hiredis.Reader`` parses. The pieces:

* :class:`RespProtocol` — one Deferred per request (a request is a pipeline of
  commands), paired with replies in FIFO order; per-request timeouts on an
  injected clock; nothing waits forever.
* :class:`RespClient` — a :class:`~twisted.application.service.Service` around
  :class:`~twisted.application.internet.ClientService` (reconnect with a
  jittered backoff); AUTH / SELECT run in ``prepareConnection``, so a
  connection is handed out only once it is usable. :meth:`RespClient.execute`
  fails at once when there is no such connection: callers (the call-record
  store) keep their own backlog and retry; nothing queues behind a dead Redis.
  With Redis Sentinel (``sentinels=``) every (re)connection asks the sentinels
  for the primary (:class:`~gateway.storage.sentinel_endpoint.SentinelEndpoint`),
  the handshake ends with ``ROLE`` and a server that is not ``master`` is
  refused (dropped, retried with the backoff); a ``-READONLY`` reply (a
  demoted primary) drops the connection, so the next one re-resolves.

How errors surface: an error reply (``-ERR …``) is never returned as a value.
A request with any error reply fails with :class:`RespCommandError`, naming the
command (never its arguments: they may hold a password or a phone number);
its ``replies`` keep every reply of the pipeline (errors as
``hiredis.ReplyError``), because the other commands of a non-transactional
pipeline did run. Errors nested inside a reply (``EXEC``) stay in the value.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import hiredis
from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, endpoints, protocol
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..clientservice import mute_disconnect_notice
from .redis_url import RedisAddress, Sentinels, parse_redis_url

__all__ = [
    "RedisAddress",
    "RespClient",
    "RespCommandError",
    "RespConnectionLost",
    "RespFactory",
    "RespNotConnected",
    "RespNotPrimary",
    "RespProtocol",
    "RespProtocolError",
    "RespTimeout",
    "encode_pipeline",
    "endpoint_for",
    "handshake_commands",
    "parse_redis_url",
]

log = Logger()

Arg = bytes | str | int | float
Command = Sequence[Arg]

#: what ``Reader.gets`` returns while a reply is incomplete (``False`` is a valid RESP3 reply)
_NOT_ENOUGH = object()


class RespCommandError(Exception):
    """Redis answered a command of the request with an error reply."""

    def __init__(self, command: str, index: int, count: int, message: str, replies: list) -> None:
        errors = sum(isinstance(reply, hiredis.ReplyError) for reply in replies)
        more = f" (and {errors - 1} more error repl{'y' if errors == 2 else 'ies'})" if errors > 1 else ""
        where = f" (command {index + 1} of {count})" if count > 1 else ""
        super().__init__(f"{command}{where} failed: {message}{more}")
        self.command = command
        self.index = index
        self.message = message
        #: every reply of the request, error replies as ``hiredis.ReplyError``
        self.replies = replies


class RespConnectionLost(ConnectionError):
    """The connection closed (or was dropped) while the request was pending."""


class RespNotConnected(ConnectionError):
    """No usable connection right now: the request was not sent."""


class RespNotPrimary(ConnectionError):
    """The server a sentinel named is not the primary (``ROLE`` says otherwise); the connection is refused."""


class RespProtocolError(ConnectionError):
    """The server sent something that is not RESP (or a reply nobody asked for); the connection is dropped."""


class RespTimeout(TimeoutError):
    """No complete answer within the request timeout; the connection is dropped (replies would no longer pair)."""


def command_name(command: Command) -> str:
    """The command's name for messages (``HSET``); never its arguments."""
    if not command:
        return "<empty command>"
    name = command[0]
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return str(name).upper()[:32]


def describe(commands: Sequence[Command]) -> str:
    """``HSET`` for one command, ``pipeline of 3 (HSET, EXPIRE, ZADD)`` for more."""
    return _label([command_name(c) for c in commands])


def _label(names: list[str]) -> str:
    if not names:
        return "empty pipeline"
    if len(names) == 1:
        return names[0]
    distinct = list(dict.fromkeys(names))
    shown = ", ".join(distinct[:4]) + (", …" if len(distinct) > 4 else "")
    return f"pipeline of {len(names)} ({shown})"


def encode_pipeline(commands: Sequence[Command]) -> bytes:
    """RESP bytes for ``commands``, in order; ValueError/TypeError for what cannot be sent."""
    chunks = []
    for command in commands:
        if not command:
            raise ValueError("empty command")
        chunks.append(hiredis.pack_command(tuple(command)))
    return b"".join(chunks)


def handshake_commands(address: RedisAddress) -> list[tuple[Arg, ...]]:
    """AUTH then SELECT, as the URL asks; sent as one pipeline before a connection is used.

    A username without a password sends ``AUTH user ""`` (as redis-py does),
    so both clients of the gateway treat one URL alike.
    """
    commands: list[tuple[Arg, ...]] = []
    if address.username:
        commands.append(("AUTH", address.username, address.password or ""))
    elif address.password is not None:
        commands.append(("AUTH", address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    return commands


@dataclass(eq=False)
class _Request:
    label: str
    names: list[str]
    deferred: defer.Deferred
    replies: list = field(default_factory=list)
    timer: IDelayedCall | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class RespProtocol(protocol.Protocol):
    """One Redis connection; replies pair with requests in the order they were sent.

    ``clock`` and ``timeout`` (seconds) bound every request. A timeout, garbage
    from the server or a reply nobody asked for leaves the reply stream out of
    step, so each fails every pending request and aborts the connection; the
    client reconnects.
    """

    def __init__(self, clock: IReactorTime | None = None, timeout: float | None = None) -> None:
        self.clock = clock
        self.timeout = timeout
        self.closed = False
        #: set once the connection is being dropped: nothing more is sent or read
        self.dropping = False
        self._reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self._pending: deque[_Request] = deque()
        self._idle_waiters: list[defer.Deferred] = []
        #: fires (None) once the connection is gone
        self.lost: defer.Deferred = defer.Deferred()

    # -- state -----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True while requests can be sent on this connection."""
        return (
            self.transport is not None and not self.closed and not self.dropping
            and not getattr(self.transport, "disconnecting", False)
        )

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    def when_idle(self) -> defer.Deferred:
        """Fires once no request is pending (at once if none is): for a clean stop."""
        if not self._pending:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    # -- requests --------------------------------------------------------------
    def execute(self, commands: Sequence[Command]) -> defer.Deferred:
        """Send ``commands`` as one pipeline (one write); fires with the list of replies."""
        names = [command_name(c) for c in commands]
        label = _label(names)
        if not self.ready:
            return defer.fail(RespNotConnected(f"{label}: not connected"))
        if not commands:
            return defer.succeed([])
        try:
            data = encode_pipeline(commands)
        except (TypeError, ValueError) as exc:
            return defer.fail(ValueError(f"{label}: cannot encode: {exc}"))
        request = _Request(label, names, defer.Deferred())
        if self.timeout is not None and self.clock is not None:
            request.timer = self.clock.callLater(self.timeout, self._timed_out, request)
        self._pending.append(request)
        self.transport.write(data)
        return request.deferred

    def drop(self, why: str) -> None:
        """Fail every pending request (:class:`RespConnectionLost`) and abort the connection."""
        if not self.dropping:
            self._drop(RespConnectionLost, why)

    # -- Twisted callbacks -----------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self.dropping or self.closed:
            return  # the stream is out of step or gone: nothing here pairs any more
        self._reader.feed(data)
        while not self.dropping:
            try:
                reply = self._reader.gets()
            # hiredis.ProtocolError, but also TypeError (a map keyed by an array): any of them
            # means the stream is unreadable; reported to every caller below, not swallowed
            except Exception as exc:  # noqa: BLE001
                self._drop(RespProtocolError, f"unreadable reply from Redis ({type(exc).__name__}: {exc})")
                return
            if reply is _NOT_ENOUGH:
                return
            if not self._pending:
                self._drop(RespProtocolError, "a reply from Redis that no request asked for")
                return
            self._deliver(reply)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = self.dropping = True
        why = reason.getErrorMessage()
        self._fail_pending(lambda request: RespConnectionLost(f"{request.label}: connection lost ({why})"))
        if not self.lost.called:
            self.lost.callback(None)

    # -- internals -------------------------------------------------------------
    def _deliver(self, reply: object) -> None:
        request = self._pending[0]
        request.replies.append(reply)
        if len(request.replies) < len(request.names):
            return
        self._pending.popleft()
        request.cancel_timer()
        for index, item in enumerate(request.replies):
            if isinstance(item, hiredis.ReplyError):
                error = RespCommandError(request.names[index], index, len(request.names), str(item), request.replies)
                request.deferred.errback(error)
                break
        else:
            request.deferred.callback(request.replies)
        self._check_idle()

    def _timed_out(self, request: _Request) -> None:
        request.timer = None
        if request in self._pending:
            self._drop(RespTimeout, f"no reply within {self.timeout:g}s", culprit=request)

    def _drop(self, error: type[Exception], why: str, culprit: _Request | None = None) -> None:
        """Fail every pending request and abort: the reply stream can no longer be paired."""
        self.dropping = True
        log.warn("Redis connection dropped: {why}", why=why)

        def failure_for(request: _Request) -> Exception:
            if culprit is None or request is culprit:
                return error(f"{request.label}: {why}")
            return RespConnectionLost(f"{request.label}: connection dropped ({culprit.label}: {why})")

        self._fail_pending(failure_for)
        if self.transport is not None:
            self.transport.abortConnection()

    def _fail_pending(self, failure_for: Callable[[_Request], Exception]) -> None:
        pending, self._pending = self._pending, deque()
        for request in pending:
            request.cancel_timer()
            request.deferred.errback(failure_for(request))
        self._check_idle()

    def _check_idle(self) -> None:
        if self._pending or not self._idle_waiters:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)


# -- client ------------------------------------------------------------------------
EndpointFactory = Callable[[IReactorTime, RedisAddress, float], IStreamClientEndpoint]


def endpoint_for(reactor, address: RedisAddress, connect_timeout: float) -> IStreamClientEndpoint:
    """TCP (IP literals directly, names through the reactor's resolver), TLS for ``rediss://``, or a unix socket."""
    if address.scheme == "unix":
        return endpoints.UNIXClientEndpoint(reactor, address.path, timeout=connect_timeout)
    if isIPAddress(address.host):
        endpoint = endpoints.TCP4ClientEndpoint(reactor, address.host, address.port, timeout=connect_timeout)
    elif isIPv6Address(address.host):
        endpoint = endpoints.TCP6ClientEndpoint(reactor, address.host, address.port, timeout=connect_timeout)
    else:
        endpoint = endpoints.HostnameEndpoint(reactor, address.host, address.port, timeout=connect_timeout)
    if address.tls:
        from twisted.internet import ssl

        endpoint = endpoints.wrapClientTLS(ssl.optionsForClientTLS(address.host), endpoint)
    return endpoint


class RespFactory(protocol.Factory):
    """Builds a :class:`RespProtocol` whose requests time out after ``timeout`` on ``clock``."""

    noisy = False  # no "Starting factory" line on every reconnect

    def __init__(self, clock: IReactorTime, timeout: float | None) -> None:
        self.clock = clock
        self.timeout = timeout

    def buildProtocol(self, addr) -> RespProtocol:
        return RespProtocol(clock=self.clock, timeout=self.timeout)


class RespClient(service.Service):
    """A self-healing Redis connection for pipelines that must never wait for one.

    ``url`` is parsed at once (:class:`ValueError` for a bad one); ``timeout``
    bounds every request, the AUTH/SELECT handshake included. Reconnects with
    a jittered exponential backoff (``reconnect_initial`` … ``reconnect_max``).
    With ``sentinels`` the URL gives only the database and the credentials: each
    connection goes to the primary the sentinels name then (each sentinel asked
    within ``timeout``, or ``connect_timeout`` without one) and must say
    ``ROLE`` master.
    """

    def __init__(
        self,
        url: str,
        *,
        reactor,
        sentinels: Sentinels | None = None,
        timeout: float | None = 0.5,
        connect_timeout: float = 5.0,
        endpoint_factory: EndpointFactory = endpoint_for,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        reconnect_factor: float = 2.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.address = parse_redis_url(url)
        self.sentinels = sentinels
        self.clock: IReactorTime = reactor
        self.timeout = timeout
        self._current: RespProtocol | None = None
        self._connections = 0
        if sentinels is None:
            endpoint = endpoint_factory(reactor, self.address, connect_timeout)
        else:
            from .sentinel_endpoint import SentinelEndpoint

            endpoint = SentinelEndpoint(reactor, sentinels, timeout=timeout or connect_timeout,
                                        connect_timeout=connect_timeout, scheme=self.address.scheme,
                                        endpoint_factory=endpoint_factory)
        self._endpoint = endpoint
        self._service = ClientService(
            endpoint,
            RespFactory(reactor, timeout),
            retryPolicy=backoffPolicy(reconnect_initial, reconnect_max, reconnect_factor, jitter),
            clock=reactor,
            prepareConnection=self._prepare,
        )

    def __repr__(self) -> str:
        return f"<RespClient {self.target}>"

    @property
    def target(self) -> str:
        """What the client connects to, for log lines: the URL (password hidden) or the sentinels."""
        if self.sentinels is None:
            return str(self.address)
        primary = getattr(self._endpoint, "primary", None)
        now = f", primary {primary[0]}:{primary[1]}" if primary else ""
        return f"{self.address} through {self.sentinels}{now}"

    # -- public API --------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a prepared (authenticated, selected) connection is up."""
        return self._current is not None and self._current.ready

    def execute(self, commands: Sequence[Command]) -> defer.Deferred:
        """Send a pipeline now; fails at once with :class:`RespNotConnected` when there is no connection."""
        current = self._current
        if current is None or not current.ready:
            label = describe(commands)
            return defer.fail(RespNotConnected(f"{label}: Redis at {self.target} is not connected"))
        return current.execute(commands).addErrback(self._drop_if_demoted, current)

    def ping(self) -> defer.Deferred:
        """Fires True when Redis answers PING now, False otherwise (readiness)."""
        d = self.execute([("PING",)])
        d.addCallbacks(lambda replies: replies == [b"PONG"], lambda _failure: False)
        return d

    def when_connected(self, fail_after_failures: int | None = None) -> defer.Deferred:
        """Fires (None) once a prepared connection is up (start-up of benchmarks and tests);
        fails after ``fail_after_failures`` failed attempts if given."""
        d = self._service.whenConnected(failAfterFailures=fail_after_failures)
        return d.addCallback(lambda _proto: None)

    # -- service -----------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._service.startService()

    def stopService(self) -> defer.Deferred:
        """Let requests already sent finish (bounded by their timeout), then disconnect."""
        super().stopService()
        current = self._current
        d = current.when_idle() if current is not None else defer.succeed(None)
        d.addTimeout(self.timeout if self.timeout is not None else 5.0, self.clock)
        d.addErrback(lambda _failure: None)
        d.addCallback(lambda _: self._service.stopService())
        return d

    @staticmethod
    def _drop_if_demoted(failure: Failure, proto: RespProtocol) -> Failure:
        """A ``-READONLY`` reply: the primary was demoted to a replica. Drop the connection (the
        next one asks the sentinels again); the request still fails, and its caller retries."""
        error = failure.value if failure.check(RespCommandError) else None
        if error is not None and any(_is_readonly(reply) for reply in error.replies) and proto.ready:
            proto.drop("READONLY reply: the server is no longer the primary; reconnecting")
        return failure

    # -- connection preparation (AUTH / SELECT [/ ROLE]) ------------------------------
    def _prepare(self, proxy) -> defer.Deferred:
        proto: RespProtocol = getattr(proxy, "_protocol", proxy)
        commands = handshake_commands(self.address)
        if self.sentinels is not None:
            commands.append(("ROLE",))
        d = proto.execute(commands) if commands else defer.succeed([])
        d.addCallback(self._connection_ready, proto)
        d.addErrback(self._reject, proxy, proto)
        return d

    def _connection_ready(self, replies, proto: RespProtocol) -> None:
        if not proto.ready:
            raise RespConnectionLost("connection lost during AUTH/SELECT")
        if self.sentinels is not None:
            role = replies[-1][0] if isinstance(replies[-1], list) and replies[-1] else replies[-1]
            if role != b"master":
                shown = role.decode("ascii", "replace") if isinstance(role, bytes) else repr(role)
                raise RespNotPrimary(f"the server the sentinels named is a {shown}, not the primary "
                                     "(a failover in progress?)")
        self._current = proto
        self._connections += 1
        log.info("Redis {address} connected (connection {n})", address=self.target, n=self._connections)
        proto.lost.addCallback(lambda _: self._connection_lost(proto))

    def _reject(self, failure: Failure, proxy, proto: RespProtocol) -> Failure:
        mute_disconnect_notice(proxy)
        if not proto.closed and proto.transport is not None:
            proto.transport.abortConnection()
        log.warn("Redis {address}: connection setup failed: {error}", address=self.target,
                 error=failure.getErrorMessage())
        return failure

    def _connection_lost(self, proto: RespProtocol) -> None:
        if self._current is not proto:
            return
        self._current = None
        if self.running:
            log.warn("Redis {address}: connection lost; reconnecting", address=self.target)


def _is_readonly(reply: object) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("READONLY")
