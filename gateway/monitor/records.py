"""The monitor model's vocabulary: the outcome sink it reports to, the records
and views it hands out, the snapshots resync feeds it, and the label tables
(device states, Dial() outcomes, Q.850 causes). Pure data, no behaviour beyond
small derived properties.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

__all__ = [
    "DIAL_OUTCOMES",
    "HANGUP_CAUSE_LABELS",
    "AbandonedCall",
    "MemberSnapshot",
    "NullSink",
    "OpenCall",
    "OutcomeSink",
    "QueueSnapshot",
    "QueueView",
    "Registration",
    "TrunkView",
    "WaitingEntry",
    "hangup_cause_label",
    "trunk_of_channel",
]

# Asterisk device states (QueueMemberStatus ``Status``).
DEVICE_UNKNOWN, DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_BUSY = 0, 1, 2, 3
DEVICE_INVALID, DEVICE_UNAVAILABLE, DEVICE_RINGING, DEVICE_RINGINUSE, DEVICE_ONHOLD = 4, 5, 6, 7, 8
_NOT_LOGGED_IN = {DEVICE_INVALID, DEVICE_UNAVAILABLE}
_ON_A_CALL = {DEVICE_INUSE, DEVICE_BUSY, DEVICE_RINGINUSE, DEVICE_ONHOLD}
_AVAILABLE = {DEVICE_UNKNOWN, DEVICE_NOT_INUSE}

#: Dial() outcomes kept as label values; anything else is "other".
DIAL_OUTCOMES = {
    "ANSWER": "answer",
    "BUSY": "busy",
    "NOANSWER": "noanswer",
    "CANCEL": "cancel",
    "CONGESTION": "congestion",
    "CHANUNAVAIL": "chanunavail",
}

#: Dial() outcomes that are not a trunk failure: answered, or given up by our side.
_NOT_FAILURES = {"ANSWER", "CANCEL"}

#: Q.850 hangup causes (the Hangup event's ``Cause``) → the few labels kept; anything else is "other".
HANGUP_CAUSES = {
    16: "normal", 31: "normal",
    17: "busy",
    18: "no_answer", 19: "no_answer",
    21: "rejected",
    1: "unallocated_number", 22: "unallocated_number", 28: "unallocated_number",
    27: "network_out_of_order", 38: "network_out_of_order", 41: "network_out_of_order",
    34: "congestion", 42: "congestion", 44: "congestion", 47: "congestion",
}
HANGUP_CAUSE_LABELS = (*sorted(set(HANGUP_CAUSES.values())), "other")


def hangup_cause_label(cause: int | None) -> str:
    """A Q.850 cause code → its label (``other`` for an unknown, missing or 0 cause)."""
    return HANGUP_CAUSES.get(cause, "other") if cause is not None else "other"


class OutcomeSink(TypingProtocol):
    """Where counted outcomes go (implemented by ``metrics.QueueMetrics``)."""

    def queue_seen(self, queue: str) -> None: ...

    def offered(self, queue: str) -> None: ...

    def answered(self, queue: str, wait: float, within_service_level: bool) -> None: ...

    def abandoned(self, queue: str, wait: float, short: bool) -> None: ...

    def untracked(self, queue: str) -> None: ...

    def ring_no_answer(self, queue: str) -> None: ...

    def agent_rung(self, queue: str) -> None: ...

    def completed(self, queue: str, talk_time: float) -> None: ...

    def trunk_call(self, trunk: str, outcome: str) -> None: ...

    def trunk_failure(self, trunk: str, cause: str) -> None: ...

    def trunk_seen(self, trunk: str) -> None: ...


class NullSink:
    """An :class:`OutcomeSink` that counts nothing."""

    def queue_seen(self, queue: str) -> None:
        pass

    def offered(self, queue: str) -> None:
        pass

    def answered(self, queue: str, wait: float, within_service_level: bool) -> None:
        pass

    def abandoned(self, queue: str, wait: float, short: bool) -> None:
        pass

    def untracked(self, queue: str) -> None:
        pass

    def ring_no_answer(self, queue: str) -> None:
        pass

    def agent_rung(self, queue: str) -> None:
        pass

    def completed(self, queue: str, talk_time: float) -> None:
        pass

    def trunk_call(self, trunk: str, outcome: str) -> None:
        pass

    def trunk_failure(self, trunk: str, cause: str) -> None:
        pass

    def trunk_seen(self, trunk: str) -> None:
        pass


# -- records and views ---------------------------------------------------------


@dataclass(frozen=True)
class AbandonedCall:
    """One abandoned call, for the missed-call list and the callback dialer."""

    uniqueid: str
    queue: str
    joined_at: float
    abandoned_at: float
    wait: float
    position: int
    original_position: int
    short: bool
    #: the caller's number — personal data: never logged, never a metric label
    caller: str = field(default="", repr=False)


@dataclass(frozen=True)
class OpenCall:
    """A call not finished yet, as a checkpoint keeps it for the next process (see :meth:`HotlineState.restore`).

    Everything already counted for it is implied: offered, and answered when
    ``answered`` (talk time counted when ``completed``).
    """

    uniqueid: str
    queue: str
    joined_at: float
    answered: bool = False
    completed: bool = False
    position: int = 0
    original_position: int = 0
    #: a QueueCallerAbandon seen and not yet settled: (at, position, original position)
    abandon_hint: tuple[float, int, int] | None = None
    #: the caller's number — personal data: never logged, never a metric label
    caller: str = field(default="", repr=False)


@dataclass
class _Hint:
    at: float
    position: int
    original_position: int


@dataclass
class _Call:
    uniqueid: str
    queue: str
    joined_at: float
    caller: str = field(default="", repr=False)
    position: int = 0
    original_position: int = 0
    waiting: bool = False
    outcome: str | None = None
    answered_at: float | None = None
    member: str = ""
    completed: bool = False
    hint: _Hint | None = None
    seq: int = 0


@dataclass
class _Member:
    interface: str
    name: str
    status: int
    paused: bool
    in_call: bool
    seq: int = 0

    @property
    def logged_in(self) -> bool:
        return self.status not in _NOT_LOGGED_IN

    @property
    def on_call(self) -> bool:
        return self.logged_in and (self.in_call or self.status in _ON_A_CALL)

    @property
    def available(self) -> bool:
        return self.logged_in and not self.paused and not self.on_call and self.status in _AVAILABLE


@dataclass
class _Channel:
    name: str
    trunk: str | None
    seq: int


@dataclass
class _Contact:
    reachable: bool | None
    rtt: float | None


@dataclass(frozen=True)
class QueueView:
    """A queue right now (the live gauges)."""

    waiting: int
    longest_wait: float
    logged_in: int
    available: int
    paused: int
    in_call: int


@dataclass(frozen=True)
class TrunkView:
    """A trunk right now. ``None``: not known (no registration / no qualify)."""

    registered: bool | None
    reachable: bool | None
    rtt: float | None
    channels: int
    capacity: int | None


@dataclass(frozen=True)
class MemberSnapshot:
    interface: str
    name: str
    status: int
    paused: bool
    in_call: bool


@dataclass(frozen=True)
class WaitingEntry:
    uniqueid: str
    position: int
    wait: float
    caller: str = field(default="", repr=False)


@dataclass(frozen=True)
class QueueSnapshot:
    """One queue as QueueStatus lists it (QueueParams, QueueMember…, QueueEntry…)."""

    name: str
    members: tuple[MemberSnapshot, ...] = ()
    entries: tuple[WaitingEntry, ...] = ()


@dataclass(frozen=True)
class Registration:
    """One outbound registration (PJSIPShowRegistrationsOutbound)."""

    trunk: str
    client_uri: str
    server_uri: str
    registered: bool


def _bounded(mapping: OrderedDict, size: int) -> None:
    """Forget the oldest entries beyond ``size``."""
    while len(mapping) > size:
        mapping.popitem(last=False)


def trunk_of_channel(channel: str, trunks: Iterable[str]) -> str | None:
    """``PJSIP/carrier-0000002a`` → ``carrier`` when ``carrier`` is a trunk."""
    tech, sep, rest = channel.partition("/")
    if not sep or tech.upper() != "PJSIP":
        return None
    endpoint = rest.rsplit("-", 1)[0]
    return endpoint if endpoint in trunks else None
