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

from . import jobs_lua as lua

__all__ = ["Job", "JobStore", "NewJob"]

_DONE_TTL = 30 * 24 * 3600


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
                 done_ttl: int = _DONE_TTL, node: str = "") -> None:
        self.client = client
        #: the Asterisk node this instance dials through (several nodes): an attempt in progress
        #: is recorded with it, and only that node's instances take it over when its lease expires
        self.node = node
        self.prefix = f"{key_prefix}:dialer"
        self.owner = owner or f"gw-{uuid.uuid4().hex[:12]}"
        self.done_ttl = done_ttl
        self._add = client.register_script(lua.ADD)
        self._claim = client.register_script(lua.CLAIM)
        self._dialing = client.register_script(lua.DIALING)
        self._dialing_many = client.register_script(lua.DIALING_MANY)
        self._renew = client.register_script(lua.RENEW)
        self._finish = client.register_script(lua.FINISH)
        self._finish_many = client.register_script(lua.FINISH_MANY)
        self._recover = client.register_script(lua.RECOVER)
        self._cancel = client.register_script(lua.CANCEL)
        self._cancel_open = client.register_script(lua.CANCEL_OPEN)

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
        result = self._dialing(args=[self.prefix, job_id, self.owner, repr(now), attempt_id, repr(now + lease), cap,
                                     self.node])
        return _dialing_status(result[0], result[1])

    def mark_dialing_many(self, attempts: Sequence[tuple[str, str]], now: float, lease: float,
                          cap: int) -> list[tuple[str, Any]]:
        """:meth:`mark_dialing` for several ``(job id, attempt id)`` in one round trip (each job
        checked and written on its own, as if one by one); one ``(status, info)`` per job, in order."""
        if not attempts:
            return []
        args: list[Any] = [self.prefix, self.owner, repr(now), repr(now + lease), cap, self.node]
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
        attempt was in progress on this instance's node (or on no named node) are taken
        over and returned (settle them from Asterisk); another node's are left to its instances."""
        raw = self._recover(args=[self.prefix, repr(now), self.owner, repr(now + lease), limit, self.node])
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
