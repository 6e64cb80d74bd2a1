"""An endpoint that connects to the primary the sentinels name now (the Sentinel client protocol).

:class:`SentinelEndpoint` is an ``IStreamClientEndpoint``: ``ClientService``
calls its ``connect`` at every (re)connection, so every new connection of the
:class:`~gateway.storage.resp.RespClient` re-resolves the primary. A connect:

1. asks the sentinels in order, each bounded by ``timeout`` on the injected
   clock (connect, then ``[AUTH]`` + ``SENTINEL get-master-addr-by-name
   <master>`` over a :class:`~gateway.storage.resp.RespProtocol`), and moves
   on to the next one when it is refused, times out, errs or does not know
   the master;
2. moves the sentinel that named an address to the head of the list (the
   next reconnection asks it first);
3. connects ``factory`` to that address. Whether it really is the primary
   (``ROLE`` says ``master``) is checked by the client's handshake, as the
   protocol asks: a sentinel may name a demoted primary for a while.

When no sentinel names the primary the connect fails with
:class:`~gateway.storage.redis_url.SentinelError` naming every sentinel and
why; ``ClientService`` then retries with its backoff. Sentinels are reached
over plain TCP (the primary over TLS too, with ``rediss://``).
"""
from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from .redis_url import RedisAddress, Sentinels, format_host_port
from .resp import RespCommandError, RespFactory, RespTimeout, endpoint_for

__all__ = ["SentinelEndpoint"]

log = Logger()

EndpointFactory = Callable[[IReactorTime, RedisAddress, float], IStreamClientEndpoint]

#: what asking one sentinel may fail with; each means "ask the next one"
_SENTINEL_FAILURES = (ConnectionError, TimeoutError, error.ConnectError, error.TimeoutError, defer.TimeoutError,
                      defer.CancelledError, RespCommandError, ValueError)


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """Connects to the primary of ``sentinels.master``; see the module's docstring."""

    def __init__(
        self,
        reactor,
        sentinels: Sentinels,
        *,
        timeout: float,
        connect_timeout: float,
        scheme: str = "redis",
        endpoint_factory: EndpointFactory = endpoint_for,
    ) -> None:
        self._reactor = reactor
        self.sentinels = sentinels
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._scheme = scheme
        self._endpoint_factory = endpoint_factory
        #: the sentinels in the order the next connect asks them
        self.order: list[tuple[str, int]] = list(sentinels.addresses)
        #: the address the last connect was sent to (for log lines)
        self.primary: tuple[str, int] | None = None
        #: the last resolve failed (its error was logged; the next ones are not, until one succeeds)
        self._failing = False

    def __repr__(self) -> str:
        return f"<SentinelEndpoint {self.sentinels}>"

    def connect(self, factory) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory):
        try:
            host, port = await self.resolve()
        except Exception as exc:
            if not self._failing:
                log.warn("Redis: {error}; retrying", error=str(exc))
            self._failing = True
            raise
        if self._failing or (host, port) != self.primary:
            log.info("Redis primary {master!r} is at {host}:{port} (as the sentinels say)",
                     master=self.sentinels.master, host=host, port=port)
        self._failing = False
        self.primary = (host, port)
        address = RedisAddress(self._scheme, host=host, port=port)
        return await self._endpoint_factory(self._reactor, address, self._connect_timeout).connect(factory)

    async def resolve(self) -> tuple[str, int]:
        """The primary's (host, port) as the first sentinel that knows it says; :class:`SentinelError` otherwise."""
        errors: list[str] = []
        answered: list[str] = []
        for sentinel in list(self.order):
            shown = format_host_port(*sentinel)
            try:
                primary = await self._ask(sentinel)
            except _SENTINEL_FAILURES as exc:
                errors.append(f"{shown}: {_reason(exc)}")
                continue
            if primary is None:
                answered.append(shown)
                continue
            self.order.remove(sentinel)
            self.order.insert(0, sentinel)
            return primary
        if answered:
            raise self.sentinels.unknown_master(answered, errors)
        raise self.sentinels.none_answered(errors)

    async def _ask(self, sentinel: tuple[str, int]) -> tuple[str, int] | None:
        host, port = sentinel
        endpoint = self._endpoint_factory(self._reactor, RedisAddress("redis", host=host, port=port), self._timeout)
        connecting = endpoint.connect(RespFactory(self._reactor, self._timeout))
        connecting.addTimeout(self._timeout, self._reactor)
        proto = await connecting
        commands: list[tuple] = [("AUTH", self.sentinels.password)] if self.sentinels.password else []
        commands.append(("SENTINEL", "get-master-addr-by-name", self.sentinels.master))
        try:
            replies = await proto.execute(commands)
        finally:
            if proto.transport is not None:
                proto.transport.loseConnection()
        return primary_from_reply(replies[-1])


def primary_from_reply(reply: object) -> tuple[str, int] | None:
    """``[host, port]`` → (host, port); a nil reply (the sentinel does not know the master) → None."""
    if reply is None:
        return None
    if isinstance(reply, list) and len(reply) == 2 and all(isinstance(part, bytes) for part in reply):
        host, port = reply[0].decode("ascii", "replace"), reply[1].decode("ascii", "replace")
        if host and port.isdigit():
            return host, int(port)
    raise ValueError(f"not an address: {reply!r:.80}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, error.TimeoutError, error.TCPTimedOutError, defer.TimeoutError,
                        defer.CancelledError)) and not isinstance(exc, RespTimeout):
        return "timed out"
    return str(exc) or type(exc).__name__
