"""Pacing: how many outbound calls may start now, without starving inbound.

Per trunk: ``channels`` (the trunk's capacity), ``reserve`` (channels kept for
citizens calling in: outbound never takes them), ``max_outbound`` (concurrent
outbound channels) and ``rate`` (new calls per second, a token bucket). The
trunk's channels in use come from the monitor (all directions) and the dialer's
own calls in progress are added on top: a call just originated is not up on
the trunk yet, so its channel may be missing from the monitor's count, and
counting an outbound call twice errs on the side of inbound capacity. For agent-first calls an
available agent must be free that no other agent-first call in flight holds.

Pure apart from the injected clock; the caller asks :meth:`Pacer.acquire` and
gives the slot back with :meth:`Pacer.release` when the attempt ends.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

__all__ = ["Pacer", "Slot", "TrunkLimit"]


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
class Slot:
    trunk: str
    agent_queue: str | None = None


class Pacer:
    def __init__(
        self,
        clock: IReactorTime,
        limits: Mapping[str, TrunkLimit],
        trunk_channels: Callable[[str], int] = lambda trunk: 0,
        available_agents: Callable[[str], int] = lambda queue: 0,
    ) -> None:
        self.clock = clock
        self.limits = dict(limits)
        self._trunk_channels = trunk_channels
        self._available_agents = available_agents
        self._active: dict[str, int] = {name: 0 for name in self.limits}
        self._tokens: dict[str, float] = {name: 1.0 for name in self.limits}
        self._refilled: dict[str, float] = {name: clock.seconds() for name in self.limits}
        self._agents_held: dict[str, int] = {}

    def active(self, trunk: str) -> int:
        return self._active.get(trunk, 0)

    def _refill(self, trunk: str, limit: TrunkLimit) -> None:
        now = self.clock.seconds()
        elapsed = max(0.0, now - self._refilled[trunk])
        self._refilled[trunk] = now
        # burst of at most one second's worth (at least one call)
        self._tokens[trunk] = min(max(1.0, limit.rate), self._tokens[trunk] + elapsed * limit.rate)

    def why_not(self, trunk: str, agent_queue: str | None = None) -> str | None:
        """The reason no call may start now on ``trunk`` (None: one may)."""
        limit = self.limits.get(trunk)
        if limit is None:
            return "unknown trunk"
        own = self._active[trunk]
        if own >= limit.max_outbound:
            return "outbound channels"
        # The monitor's count may or may not include our own calls yet (a call just
        # originated is not up on the trunk); counting them on top errs on inbound's side.
        if self._trunk_channels(trunk) + own + 1 > limit.channels - limit.reserve:
            return "inbound reserve"
        self._refill(trunk, limit)
        if self._tokens[trunk] < 1.0:
            return "call rate"
        if agent_queue is not None and not self.agent_free(agent_queue):
            return "no available agent"
        return None

    def agent_free(self, queue: str) -> bool:
        """An available agent of ``queue`` that no agent-first call in flight holds."""
        return self._available_agents(queue) - self._agents_held.get(queue, 0) >= 1

    def take_agent(self, queue: str) -> bool:
        if not self.agent_free(queue):
            return False
        self._agents_held[queue] = self._agents_held.get(queue, 0) + 1
        return True

    def give_agent(self, queue: str) -> None:
        self._agents_held[queue] = max(0, self._agents_held.get(queue, 0) - 1)

    def acquire(self, trunk: str, agent_queue: str | None = None) -> Slot | None:
        if self.why_not(trunk, agent_queue) is not None:
            return None
        self._tokens[trunk] -= 1.0
        self._active[trunk] += 1
        if agent_queue is not None:
            self._agents_held[agent_queue] = self._agents_held.get(agent_queue, 0) + 1
        return Slot(trunk, agent_queue)

    def release(self, slot: Slot) -> None:
        self._active[slot.trunk] = max(0, self._active.get(slot.trunk, 0) - 1)
        if slot.agent_queue is not None:
            self.give_agent(slot.agent_queue)

    def adopt(self, trunk: str) -> Slot:
        """Count a call already in progress (recovered after a restart) without asking."""
        self._active[trunk] = self._active.get(trunk, 0) + 1
        return Slot(trunk)

    def next_token_in(self, trunk: str) -> float:
        """Seconds until the rate allows the next call on ``trunk`` (0: now)."""
        limit = self.limits[trunk]
        self._refill(trunk, limit)
        missing = 1.0 - self._tokens[trunk]
        return 0.0 if missing <= 0 else missing / limit.rate
