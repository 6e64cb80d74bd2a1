"""AMI events → model calls, and the gateway's one event subscription table.

:func:`subscription_table` is *the* list of AMI events the gateway consumes;
the AMI client routes by it and :func:`gateway.ami.router.eventfilter_lines`
turns it — with the other consumers of the same AMI session, see
:mod:`gateway.monitor.eventfilter` — into the ``manager.conf`` event filter
(``python -m gateway.monitor.eventfilter`` prints those lines).

Adapters are forgiving: a missing or garbled header gives a default (0, "",
now) instead of an exception, so an odd event never stops the stream.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from ..ami.codec import AmiMessage
from ..ami.router import Handler
from .model import HotlineState

__all__ = ["AmiEventAdapter", "subscription_table"]

#: UserEvent names the monitor reads (extensions.conf's progress events)
USER_EVENTS = ("HotlinePath",)

#: HotlinePath steps (extensions.conf) that mean "Queue() returned and the
#: caller is still on the line" — the QueueCallerAbandon before them was a timeout.
QUEUE_EXIT_STEPS = frozenset({"queue-exit"})


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return default


def _float(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _flag(value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("1", "yes", "true"):
        return True
    if text in ("0", "no", "false"):
        return False
    return None


class AmiEventAdapter:
    """Reads the headers the model needs; ``now`` is used when an event has no Timestamp."""

    def __init__(self, state: HotlineState, now: Callable[[], float]) -> None:
        self.state = state
        self.now = now

    def _at(self, message: AmiMessage) -> float:
        at = _float(message.get("Timestamp"))
        return self.now() if at is None else at

    # -- queue callers -------------------------------------------------------------
    def queue_caller_join(self, m: AmiMessage) -> None:
        self.state.caller_joined(
            m.get("Uniqueid"), m.get("Queue"), self._at(m), _int(m.get("Position")), m.get("CallerIDNum")
        )

    def queue_caller_leave(self, m: AmiMessage) -> None:
        self.state.caller_left(m.get("Uniqueid"), self._at(m))

    def queue_caller_abandon(self, m: AmiMessage) -> None:
        self.state.abandon_reported(
            m.get("Uniqueid"),
            m.get("Queue"),
            self._at(m),
            _int(m.get("Position")),
            _int(m.get("OriginalPosition")),
            _float(m.get("HoldTime")),
        )

    def user_event(self, m: AmiMessage) -> None:
        if m.get("UserEvent") == "HotlinePath" and m.get("Step") in QUEUE_EXIT_STEPS:
            self.state.queue_exited(m.get("Uniqueid"), self._at(m))

    # -- agents --------------------------------------------------------------------
    def agent_called(self, m: AmiMessage) -> None:
        self.state.agent_rung(m.get("Queue"), self._at(m))

    def agent_connect(self, m: AmiMessage) -> None:
        self.state.agent_connected(
            m.get("Uniqueid"), m.get("Queue"), self._at(m), m.get("MemberName"), _float(m.get("HoldTime"))
        )

    def agent_complete(self, m: AmiMessage) -> None:
        self.state.agent_completed(m.get("Uniqueid"), _float(m.get("TalkTime")) or 0.0, self._at(m))

    def agent_ring_no_answer(self, m: AmiMessage) -> None:
        self.state.agent_ring_no_answer(m.get("Queue"), self._at(m))

    def queue_member(self, m: AmiMessage) -> None:
        """QueueMemberStatus, QueueMemberPause, QueueMemberAdded (same member headers)."""
        status = m.get("Status")
        self.state.member_changed(
            m.get("Queue"),
            m.get("Interface") or m.get("Location"),
            self._at(m),
            name=m.get("MemberName") or m.get("Name") or None,
            status=_int(status) if status.strip().isdigit() else None,
            paused=_flag(m.get("Paused")),
            in_call=_flag(m.get("InCall")),
        )

    def queue_member_removed(self, m: AmiMessage) -> None:
        self.state.member_removed(m.get("Queue"), m.get("Interface") or m.get("Location"), self._at(m))

    # -- channels and trunks ---------------------------------------------------------
    def newchannel(self, m: AmiMessage) -> None:
        self.state.channel_created(m.get("Uniqueid"), m.get("Channel"), self._at(m))

    def hangup(self, m: AmiMessage) -> None:
        cause = m.get("Cause").strip()
        self.state.channel_hungup(m.get("Uniqueid"), self._at(m), m.get("Channel"),
                                  int(cause) if cause.isdigit() else None)

    def dial_end(self, m: AmiMessage) -> None:
        self.state.dial_end(m.get("DestChannel"), m.get("DialStatus"), self._at(m), m.get("DestUniqueid"))

    def registry(self, m: AmiMessage) -> None:
        if m.get("ChannelType").upper() in ("PJSIP", ""):
            self.state.registry_event(m.get("Username"), m.get("Domain"), m.get("Status"), self._at(m))

    def contact_status(self, m: AmiMessage) -> None:
        self.state.contact_status(
            m.get("EndpointName"),
            m.get("AOR"),
            m.get("URI"),
            m.get("ContactStatus"),
            _float(m.get("RoundtripUsec")),
            self._at(m),
        )


def subscription_table(adapter: AmiEventAdapter) -> dict[str, Handler]:
    """The events the gateway consumes, each with its handler — in one place."""
    return {
        "QueueCallerJoin": adapter.queue_caller_join,
        "QueueCallerLeave": adapter.queue_caller_leave,
        "QueueCallerAbandon": adapter.queue_caller_abandon,
        "AgentCalled": adapter.agent_called,
        "AgentConnect": adapter.agent_connect,
        "AgentComplete": adapter.agent_complete,
        "AgentRingNoAnswer": adapter.agent_ring_no_answer,
        "QueueMemberStatus": adapter.queue_member,
        "QueueMemberPause": adapter.queue_member,
        "QueueMemberAdded": adapter.queue_member,
        "QueueMemberRemoved": adapter.queue_member_removed,
        "UserEvent": adapter.user_event,
        "Newchannel": adapter.newchannel,
        "Hangup": adapter.hangup,
        "DialEnd": adapter.dial_end,
        "Registry": adapter.registry,
        "ContactStatus": adapter.contact_status,
    }
