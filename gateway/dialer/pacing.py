"""Pacing: how many outbound calls may start now, without starving inbound.

Per trunk: ``channels`` (the trunk's capacity), ``reserve`` (channels kept for
citizens calling in: outbound never takes them), ``max_outbound`` (concurrent
outbound channels) and ``rate`` (new calls per second, a token bucket with a
burst of one second's worth). The trunk's channels in use come from the live
monitor (all directions) and the outbound calls in flight are added on top: a
call just originated is not up on the trunk yet, so its channel may be missing
from the monitor's count, and counting an outbound call twice errs on the side
of inbound capacity.

Calls that end in the agent queue (:data:`AGENT_MODES`: citizen-first callbacks
join it at callback priority, ahead of citizens calling in; agent-first calls
wait in it for an agent) start only while the queue has agents to spare:
``available − waiting − held ≥ agent_margin``, where ``waiting`` counts everyone
already waiting in the queue (inbound callers and callbacks) and ``held`` the
agent-bound calls started but not yet waiting there. Surveys never reach an
agent and are not gated.

Split in two: :class:`Pacer` is this process's view — the limits and the live
monitor (a fast path: no Redis round trip while the reserve is visibly taken) —
and :class:`~.pacestore.PaceStore` keeps what every gateway instance shares
(token bucket, calls in flight, agent holds) in Redis. The dispatch loop
(:mod:`.service`) asks both.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["AGENT_MODES", "Pacer", "QueueLoad", "Slot", "TrunkLimit"]

#: job modes whose call ends in the agent queue (surveys do not)
AGENT_MODES = frozenset({"citizen-first", "agent-first"})


@dataclass(frozen=True)
class TrunkLimit:
    channels: int = 30
    reserve: int = 10
    max_outbound: int = 10
    rate: float = 2.0

    def __post_init__(self) -> None:
        if self.channels < 1 or self.reserve < 0 or self.max_outbound < 0 or self.rate <= 0:
            raise ValueError("trunk limits: channels ≥ 1, reserve ≥ 0, max_outbound ≥ 0, rate > 0")


@dataclass(frozen=True)
class QueueLoad:
    """A queue by the live monitor: agents available now, callers waiting now."""

    available: int
    waiting: int


@dataclass(frozen=True)
class Slot:
    """One outbound call's place on the trunk (``id`` in the shared store), and the queue whose
    agent it holds until the call waits in that queue (None: no hold)."""

    trunk: str
    id: str
    agent_queue: str | None = None


@dataclass(frozen=True)
class _Release:
    slot: Slot
    call: bool  # end the call slot (else only the agent hold)
    refund: bool  # no call was made: its token comes back


class Pacer:
    def __init__(
        self,
        limits: Mapping[str, TrunkLimit],
        trunk_channels: Callable[[str], int] = lambda trunk: 0,
        queue_loads: Callable[[], Mapping[str, QueueLoad]] = dict,
        agent_margin: int = 1,
    ) -> None:
        if agent_margin < 1:
            raise ValueError("agent_margin ≥ 1: an agent-bound call needs an agent no one waiting will take")
        self.limits = dict(limits)
        self.agent_margin = agent_margin
        self._trunk_channels = trunk_channels
        self._queue_loads = queue_loads
        self._releases: list[_Release] = []

    # -- the live monitor (this process) --------------------------------------------------------
    def trunk_room(self, trunk: str) -> int:
        """Channels outbound may use on ``trunk`` by the monitor (before subtracting calls in flight)."""
        limit = self.limits.get(trunk)
        if limit is None or limit.max_outbound < 1:
            return 0
        return max(0, limit.channels - limit.reserve - self._trunk_channels(trunk))

    def why_not(self, trunk: str) -> str | None:
        """The reason no call may start on ``trunk`` that this process sees without asking Redis."""
        limit = self.limits.get(trunk)
        if limit is None:
            return "unknown trunk"
        if limit.max_outbound < 1:
            return "outbound channels"
        if self.trunk_room(trunk) < 1:
            return "inbound reserve"
        return None

    def agent_bases(self) -> dict[str, int]:
        """Per queue, how many agent-bound calls may start before counting holds:
        ``available − waiting − agent_margin + 1`` (≥ 1 means one may)."""
        return {queue: load.available - load.waiting - self.agent_margin + 1
                for queue, load in self._queue_loads().items()}

    # -- slots given back (flushed to the shared store by the dialer) ----------------------------
    def release(self, slot: Slot, *, refund: bool = True) -> None:
        """The slot's call is over (``refund=False``) or never started (its token comes back)."""
        self._releases.append(_Release(slot, True, refund))

    def release_agent(self, slot: Slot) -> Slot:
        """The call now waits in the queue (the monitor counts it there): drop its agent hold."""
        if slot.agent_queue is None:
            return slot
        self._releases.append(_Release(slot, False, False))
        return Slot(slot.trunk, slot.id)

    def take_releases(self) -> list[_Release]:
        releases, self._releases = self._releases, []
        return releases

    def put_back_releases(self, releases: list[_Release]) -> None:
        """The shared store did not answer: keep them for the next flush."""
        self._releases[:0] = releases
