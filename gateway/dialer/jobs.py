"""Durable dial jobs in Redis: a due-time index, leases, history, caps, do-not-call.

Keys (``P`` = ``<prefix>:dialer``, default ``hotline:dialer``)::

    P:job:<id>            HASH   the job (state pending|leased|done, phase claimed|dialing,
                                 attempts, owner, lease_until, attempt_id, outcome, payload …)
    P:due                 ZSET   id → due time          (pending jobs only)
    P:leases              ZSET   id → lease expiry      (leased jobs only)
    P:history:<id>        LIST   one JSON entry per attempt / event
    P:open:<campaign>:<e164>  STRING  the number's newest open job (merging)
    P:open-set:<campaign>:<e164>  SET  every open (not done) job of the number (cancelling them all)
    P:dials:<e164>        ZSET   attempt id → dial time (per-number cap over 24 h)
    P:dnc                 SET    E.164 numbers never to dial (do-not-call, declined follow-up)
    P:jobs                ZSET   id → created time (listing)

Every state change is one Lua script, so two gateway instances sharing a Redis
never both hold a job: ``claim`` moves due ids from ``P:due`` to ``P:leases``
atomically; every later step names its owner and is refused if the lease has
passed to someone else (fencing). ``mark_dialing`` is written *before* the
Originate is sent (write-ahead): a crash after it can never lead to a second
dial of the same attempt — the recovering instance finds ``phase=dialing`` and
settles the attempt from Asterisk's record instead (see ``service``). Leases
are renewed while a call runs; a lease that expires (the owner crashed) is
recovered by :meth:`JobStore.recover`.

All methods are blocking (redis-py) and run in the Redis thread pool; the
scripts assume one Redis (not a cluster): keys are built inside the scripts.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "JobStore", "NewJob"]

_DONE_TTL = 30 * 24 * 3600

_ADD = """
local P, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due_at, original_at, merge_window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local open_key, open_set = ARGV[7], ARGV[8]
local jk = P .. ':job:' .. id
if redis.call('EXISTS', jk) == 1 then return {'exists', id} end
if open_key ~= '' and merge_window >= 0 then
  local existing = redis.call('GET', open_key)
  if existing then
    local ek = P .. ':job:' .. existing
    local st = redis.call('HGET', ek, 'state')
    local created = tonumber(redis.call('HGET', ek, 'created_at') or '0')
    if st and st ~= 'done' and now - created <= merge_window then
      redis.call('HINCRBY', ek, 'merged', 1)
      if open_set ~= '' then
        -- a job written before the open set existed joins it here
        redis.call('HSET', ek, 'open_set', open_set)
        redis.call('SADD', open_set, existing)
      end
      redis.call('RPUSH', P .. ':history:' .. existing,
        cjson.encode({at = now, event = 'merged', source_id = id}))
      if st == 'pending' then
        local orig = tonumber(redis.call('HGET', ek, 'original_at') or now)
        if original_at < orig then
          redis.call('HSET', ek, 'original_at', ARGV[5])
          local cur = tonumber(redis.call('ZSCORE', P .. ':due', existing) or due_at)
          if due_at < cur then redis.call('ZADD', P .. ':due', due_at, existing) end
        end
      end
      return {'merged', existing}
    end
  end
end
for i = 9, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', jk, 'id', id, 'state', 'pending', 'attempts', 0, 'merged', 0,
  'created_at', ARGV[3], 'original_at', ARGV[5], 'due_at', ARGV[4])
redis.call('ZADD', P .. ':due', due_at, id)
redis.call('ZADD', P .. ':jobs', now, id)
if open_key ~= '' then redis.call('SET', open_key, id) end
if open_set ~= '' then redis.call('SADD', open_set, id) end
redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = now, event = 'scheduled'}))
return {'added', id}
"""

_CLAIM = """
local P, now, limit, owner, till, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
-- gate (optional): jobs of the gated modes take one of their queue's room (queue → n) or are
-- skipped this time, left in place (FIFO within a queue kept); other jobs go in due order
local gated, room = nil, {}
if ARGV[7] ~= '' then
  local gate = cjson.decode(ARGV[7])
  gated, room = {}, gate.room
  for _, mode in ipairs(gate.modes) do gated[mode] = true end
end
local out, skipped, seen = {}, 0, 0
while #out < limit and seen < scan do
  local ids = redis.call('ZRANGEBYSCORE', P .. ':due', '-inf', now, 'LIMIT', skipped, limit - #out)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    seen = seen + 1
    local jk = P .. ':job:' .. id
    if redis.call('HGET', jk, 'state') ~= 'pending' then
      redis.call('ZREM', P .. ':due', id)
    else
      local take = true
      if gated then
        local job = redis.call('HMGET', jk, 'mode', 'queue')
        if gated[job[1] or ''] then
          local left = tonumber(room[job[2] or ''] or 0)
          if left >= 1 then room[job[2]] = left - 1 else take = false end
        end
      end
      if take then
        redis.call('ZREM', P .. ':due', id)
        redis.call('HSET', jk, 'state', 'leased', 'phase', 'claimed', 'owner', owner, 'lease_until', till)
        redis.call('ZADD', P .. ':leases', till, id)
        table.insert(out, redis.call('HGETALL', jk))
      else
        skipped = skipped + 1
      end
    end
  end
end
return out
"""

_DIALING_FN = """
local function dialing(P, id, owner, now_s, attempt_id, till, cap)
  local now = tonumber(now_s)
  local jk = P .. ':job:' .. id
  if redis.call('HGET', jk, 'owner') ~= owner or redis.call('HGET', jk, 'state') ~= 'leased' then return {'lost', ''} end
  if redis.call('HGET', jk, 'cancel') == '1' then return {'cancelled', ''} end
  local e164 = redis.call('HGET', jk, 'e164') or ''
  if e164 ~= '' and redis.call('SISMEMBER', P .. ':dnc', e164) == 1 then return {'dnc', ''} end
  local dials = P .. ':dials:' .. e164
  redis.call('ZREMRANGEBYSCORE', dials, '-inf', now - 86400)
  if cap > 0 and redis.call('ZCARD', dials) >= cap then
    local oldest = redis.call('ZRANGE', dials, 0, 0, 'WITHSCORES')
    return {'capped', tostring(tonumber(oldest[2]) + 86400)}
  end
  redis.call('ZADD', dials, now, attempt_id)
  redis.call('EXPIRE', dials, 86400)
  local n = redis.call('HINCRBY', jk, 'attempts', 1)
  redis.call('HSET', jk, 'phase', 'dialing', 'attempt_id', attempt_id, 'dialed_at', now_s, 'lease_until', till)
  redis.call('ZADD', P .. ':leases', till, id)
  redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = now, event = 'dialing', attempt = n, attempt_id = attempt_id, owner = owner}))
  return {'ok', tostring(n)}
end
"""

_DIALING = _DIALING_FN + """
return dialing(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))
"""

# the write-ahead of a whole tick in one round trip: each job still on its own terms (one status per job)
_DIALING_MANY = _DIALING_FN + """
local P, owner, now, till, cap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local out = {}
for i = 6, #ARGV, 2 do
  local r = dialing(P, ARGV[i], owner, now, ARGV[i + 1], till, cap)
  table.insert(out, r[1])
  table.insert(out, r[2])
end
return out
"""

_RENEW = """
local P, owner, till = ARGV[1], ARGV[2], ARGV[3]
local kept = 0
for i = 4, #ARGV do
  local jk = P .. ':job:' .. ARGV[i]
  if redis.call('HGET', jk, 'owner') == owner and redis.call('HGET', jk, 'state') == 'leased' then
    redis.call('HSET', jk, 'lease_until', till)
    redis.call('ZADD', P .. ':leases', till, ARGV[i])
    kept = kept + 1
  end
end
return kept
"""

_RELEASE = """
-- the job no longer holds its number: drop it from the open set and the newest-job pointer
local function release_number(P, jk, id)
  local open_key = redis.call('HGET', jk, 'open_key')
  if open_key and open_key ~= '' and redis.call('GET', open_key) == id then redis.call('DEL', open_key) end
  local open_set = redis.call('HGET', jk, 'open_set')
  if open_set and open_set ~= '' then redis.call('SREM', open_set, id) end
end
"""

_FINISH_FN = _RELEASE + """
local function finish(P, id, owner, now, entry, final, retry_at, ttl)
  local jk = P .. ':job:' .. id
  if redis.call('HGET', jk, 'owner') ~= owner or redis.call('HGET', jk, 'state') ~= 'leased' then return 0 end
  if entry ~= '' then redis.call('RPUSH', P .. ':history:' .. id, entry) end
  redis.call('ZREM', P .. ':leases', id)
  if final == '' and redis.call('HGET', jk, 'cancel') == '1' then final = 'cancelled' end
  if final ~= '' then
    redis.call('HSET', jk, 'state', 'done', 'outcome', final, 'finished_at', now, 'owner', '', 'phase', '')
    release_number(P, jk, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'final', outcome = final}))
    redis.call('EXPIRE', jk, ttl)
    redis.call('EXPIRE', P .. ':history:' .. id, ttl)
    return 2
  end
  redis.call('HSET', jk, 'state', 'pending', 'phase', '', 'owner', '', 'due_at', retry_at)
  redis.call('ZADD', P .. ':due', retry_at, id)
  return 1
end
"""

_FINISH = _FINISH_FN + """
return finish(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]))
"""

# several finishes in one round trip, each on its own terms (one result per job, in order)
_FINISH_MANY = _FINISH_FN + """
local P, owner, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 5 do
  table.insert(out, finish(P, ARGV[i], owner, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ttl))
end
return out
"""

_RECOVER = """
local P, now, owner, till, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local jk = P .. ':job:' .. id
  local st = redis.call('HGET', jk, 'state')
  if st ~= 'leased' then
    redis.call('ZREM', P .. ':leases', id)
  elseif redis.call('HGET', jk, 'phase') == 'dialing' then
    local previous = redis.call('HGET', jk, 'owner')
    redis.call('HSET', jk, 'owner', owner, 'lease_until', till)
    redis.call('ZADD', P .. ':leases', till, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'lease-recovered', from = previous, owner = owner}))
    table.insert(out, redis.call('HGETALL', jk))
  else
    redis.call('ZREM', P .. ':leases', id)
    redis.call('HSET', jk, 'state', 'pending', 'phase', '', 'owner', '')
    redis.call('ZADD', P .. ':due', redis.call('HGET', jk, 'due_at') or now, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'lease-expired-requeued'}))
  end
end
return out
"""

_CANCEL_ONE = _RELEASE + """
-- 0 unknown/finished (or, with again = false, a cancel already requested), 1 cancel requested, 2 cancelled
local function cancel_one(P, id, now, reason, ttl, again)
  local jk = P .. ':job:' .. id
  local st = redis.call('HGET', jk, 'state')
  if not st or st == 'done' then return 0 end
  if st == 'pending' then
    redis.call('ZREM', P .. ':due', id)
    redis.call('HSET', jk, 'state', 'done', 'outcome', 'cancelled', 'finished_at', now, 'cancel_reason', reason)
    release_number(P, jk, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'final', outcome = 'cancelled', reason = reason}))
    redis.call('EXPIRE', jk, ttl)
    redis.call('EXPIRE', P .. ':history:' .. id, ttl)
    return 2
  end
  if not again and redis.call('HGET', jk, 'cancel') == '1' then return 0 end
  redis.call('HSET', jk, 'cancel', '1', 'cancel_reason', reason)
  redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'cancel-requested', reason = reason}))
  return 1
end
"""

_CANCEL = _CANCEL_ONE + """
local P, id, now, reason, ttl, campaign = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if campaign ~= '' and redis.call('HGET', P .. ':job:' .. id, 'campaign') ~= campaign then return 0 end
return cancel_one(P, id, now, reason, ttl, true)
"""

_CANCEL_OPEN = _CANCEL_ONE + """
-- every open job of one number (the set, and the newest-job pointer for jobs older than the set)
local P, open_key, open_set, now, reason, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local ids = redis.call('SMEMBERS', open_set)
local newest = redis.call('GET', open_key)
if newest then table.insert(ids, newest) end
local seen, out = {}, {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local result = cancel_one(P, id, now, reason, ttl, false)
    if result > 0 then
      table.insert(out, id)
      table.insert(out, tostring(result))
    elseif redis.call('HGET', P .. ':job:' .. id, 'state') ~= 'leased' then
      redis.call('SREM', open_set, id)  -- finished or gone: not open any more
    end
  end
end
return out
"""


@dataclass(frozen=True)
class NewJob:
    """What a source hands the store (the number already passed the policy)."""

    id: str
    campaign: str
    number: str
    e164: str
    original_at: float
    due_at: float
    expires_at: float
    caller_id: str = ""
    mode: str = "citizen-first"
    queue: str = "12345"
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    id: str
    campaign: str
    number: str
    e164: str
    state: str
    attempts: int
    original_at: float
    expires_at: float
    caller_id: str
    mode: str
    queue: str
    payload: dict[str, Any]
    phase: str = ""
    attempt_id: str = ""
    outcome: str = ""
    merged: int = 0
    created_at: float = 0.0
    due_at: float = 0.0
    cancel: bool = False

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> Job:
        return cls(
            id=data.get("id", ""),
            campaign=data.get("campaign", ""),
            number=data.get("number", ""),
            e164=data.get("e164", ""),
            state=data.get("state", ""),
            attempts=int(data.get("attempts") or 0),
            original_at=float(data.get("original_at") or 0),
            expires_at=float(data.get("expires_at") or 0),
            caller_id=data.get("caller_id", ""),
            mode=data.get("mode", "citizen-first"),
            queue=data.get("queue", ""),
            payload=json.loads(data.get("payload") or "{}"),
            phase=data.get("phase", ""),
            attempt_id=data.get("attempt_id", ""),
            outcome=data.get("outcome", ""),
            merged=int(data.get("merged") or 0),
            created_at=float(data.get("created_at") or 0),
            due_at=float(data.get("due_at") or 0),
            cancel=data.get("cancel") == "1",
        )

    def public(self) -> dict[str, Any]:
        """For the HTTP API: everything but the payload's internals (the number is masked by the caller)."""
        return {
            "id": self.id, "campaign": self.campaign, "state": self.state, "attempts": self.attempts,
            "original_at": self.original_at, "expires_at": self.expires_at, "mode": self.mode, "queue": self.queue,
            "outcome": self.outcome, "merged": self.merged, "created_at": self.created_at, "due_at": self.due_at,
            "phase": self.phase, "source": self.payload.get("source", ""),
        }


def _dialing_status(status: str, info: str) -> tuple[str, Any]:
    if status == "ok":
        return status, int(info)
    if status == "capped":
        return status, float(info)
    return status, None


def _pairs(raw: list) -> dict[str, str]:
    return {raw[i]: raw[i + 1] for i in range(0, len(raw), 2)}


class JobStore:
    """Blocking job store (run it in the Redis thread pool). ``client``: redis-py with decode_responses."""

    def __init__(self, client: Any, key_prefix: str = "hotline", owner: str | None = None,
                 done_ttl: int = _DONE_TTL) -> None:
        self.client = client
        self.prefix = f"{key_prefix}:dialer"
        self.owner = owner or f"gw-{uuid.uuid4().hex[:12]}"
        self.done_ttl = done_ttl
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._dialing = client.register_script(_DIALING)
        self._dialing_many = client.register_script(_DIALING_MANY)
        self._renew = client.register_script(_RENEW)
        self._finish = client.register_script(_FINISH)
        self._finish_many = client.register_script(_FINISH_MANY)
        self._recover = client.register_script(_RECOVER)
        self._cancel = client.register_script(_CANCEL)
        self._cancel_open = client.register_script(_CANCEL_OPEN)

    # -- keys --------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def open_key(self, campaign: str, e164: str) -> str:
        return self.key("open", campaign, e164)

    def open_set_key(self, campaign: str, e164: str) -> str:
        return self.key("open-set", campaign, e164)

    # -- writes ------------------------------------------------------------------------
    def add(self, job: NewJob, now: float, merge_window: float = -1.0) -> tuple[str, str]:
        """Schedule ``job``; returns (``added``|``merged``|``exists``, job id).

        Idempotent per job id (a replayed source adds nothing); with
        ``merge_window`` ≥ 0 a number with an open job of the same campaign
        created within the window merges into it (keeping the earlier place).
        """
        open_key = self.open_key(job.campaign, job.e164) if job.e164 else ""
        open_set = self.open_set_key(job.campaign, job.e164) if job.e164 else ""
        fields = {
            "campaign": job.campaign, "number": job.number, "e164": job.e164, "expires_at": repr(job.expires_at),
            "caller_id": job.caller_id, "mode": job.mode, "queue": job.queue, "open_key": open_key,
            "open_set": open_set, "payload": json.dumps(dict(job.payload), ensure_ascii=False),
        }
        args = [self.prefix, job.id, repr(now), repr(job.due_at), repr(job.original_at), repr(merge_window), open_key,
                open_set]
        for name, value in fields.items():
            args += [name, value]
        result, job_id = self._add(args=args)
        return result, job_id

    def claim(self, now: float, limit: int, lease: float, *, gated_modes: Iterable[str] = (),
              room: Mapping[str, int] | None = None, scan: int = 500) -> list[Job]:
        """Lease up to ``limit`` due jobs, earliest due first (FIFO by original place).

        With ``room`` (queue → how many may go now), a job of one of the ``gated_modes`` is taken
        only while its queue has room left (unknown queue: none); the others are skipped and keep
        their place, so jobs behind them (other modes, other queues) go instead. At most ``scan``
        due jobs are looked at.
        """
        gate = ""
        if room is not None:
            gate = json.dumps({"modes": sorted(gated_modes), "room": {q: int(n) for q, n in room.items()}})
        raw = self._claim(args=[self.prefix, repr(now), limit, self.owner, repr(now + lease), scan, gate])
        return [Job.from_hash(_pairs(item)) for item in raw]

    def mark_dialing(self, job_id: str, attempt_id: str, now: float, lease: float, cap: int) -> tuple[str, Any]:
        """Write-ahead before the Originate: (``ok``, attempt number) or why not
        (``lost`` lease, ``cancelled``, ``dnc``, ``capped`` with the time the cap frees)."""
        result = self._dialing(args=[self.prefix, job_id, self.owner, repr(now), attempt_id, repr(now + lease), cap])
        return _dialing_status(result[0], result[1])

    def mark_dialing_many(self, attempts: Sequence[tuple[str, str]], now: float, lease: float,
                          cap: int) -> list[tuple[str, Any]]:
        """:meth:`mark_dialing` for several ``(job id, attempt id)`` in one round trip (each job
        checked and written on its own, as if one by one); one ``(status, info)`` per job, in order."""
        if not attempts:
            return []
        args: list[Any] = [self.prefix, self.owner, repr(now), repr(now + lease), cap]
        for job_id, attempt_id in attempts:
            args += [job_id, attempt_id]
        raw = self._dialing_many(args=args)
        return [_dialing_status(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]

    def renew(self, job_ids: Iterable[str], now: float, lease: float) -> int:
        ids = list(job_ids)
        if not ids:
            return 0
        return int(self._renew(args=[self.prefix, self.owner, repr(now + lease), *ids]))

    def finish(self, job_id: str, now: float, entry: Mapping[str, Any] | None, final: str | None = None,
               retry_at: float | None = None) -> int:
        """Record an attempt and either end the job (``final``) or re-queue it at ``retry_at``.

        Returns 0 if this instance no longer holds the lease (nothing written),
        1 re-queued, 2 finished.
        """
        if final is None and retry_at is None:
            raise ValueError("finish needs a final outcome or a retry time")
        payload = json.dumps(dict(entry), ensure_ascii=False) if entry else ""
        return int(self._finish(args=[
            self.prefix, job_id, self.owner, repr(now), payload, final or "", repr(retry_at or 0.0), self.done_ttl,
        ]))

    def finish_many(self, items: Sequence[tuple[str, float, Mapping[str, Any] | None, str | None, float | None]]
                    ) -> list[int]:
        """:meth:`finish` for several ``(job id, now, entry, final, retry_at)`` in one round trip (each
        job on its own terms, as if one by one); one result per item, in order."""
        args: list[Any] = [self.prefix, self.owner, self.done_ttl]
        for job_id, now, entry, final, retry_at in items:
            if final is None and retry_at is None:
                raise ValueError("finish needs a final outcome or a retry time")
            payload = json.dumps(dict(entry), ensure_ascii=False) if entry else ""
            args += [job_id, repr(now), payload, final or "", repr(retry_at or 0.0)]
        if len(args) == 3:
            return []
        return [int(r) for r in self._finish_many(args=args)]

    def recover(self, now: float, lease: float, limit: int = 100) -> list[Job]:
        """Expired leases: jobs not yet dialling go back to the due index; jobs whose
        attempt was in progress are taken over and returned (settle them from Asterisk)."""
        raw = self._recover(args=[self.prefix, repr(now), self.owner, repr(now + lease), limit])
        return [Job.from_hash(_pairs(item)) for item in raw]

    def cancel(self, job_id: str, now: float, reason: str, campaign: str = "") -> int:
        """0 unknown/finished (or, with ``campaign``, a job of another campaign), 1 cancel requested
        (a call in progress is not hung up), 2 cancelled."""
        return int(self._cancel(args=[self.prefix, job_id, repr(now), reason, self.done_ttl, campaign]))

    def cancel_open(self, campaign: str, e164: str, now: float, reason: str) -> dict[str, int]:
        """Cancel every open job of a number in ``campaign`` in one step (the citizen called
        again and was answered): job id → 2 cancelled, or 1 cancel requested (a call in
        progress). Jobs already finished, or already asked to cancel, are left out."""
        raw = self._cancel_open(args=[
            self.prefix, self.open_key(campaign, e164), self.open_set_key(campaign, e164), repr(now), reason,
            self.done_ttl,
        ])
        return {raw[i]: int(raw[i + 1]) for i in range(0, len(raw), 2)}

    def open_job(self, campaign: str, e164: str) -> str | None:
        """The number's newest open job (the one new requests merge into)."""
        return self.client.get(self.open_key(campaign, e164))

    def open_jobs(self, campaign: str, e164: str) -> set[str]:
        """Every job of the number still open (pending, or leased and not yet finished)."""
        return set(self.client.smembers(self.open_set_key(campaign, e164)))

    # -- do-not-call ------------------------------------------------------------------------
    def add_dnc(self, e164: str) -> bool:
        """True if the number was not on the list yet."""
        return bool(self.client.sadd(self.key("dnc"), e164))

    def remove_dnc(self, e164: str) -> bool:
        """True if the number was on the list."""
        return bool(self.client.srem(self.key("dnc"), e164))

    def list_dnc(self, limit: int = 1000) -> tuple[int, list[str]]:
        """(size of the list, up to ``limit`` of its E.164 numbers in no particular order)."""
        numbers: list[str] = []
        for e164 in self.client.sscan_iter(self.key("dnc"), count=min(limit, 1000)):
            numbers.append(e164)
            if len(numbers) >= limit:
                break
        return int(self.client.scard(self.key("dnc"))), numbers

    def is_dnc(self, e164: str) -> bool:
        return bool(self.client.sismember(self.key("dnc"), e164))

    # -- reads ------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        data = self.client.hgetall(self.key("job", job_id))
        return Job.from_hash(data) if data else None

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.client.lrange(self.key("history", job_id), 0, -1)]

    def list(self, campaign: str | None = None, state: str | None = None, limit: int = 100) -> list[Job]:
        """Most recent first."""
        ids = self.client.zrevrange(self.key("jobs"), 0, max(limit * 5, limit) - 1)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.key("job", job_id))
        jobs = []
        stale = []
        for job_id, data in zip(ids, pipe.execute()):
            if not data:
                stale.append(job_id)
                continue
            job = Job.from_hash(data)
            if (campaign and job.campaign != campaign) or (state and job.state != state):
                continue
            jobs.append(job)
            if len(jobs) >= limit:
                break
        if stale:
            self.client.zrem(self.key("jobs"), *stale)
        return jobs

    def counts(self) -> dict[str, int]:
        return {"due": int(self.client.zcard(self.key("due"))), "leased": int(self.client.zcard(self.key("leases")))}

    def next_due(self) -> float | None:
        first = self.client.zrange(self.key("due"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def leased_by_me(self) -> list[str]:
        ids = self.client.zrange(self.key("leases"), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.key("job", job_id), "owner")
        return [job_id for job_id, owner in zip(ids, pipe.execute()) if owner == self.owner]
