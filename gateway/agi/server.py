"""FastAGI server factory: one connection → one call session → one call record.

The factory routes each connection by ``agi_network_script`` through the
registry, runs the handler, keeps the call record (Redis, never in the call's
way), counts everything, and closes the connection when the flow is done so
the dialplan takes over. Whatever goes wrong on our side — unknown script,
flow bug, Asterisk not answering — the AGI session ends and the dialplan puts
the caller in the agent queue.
"""
from __future__ import annotations

from typing import Protocol as TypingProtocol

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .. import logs
from ..calls import CallRecord
from ..metrics import ChildCache, GatewayMetrics
from . import codec
from .flowrun import run_flow
from .protocol import AgiCommandTimeout, FastAgiProtocol
from .registry import ScriptRegistry
from .session import AgiCommandError, AgiSession, CallerHungUp

__all__ = ["FastAgiFactory"]

log = Logger()


class CallStore(TypingProtocol):
    def call_started(self, record: CallRecord) -> defer.Deferred: ...

    def call_ended(self, record: CallRecord) -> defer.Deferred: ...


class FastAgiFactory(protocol.Factory):
    def __init__(
        self,
        registry: ScriptRegistry,
        store: CallStore,
        metrics: GatewayMetrics,
        clock: IReactorTime,
        command_timeout: float = 10.0,
        header_timeout: float = 5.0,
        session_timeout: float = 900.0,
        max_line: int = codec.MAX_LINE_LENGTH,
        prompt_dir: str = "hotline",
        keep_rtt_samples: bool = False,
        direct_writes: bool = True,
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.command_timeout = command_timeout
        self.header_timeout = header_timeout
        self.session_timeout = session_timeout
        self.max_line = max_line
        self.prompt_dir = prompt_dir
        self.direct_writes = direct_writes
        #: histogram child per raw command word (b"SET"), looked up once
        self._command_children: dict[bytes, object] = {}
        self._sessions = ChildCache(metrics.fastagi_sessions)
        self._handoffs = ChildCache(metrics.handoffs)
        #: sessions in progress; the gauge reads it when scraped (no lock per call)
        self.active = 0
        metrics.fastagi_active.set_function(lambda: self.active)
        #: raw command round trips, kept only for the benchmark (``run --bench``)
        self.rtt_samples: list[float] | None = [] if keep_rtt_samples else None

    def buildProtocol(self, addr) -> FastAgiProtocol:
        proto = FastAgiProtocol(self)
        proto.factory = self
        return proto

    def observe_command(self, name: bytes, seconds: float) -> None:
        child = self._command_children.get(name)
        if child is None:
            label = name.decode("ascii", "replace").lower()
            child = self.metrics.fastagi_command_seconds.labels(label)
            self._command_children[name] = child
        child.observe(seconds)
        if self.rtt_samples is not None:
            self.rtt_samples.append(seconds)

    # -- SessionHost ---------------------------------------------------------
    def protocol_error(self, proto: FastAgiProtocol, reason: str) -> None:
        self.metrics.fastagi_errors.labels(kind="protocol").inc()
        peer = proto.transport.getPeer() if proto.transport is not None else None
        log.warn("FastAGI protocol error from {peer}: {reason}", peer=str(peer), reason=reason)

    def session_started(self, proto: FastAgiProtocol, env: codec.AgiEnvironment) -> None:
        script = env.network_script
        handler = self.registry.get(script)
        record = CallRecord(
            call_id=env.uniqueid or f"agi-{id(proto):x}",
            channel=env.channel,
            caller=env.caller_id,
            script=script,
            started_at=self.clock.seconds(),
        )
        if handler is None:
            self.metrics.fastagi_errors.labels(kind="unknown_script").inc()
            self.metrics.fastagi_sessions.labels(script="unknown", outcome="unknown_script").inc()
            log.warn(
                "Unknown AGI script {script!r} for call {call_id}; the dialplan will queue the caller",
                script=script[:64],
                call_id=record.call_id,
            )
            proto.close()
            return
        session = AgiSession(proto, env, command_timeout=self.command_timeout, language_dir=self.prompt_dir)
        session.call_record = record
        self.active += 1
        if logs.enabled(LogLevel.info):
            log.info(
                "Call {call_id} from {caller} on {script}",
                call_id=record.call_id,
                caller=record.caller_masked,
                script=script,
            )
        self.store.call_started(record)
        watchdog = self.clock.callLater(self.session_timeout, self._session_timed_out, proto, record)
        d = run_flow(handler(session))
        d.addBoth(self._session_ended, proto, session, record, watchdog)

    def _session_timed_out(self, proto: FastAgiProtocol, record: CallRecord) -> None:
        self.metrics.fastagi_errors.labels(kind="session_timeout").inc()
        log.warn("Call {call_id}: flow ran past the session limit; handing back to the dialplan", call_id=record.call_id)
        proto.close(abort=True)

    def _session_ended(self, result, proto: FastAgiProtocol, session: AgiSession, record: CallRecord, watchdog) -> None:
        if watchdog.active():
            watchdog.cancel()
        outcome = "completed"
        if isinstance(result, Failure):
            if result.check(CallerHungUp):
                outcome = "caller_hangup"
            elif result.check(AgiCommandTimeout):
                outcome = "agi_timeout"
                self.metrics.fastagi_errors.labels(kind="timeout").inc()
                log.warn("Call {call_id}: {error}", call_id=record.call_id, error=result.getErrorMessage())
            elif result.check(AgiCommandError):
                outcome = "command_error"
                self.metrics.fastagi_errors.labels(kind="command").inc()
                log.warn("Call {call_id}: Asterisk refused a command: {error}", call_id=record.call_id, error=result.getErrorMessage())
            elif result.check(codec.AgiProtocolError):
                outcome = "protocol_error"
            else:
                outcome = "flow_error"
                self.metrics.fastagi_errors.labels(kind="flow").inc()
                log.failure("Call {call_id}: flow failed; the dialplan will queue the caller", result, call_id=record.call_id)
        if session.handoff is not None:
            record.handoff = f"{session.handoff.kind}:{session.handoff.target}"
            if outcome == "completed":
                outcome = f"handoff_{session.handoff.kind}"
            self._handoffs.get(session.handoff.kind).inc()
        elif outcome != "caller_hangup":
            self._handoffs.get("fallback").inc()
        record.outcome = outcome
        record.ended_at = self.clock.seconds()
        record.path = list(session.path)
        self._sessions.get(record.script, outcome).inc()
        self.active -= 1
        self.store.call_ended(record)
        if logs.enabled(LogLevel.info):
            log.info(
                "Call {call_id} from {caller}: {outcome} after {commands} commands, path {path}",
                call_id=record.call_id,
                caller=record.caller_masked,
                outcome=outcome,
                commands=session.commands_sent,
                path=" > ".join(record.path),
            )
        proto.close()

