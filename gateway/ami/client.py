"""AMI connection service: reconnect, login, keepalive, resync hooks.

Built on :class:`twisted.application.internet.ClientService`:

* connect through an injected endpoint, retry with a jittered exponential
  backoff (``backoffPolicy``);
* ``prepareConnection``: wait for the banner, log in with the MD5 challenge
  and the session's event-class mask — a connection that is not logged in is
  never handed to anyone;
* once logged in: a keepalive ``Ping`` every ``keepalive_interval`` seconds
  (no answer within ``keepalive_timeout`` → the connection is dropped and
  re-established), then the ``on_ready`` hooks (state resynchronisation);
* every pending action fails when the connection goes
  (:class:`~gateway.ami.protocol.AmiConnectionLost`) and ``on_lost`` hooks run.

Events go to an :class:`~gateway.ami.router.EventRouter`. Clock and endpoint
are injected; nothing here touches the global reactor.
"""
from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol as TypingProtocol

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..clientservice import mute_disconnect_notice
from .protocol import AmiActionTimeout, AmiConnectionLost, AmiProtocol
from .router import EventRouter

__all__ = ["DEFAULT_EVENT_CLASSES", "ActionSender", "AmiClient", "AmiNotConnected", "AmiObserver"]

log = Logger()

#: Event classes asked for at login. ``dialplan`` (Newexten/VarSet, by far the
#: largest volume) is left out: the gateway's consumers need none of it.
DEFAULT_EVENT_CLASSES = "call,agent,user,system"


class AmiNotConnected(ConnectionError):
    """No logged-in AMI session right now."""


class ActionSender(TypingProtocol):
    """What resync hooks get: one logged-in session."""

    def send_action(
        self, action: str, fields: Mapping[str, object] | list | None = None, event_list: bool = False,
        timeout: float | None = None,
    ) -> defer.Deferred: ...


class AmiObserver(TypingProtocol):
    """Health counters the client reports (see ``gateway.monitor.metrics.AmiMetrics``)."""

    def connected(self, up: bool) -> None: ...

    def reconnected(self) -> None: ...

    def login_failed(self) -> None: ...

    def keepalive_timeout(self) -> None: ...


class _NoObserver:
    def connected(self, up: bool) -> None:
        pass

    def reconnected(self) -> None:
        pass

    def login_failed(self) -> None:
        pass

    def keepalive_timeout(self) -> None:
        pass


ReadyHook = Callable[[ActionSender], Awaitable[object] | object]
LostHook = Callable[[], object]


class _Factory(protocol.Factory):
    def __init__(self, clock: IReactorTime, action_timeout: float, router: EventRouter) -> None:
        self.clock = clock
        self.action_timeout = action_timeout
        self.router = router

    def buildProtocol(self, addr) -> AmiProtocol:
        proto = AmiProtocol(clock=self.clock, action_timeout=self.action_timeout)
        proto.on_event = self.router.dispatch
        return proto


class AmiClient(service.Service):
    """A self-healing, logged-in AMI session."""

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        username: str,
        secret: str,
        *,
        clock: IReactorTime,
        router: EventRouter,
        observer: AmiObserver | None = None,
        events: str = DEFAULT_EVENT_CLASSES,
        keepalive_interval: float = 15.0,
        keepalive_timeout: float = 5.0,
        action_timeout: float = 10.0,
        login_timeout: float = 10.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        reconnect_factor: float = 2.0,
        jitter: Callable[[], float] = random.random,
        on_ready: Sequence[ReadyHook] = (),
        on_lost: Sequence[LostHook] = (),
    ) -> None:
        if keepalive_timeout >= keepalive_interval:
            raise ValueError("keepalive_timeout must be shorter than keepalive_interval")
        self.username = username
        self._secret = secret
        self.clock = clock
        self.router = router
        self.observer: AmiObserver = observer or _NoObserver()
        self.events = events
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.login_timeout = login_timeout
        self._on_ready = list(on_ready)
        self._on_lost = list(on_lost)
        self._session: AmiProtocol | None = None
        self._sessions = 0
        self._keepalive: IDelayedCall | None = None
        self._rearm: IDelayedCall | None = None
        self._waiting: defer.Deferred | None = None
        self.retry_policy = backoffPolicy(reconnect_initial, reconnect_max, reconnect_factor, jitter)
        self._service = ClientService(
            endpoint,
            _Factory(clock, action_timeout, router),
            retryPolicy=self.retry_policy,
            clock=clock,
            prepareConnection=self._prepare,
        )

    # -- public API ----------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        """True while a logged-in session is up (for ``/readyz``)."""
        return self._session is not None and not self._session.closed

    def add_ready_hook(self, hook: ReadyHook) -> None:
        self._on_ready.append(hook)

    def add_lost_hook(self, hook: LostHook) -> None:
        self._on_lost.append(hook)

    def send_action(
        self, action: str, fields: Mapping[str, object] | list | None = None, event_list: bool = False,
        timeout: float | None = None,
    ) -> defer.Deferred:
        """Send on the current session; fails at once with :class:`AmiNotConnected` if there is none."""
        if not self.logged_in:
            return defer.fail(AmiNotConnected(f"{action}: AMI is not connected"))
        return self._session.send_action(action, fields, event_list=event_list, timeout=timeout)

    # -- service -------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._service.startService()
        self._await_session()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        for call in (self._keepalive, self._rearm):
            if call is not None and call.active():
                call.cancel()
        self._keepalive = self._rearm = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
        return self._service.stopService()

    # -- connection preparation (login) ---------------------------------------
    def _prepare(self, proxy) -> defer.Deferred:
        proto: AmiProtocol = getattr(proxy, "_protocol", proxy)
        d = defer.Deferred.fromCoroutine(self._login(proto))
        d.addTimeout(self.login_timeout, self.clock)
        d.addErrback(self._reject, proxy, proto)
        return d

    async def _login(self, proto: AmiProtocol) -> None:
        banner = await proto.banner
        log.debug("AMI banner {banner}", banner=banner)
        await proto.login(self.username, self._secret, self.events)

    def _reject(self, failure: Failure, proxy, proto: AmiProtocol) -> Failure:
        mute_disconnect_notice(proxy)
        if not proto.closed and proto.transport is not None:
            proto.transport.abortConnection()
        if not failure.check(AmiConnectionLost):
            self.observer.login_failed()
        log.warn("AMI login as {user} failed: {error}", user=self.username, error=failure.getErrorMessage())
        return failure

    # -- session lifecycle -----------------------------------------------------
    def _await_session(self) -> None:
        self._rearm = None
        if not self.running:
            return
        self._waiting = self._service.whenConnected()
        self._waiting.addCallbacks(self._session_started, self._not_connected)

    def _not_connected(self, failure: Failure) -> None:
        self._waiting = None
        if not failure.check(defer.CancelledError):
            log.warn("AMI: {error}", error=failure.getErrorMessage())

    def _session_started(self, proto: AmiProtocol) -> None:
        self._waiting = None
        if proto.closed:
            # ClientService has not seen the loss yet; ask again on the next turn
            self._rearm = self.clock.callLater(0, self._await_session)
            return
        self._session = proto
        if self._sessions:
            self.observer.reconnected()
        self._sessions += 1
        self.observer.connected(True)
        log.info("AMI logged in as {user} (session {n})", user=self.username, n=self._sessions)
        proto.lost.addCallback(lambda _: self._session_ended(proto))
        self._schedule_ping(proto)
        for hook in list(self._on_ready):
            d = defer.maybeDeferred(hook, proto)
            d.addErrback(self._hook_failed, hook)

    def _hook_failed(self, failure: Failure, hook) -> None:
        if failure.check(AmiConnectionLost, AmiActionTimeout):
            log.warn("AMI ready hook {hook!r} interrupted: {error}", hook=hook, error=failure.getErrorMessage())
        else:
            log.failure("AMI ready hook {hook!r} failed", failure, hook=hook)

    def _session_ended(self, proto: AmiProtocol) -> None:
        if self._session is not proto:
            return
        self._session = None
        self.observer.connected(False)
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
        log.warn("AMI connection lost; reconnecting")
        for hook in list(self._on_lost):
            try:
                hook()
            except Exception:  # a hook bug must not stop the reconnect
                log.failure("AMI lost hook {hook!r} failed", hook=hook)
        if self.running:
            self._rearm = self.clock.callLater(0, self._await_session)

    # -- keepalive ---------------------------------------------------------------
    def _schedule_ping(self, proto: AmiProtocol) -> None:
        self._keepalive = self.clock.callLater(self.keepalive_interval, self._ping, proto)

    def _ping(self, proto: AmiProtocol) -> None:
        self._keepalive = None
        if proto is not self._session:
            return
        d = proto.send_action("Ping", timeout=self.keepalive_timeout)
        d.addCallbacks(lambda _: self._pong(proto), self._no_pong, errbackArgs=(proto,))

    def _pong(self, proto: AmiProtocol) -> None:
        if proto is self._session:
            self._schedule_ping(proto)

    def _no_pong(self, failure: Failure, proto: AmiProtocol) -> None:
        if failure.check(AmiConnectionLost):
            return
        self.observer.keepalive_timeout()
        log.warn("AMI keepalive failed ({error}); dropping the connection", error=failure.getErrorMessage())
        if proto.transport is not None:
            proto.transport.abortConnection()
