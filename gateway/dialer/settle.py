"""How an attempt ends: the AMI events of an Originate, and settling from Asterisk's record.

Outcomes come from AMI events (``OriginateResponse``, the dialplan's ``UserEvent``
record, ``Hangup``, ``QueueCallerJoin``). An attempt whose events were missed
(AMI reconnect, gateway restart) is settled from Asterisk's AstDB record or, if
there is none and its channel is gone, counted as ``failed``.
:class:`AttemptSettling` is the part of :class:`~gateway.dialer.service.Dialer`
that does this; the dialer concludes (:meth:`conclude`) and records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from ..ami.codec import AmiMessage
from .jobs import Job
from .originate import DB_FAMILY, USER_EVENT, AttemptOutcome, outcome_from_reason, parse_record
from .pacing import Slot

__all__ = ["ActionSender", "Attempt", "AttemptSettling"]

log = Logger()


class ActionSender(TypingProtocol):
    logged_in: bool

    def send_action(self, action: str, fields=None, event_list: bool = False, timeout: float | None = None
                    ) -> defer.Deferred: ...


@dataclass
class Attempt:
    id: str
    job: Job
    number: int
    slot: Slot | None
    started: float
    action_id: str = ""
    answered: bool = False
    dial_record: AttemptOutcome | None = None
    concluded: bool = False
    settling: bool = False
    timer: IDelayedCall | None = None
    extra: dict[str, Any] = field(default_factory=dict)



class AttemptSettling:
    """AMI events and settling of the dialer's attempts (mixed into the Dialer, which owns the state).

    Relies on the Dialer's ``attempts``, ``_by_action``, ``settings``, ``clock``, ``ami``, ``pacer``,
    ``_flush_releases()``, ``_next_housekeeping`` and ``conclude(attempt, outcome)``.
    """

    attempts: dict[str, Attempt]
    _by_action: dict[str, str]

    # -- AMI --------------------------------------------------------------------------------
    def _originate_queued(self, response: AmiMessage, attempt: Attempt) -> None:
        attempt.action_id = response.action_id
        if response.action_id:
            self._by_action[response.action_id] = attempt.id

    def _originate_failed(self, failure, attempt: Attempt) -> None:
        from ..ami.protocol import AmiActionError

        if failure.check(AmiActionError):
            self.conclude(attempt, AttemptOutcome("failed", detail=f"originate refused: {failure.getErrorMessage()}"))
        else:
            # connection lost or timed out: the Originate may or may not have been queued
            log.warn("dialer: originate of {attempt} uncertain ({error}); settling from Asterisk later",
                     attempt=attempt.id, error=failure.getErrorMessage())
            attempt.extra["recheck"] = True

    def on_originate_response(self, message: AmiMessage) -> None:
        attempt_id = self._by_action.pop(message.action_id, None)
        attempt = self.attempts.get(attempt_id or "") or self.attempts.get(message.get("Uniqueid"))
        if attempt is None or attempt.concluded:
            return
        if message.get("Response") == "Success":
            attempt.answered = True
            if attempt.timer is not None and attempt.timer.active():
                attempt.timer.cancel()
            attempt.timer = None
            return
        if attempt.dial_record is not None:
            self.conclude(attempt, attempt.dial_record)
            return
        # The far end's answer (486, 480 …) can end the originated leg before the trunk leg's
        # dialplan has written its record: wait for the record (event or AstDB), else use the reason.
        attempt.extra["reason"] = message.get("Reason")
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        attempt.timer = None
        self._settle_later(attempt, self.settings.record_grace)

    def on_user_event(self, message: AmiMessage) -> None:
        if message.get("UserEvent") != USER_EVENT:
            return
        attempt = self.attempts.get(message.get("AttemptId"))
        if attempt is None or attempt.concluded:
            return
        record = parse_record(message.get("Data"), self.settings.min_talk)
        step = message.get("Step")
        if step == "dial-failed" and record is not None:
            attempt.dial_record = record
            if "reason" in attempt.extra:  # the OriginateResponse came first
                self.conclude(attempt, record)
        elif step == "done" and record is not None:
            self.conclude(attempt, record)

    def on_hangup(self, message: AmiMessage) -> None:
        attempt = self.attempts.get(message.get("Uniqueid"))
        if attempt is not None and not attempt.concluded:
            # the originated channel is gone: the attempt is over. Its OriginateResponse or "done"
            # event normally came first; if not (filtered, missed), Asterisk's AstDB record settles it.
            self._settle_later(attempt, 1.0)

    def on_queue_join(self, message: AmiMessage) -> None:
        """An attempt's leg now waits in the agent queue (citizen-first: the answered citizen;
        agent-first: the waiting leg): the monitor counts it as waiting from now on, so its agent
        hold ends."""
        uniqueid = message.get("Uniqueid")
        attempt = self.attempts.get(uniqueid) or self.attempts.get(uniqueid.removesuffix("-2"))
        if attempt is None or attempt.concluded or attempt.slot is None or attempt.slot.agent_queue is None:
            return
        attempt.slot = self.pacer.release_agent(attempt.slot)
        self._flush_releases()

    def connection_lost(self) -> None:
        """AMI went away: events for attempts in progress may be lost; settle them after reconnecting."""
        self._by_action.clear()
        for attempt in self.attempts.values():
            if not attempt.concluded:
                attempt.extra["recheck"] = True
        self._next_housekeeping = 0.0

    def _no_response(self, attempt_id: str) -> None:
        attempt = self.attempts.get(attempt_id)
        if attempt is not None:
            attempt.timer = None
            if not attempt.concluded and not attempt.answered:
                self._settle_later(attempt, 0)

    # -- settling from Asterisk's record ----------------------------------------------------------
    def _settle_later(self, attempt: Attempt, delay: float) -> None:
        if attempt.settling or attempt.concluded:
            return
        attempt.settling = True
        self.clock.callLater(delay, lambda: defer.Deferred.fromCoroutine(self._settle(attempt)))

    async def _settle(self, attempt: Attempt) -> None:
        try:
            if attempt.concluded:
                return
            if not self.ami.logged_in:
                attempt.extra["recheck"] = True
                return
            record = await self._db_record(attempt.id)
            if record is not None:
                attempt.extra.pop("recheck", None)
                self.conclude(attempt, record)
                return
            if await self._channel_alive(attempt.id):
                attempt.answered = True
                attempt.extra["recheck"] = True  # look again at the next housekeeping
                return
            attempt.extra.pop("recheck", None)
            if attempt.dial_record is not None:
                self.conclude(attempt, attempt.dial_record)
            elif attempt.extra.get("reason") is not None:
                reason = attempt.extra["reason"]
                self.conclude(attempt, AttemptOutcome(outcome_from_reason(reason), detail=f"originate reason {reason}"))
            else:
                self.conclude(attempt, AttemptOutcome("failed", detail="no record and no channel (call lost)"))
        except Exception as exc:  # noqa: BLE001 — AMI trouble: try again at the next housekeeping
            attempt.extra["recheck"] = True
            log.warn("dialer: cannot settle {attempt} now: {error}", attempt=attempt.id, error=str(exc))
        finally:
            attempt.settling = False

    async def _db_record(self, attempt_id: str) -> AttemptOutcome | None:
        from ..ami.protocol import AmiActionError

        try:
            messages = await self.ami.send_action("DBGet", {"Family": DB_FAMILY, "Key": attempt_id}, event_list=True)
        except AmiActionError:
            return None  # "Database entry not found"
        for message in messages if isinstance(messages, list) else [messages]:
            if message.get("Event") == "DBGetResponse" or message.get("Val"):
                return parse_record(message.get("Val"), self.settings.min_talk)
        return None

    async def _channel_alive(self, attempt_id: str) -> bool:
        messages = await self.ami.send_action("CoreShowChannels", event_list=True)
        ids = {attempt_id, f"{attempt_id}-2"}
        return any(m.get("Uniqueid") in ids for m in messages if m.get("Event") == "CoreShowChannel")

