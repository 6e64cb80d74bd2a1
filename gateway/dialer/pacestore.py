"""Pacing shared by every gateway instance on one Redis: call rate, calls in flight, agent holds.

Two instances dialling from the same job store must together respect the
trunk's limits, so the counters live in Redis and every decision is one Lua
script (atomic across instances). Keys (``P`` = ``<prefix>:dialer:pace``)::

    P:<trunk>:bucket   HASH  tokens, at       the trunk's token bucket (calls per second)
    P:<trunk>:calls    ZSET  slot id → expiry outbound calls in flight on the trunk (all instances)
    P:agents:<queue>   ZSET  slot id → expiry agents held by calls not yet waiting in the queue

Every slot and hold is a lease: the owner renews it while its call runs
(:meth:`PaceStore.renew`) and removes it when the call ends; the slots of a
crashed instance simply expire, so their capacity comes back without anyone
cleaning up. Times are the callers' clocks (``now``); the bucket never moves
back in time, so a slightly late clock of a second instance only refills less.

The limits themselves (:class:`~.pacing.TrunkLimit`) come with every call from
the caller's configuration (instances are configured alike). All methods are
blocking (redis-py): run them in the Redis thread pool.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .pacing import TrunkLimit

__all__ = ["PaceStore", "new_slot_id"]

# refill the bucket up to ``now`` (never backwards), then ``tokens``/``at`` hold its state
_BUCKET = """
local function bucket(bk, now, rate, burst)
  local b = redis.call('HMGET', bk, 'tokens', 'at')
  local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * rate)
    at = now
  end
  return tokens, at
end
local function save(bk, tokens, at, ttl)
  redis.call('HSET', bk, 'tokens', tostring(tokens), 'at', tostring(at))
  redis.call('EXPIRE', bk, ttl)
end
local function refund(bk, now, rate, burst, ttl, n)
  if n <= 0 then return end
  local tokens, at = bucket(bk, now, rate, burst)
  save(bk, math.min(burst, tokens + n), at, ttl)
end
"""

_ACQUIRE = _BUCKET + """
local P, trunk, now, till = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local rate, burst, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local max_out, room, want, nq = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local bk, ck = P .. ':' .. trunk .. ':bucket', P .. ':' .. trunk .. ':calls'
redis.call('ZREMRANGEBYSCORE', ck, '-inf', now)
local inflight = redis.call('ZCARD', ck)
local tokens, at = bucket(bk, now, rate, burst)
local n = math.min(want, math.floor(tokens + 1e-9), max_out - inflight, room - inflight)
if n < 0 then n = 0 end
local first = 12 + 2 * nq
for i = 0, n - 1 do redis.call('ZADD', ck, till, ARGV[first + i]) end
save(bk, tokens - n, at, ttl)
local out = {n}
for i = 0, nq - 1 do
  local q, base = ARGV[12 + 2 * i], tonumber(ARGV[13 + 2 * i])
  local hk = P .. ':agents:' .. q
  redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
  table.insert(out, q)
  table.insert(out, base - redis.call('ZCARD', hk))
end
return out
"""

_COMMIT = _BUCKET + """
local P, trunk, now, till = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local rate, burst, ttl, nu = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local bk, ck = P .. ':' .. trunk .. ':bucket', P .. ':' .. trunk .. ':calls'
local back = 0
for i = 9, 8 + nu do back = back + redis.call('ZREM', ck, ARGV[i]) end
local refused = {}
for i = 9 + nu, #ARGV, 3 do
  local slot, hk, base = ARGV[i], P .. ':agents:' .. ARGV[i + 1], tonumber(ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
  if base - redis.call('ZCARD', hk) >= 1 then
    redis.call('ZADD', hk, till, slot)
  else
    back = back + redis.call('ZREM', ck, slot)
    table.insert(refused, slot)
  end
end
refund(bk, now, rate, burst, ttl, back)
return refused
"""

_RELEASE = _BUCKET + """
local P, trunk, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rate, burst, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local nr, np = tonumber(ARGV[7]), tonumber(ARGV[8])
local bk, ck = P .. ':' .. trunk .. ':bucket', P .. ':' .. trunk .. ':calls'
local back = 0
for i = 9, 8 + nr do back = back + redis.call('ZREM', ck, ARGV[i]) end
for i = 9 + nr, 8 + nr + np do redis.call('ZREM', ck, ARGV[i]) end
for i = 9 + nr + np, #ARGV, 2 do redis.call('ZREM', P .. ':agents:' .. ARGV[i], ARGV[i + 1]) end
refund(bk, now, rate, burst, ttl, back)
return back
"""

_RENEW = """
local P, trunk, till, nc = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local kept = 0
for i = 5, 4 + nc do kept = kept + redis.call('ZADD', P .. ':' .. trunk .. ':calls', 'XX', 'CH', till, ARGV[i]) end
for i = 5 + nc, #ARGV, 2 do redis.call('ZADD', P .. ':agents:' .. ARGV[i], 'XX', till, ARGV[i + 1]) end
return kept
"""


def new_slot_id() -> str:
    return f"sl-{uuid.uuid4().hex[:16]}"


def _burst(limit: TrunkLimit) -> float:
    # at most one second's worth of calls at once (at least one call)
    return max(1.0, limit.rate)


def _bucket_args(limit: TrunkLimit) -> list[Any]:
    burst = _burst(limit)
    # an idle bucket is full again after burst / rate seconds: its key may go then
    return [repr(float(limit.rate)), repr(burst), max(1, math.ceil(burst / limit.rate)) + 1]


class PaceStore:
    """Blocking shared pacing (run it in the Redis thread pool). ``client``: redis-py with decode_responses."""

    def __init__(self, client: Any, key_prefix: str = "hotline") -> None:
        self.client = client
        self.prefix = f"{key_prefix}:dialer:pace"
        self._acquire = client.register_script(_ACQUIRE)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def acquire(self, trunk: str, limit: TrunkLimit, now: float, slot_ids: Sequence[str], room: int, lease: float,
                agent_bases: Mapping[str, int] | None = None) -> tuple[list[str], dict[str, int]]:
        """Take up to ``len(slot_ids)`` call slots on ``trunk`` now: each takes a token of the
        bucket and counts as in flight (lease ``lease``) until released. ``room``: the trunk's
        channels outbound may use by the live monitor (capacity − reserve − channels up); calls in
        flight count against it too. Returns the granted ids (a prefix of ``slot_ids``) and,
        for each queue of ``agent_bases`` (queue → agents free by the monitor, margin applied),
        how many more agent-bound calls it takes once the holds of all instances are counted.
        """
        bases = dict(agent_bases or {})
        args: list[Any] = [self.prefix, trunk, repr(now), repr(now + lease), *_bucket_args(limit),
                           limit.max_outbound, room, len(slot_ids), len(bases)]
        for queue, base in bases.items():
            args += [queue, int(base)]
        raw = self._acquire(args=[*args, *slot_ids])
        granted = int(raw[0])
        agent_room = {raw[i]: int(raw[i + 1]) for i in range(1, len(raw), 2)}
        return list(slot_ids[:granted]), agent_room

    def commit(self, trunk: str, limit: TrunkLimit, now: float, lease: float, unused: Iterable[str],
               holds: Iterable[tuple[str, str, int]]) -> set[str]:
        """After the claim: give back the ``unused`` slots (and their tokens), and hold an agent for
        each ``(slot id, queue, base)`` whose queue still has one free once every instance's holds
        are counted. A refused hold's slot is given back too; returns the refused slot ids."""
        unused = list(unused)
        args: list[Any] = [self.prefix, trunk, repr(now), repr(now + lease), *_bucket_args(limit), len(unused),
                           *unused]
        for slot_id, queue, base in holds:
            args += [slot_id, queue, int(base)]
        return set(self._commit(args=args))

    def release(self, trunk: str, limit: TrunkLimit, now: float, *, refund: Iterable[str] = (),
                spent: Iterable[str] = (), holds: Iterable[tuple[str, str]] = ()) -> int:
        """End slots: ``refund`` ones never led to a call (their tokens come back), ``spent`` ones did;
        ``holds`` are ``(queue, slot id)`` agent holds to drop. Returns the tokens given back."""
        refund, spent = list(refund), list(spent)
        args: list[Any] = [self.prefix, trunk, repr(now), *_bucket_args(limit), len(refund), len(spent),
                           *refund, *spent]
        for queue, slot_id in holds:
            args += [queue, slot_id]
        return int(self._release(args=args))

    def renew(self, trunk: str, now: float, lease: float, slots: Iterable[str],
              holds: Iterable[tuple[str, str]] = ()) -> int:
        """Extend the leases of slots and holds still held (expired ones are not brought back)."""
        slots = list(slots)
        args: list[Any] = [self.prefix, trunk, repr(now + lease), len(slots), *slots]
        for queue, slot_id in holds:
            args += [queue, slot_id]
        return int(self._renew(args=args))

    def adopt(self, trunk: str, slot_id: str, now: float, lease: float) -> None:
        """Count a call already in progress (taken over from a crashed instance) without asking."""
        self.client.zadd(self.key(trunk, "calls"), {slot_id: now + lease})

    # -- reads ----------------------------------------------------------------------------------
    def in_flight(self, trunk: str, now: float) -> int:
        return int(self.client.zcount(self.key(trunk, "calls"), f"({now!r}", "+inf"))

    def held(self, queue: str, now: float) -> int:
        return int(self.client.zcount(self.key("agents", queue), f"({now!r}", "+inf"))
