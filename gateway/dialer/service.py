"""The dispatch loop: claim due jobs, pace, originate, settle, retry.

Every ``poll_interval`` seconds (injected clock), while AMI is logged in, Redis
answers and the call window is open: take pacing slots from the store every
instance shares (trunk capacity minus the inbound reserve, calls in flight,
call rate — see :mod:`.pacing`), lease that many due jobs (earliest first;
jobs bound for an agent queue without an agent to spare are skipped and keep
their place, so the jobs behind them go), give back the slots no job used,
write ahead ``dialing`` (caps, do-not-call, cancellation checked atomically),
send the Originate. Outcomes come from AMI events and, for attempts whose
events were missed, from Asterisk's record (see :mod:`.settle`). Leases of calls in progress are renewed; expired leases
of crashed instances are recovered.

A tick waits for two Redis pool hops however many jobs it starts: slots, claim
and agent holds (three scripts, one hop), then the write-ahead of all its jobs
(one script); outcomes and slots given back are written one batch at a time,
whatever comes while one is in flight going in the next.

Redis or AMI trouble pauses the dialer (metric ``hotline_dialer_paused``); it
never touches inbound calls, which do not depend on it.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..ami.codec import AmiMessage
from ..masking import mask_number
from .batching import Coalesced, RunBlocking
from .jobs import Job, JobStore
from .originate import ATTEMPT_PREFIX, AttemptOutcome, originate_fields
from .pacestore import PaceStore, new_slot_id
from .pacing import AGENT_MODES, Pacer, Slot
from .policy import NumberPolicy
from .retry import ATTEMPT_OUTCOMES, FINAL_OUTCOMES, RetryPolicy
from .settings import DialerMetrics, DialerSettings
from .settle import ActionSender, Attempt, AttemptSettling
from .windows import CallWindows

__all__ = ["Dialer", "DialerMetrics", "DialerSettings"]

log = Logger()

FinalListener = Callable[[Job, str, AttemptOutcome | None, float], None]


class Dialer(AttemptSettling):
    def __init__(
        self,
        *,
        clock: IReactorTime,
        run_blocking: RunBlocking,
        store: JobStore,
        ami: ActionSender,
        pacer: Pacer,
        pace_store: PaceStore,
        windows: CallWindows,
        retry: RetryPolicy,
        metrics: DialerMetrics,
        settings: DialerSettings = DialerSettings(),
        policy: NumberPolicy | None = None,
    ) -> None:
        self.clock = clock
        self._run = run_blocking
        self.store = store
        self.ami = ami
        self.pacer = pacer
        self.paces = pace_store
        self.windows = windows
        self.retry = retry
        self.metrics = metrics
        self.settings = settings
        #: checked again at the start of every attempt (tightened since the job was scheduled, or a job
        #: that reached the store another way): a refused number is never dialled
        self.policy = policy
        self.attempts: dict[str, Attempt] = {}
        self._by_action: dict[str, str] = {}
        self._unfinished: list[tuple[Attempt, AttemptOutcome]] = []
        self._final_listeners: list[FinalListener] = []
        self._attempt_listeners: list[Callable[[Job, AttemptOutcome], None]] = []
        #: per-campaign retry policy and call windows (the survey campaign's own); default: the dialer's
        self._campaign_retry: dict[str, RetryPolicy] = {}
        self._campaign_windows: dict[str, CallWindows] = {}
        self._loop: task.LoopingCall | None = None
        self._busy = False
        self._paused_until = 0.0
        self._next_housekeeping = 0.0
        self.pause_reason: str | None = None
        #: job-store finishes (outcomes, put-backs) and pacing releases, batched while one is in flight
        self._finishes = Coalesced(run_blocking, store.finish_many)
        self._releasing = False
        self._release_waiters: list[defer.Deferred] = []

    # -- wiring -------------------------------------------------------------------------
    def add_final_listener(self, listener: FinalListener) -> None:
        """``listener(job, final_outcome, last_attempt_outcome, at)`` once per job, when it ends here."""
        self._final_listeners.append(listener)

    def add_attempt_listener(self, listener: Callable[[Job, AttemptOutcome], None]) -> None:
        """``listener(job, outcome)`` once per concluded attempt."""
        self._attempt_listeners.append(listener)

    def configure_campaign(self, campaign: str, *, retry: RetryPolicy | None = None,
                           windows: CallWindows | None = None) -> None:
        """A campaign's own attempts/backoff and call windows (narrower than the dialer's window)."""
        if retry is not None:
            self._campaign_retry[campaign] = retry
        if windows is not None:
            self._campaign_windows[campaign] = windows

    def subscriptions(self) -> dict[str, Callable[[AmiMessage], None]]:
        """The AMI events the dialer consumes (added to the monitor's router)."""
        return {
            "OriginateResponse": self.on_originate_response,
            "UserEvent": self.on_user_event,
            "Hangup": self.on_hangup,
            "QueueCallerJoin": self.on_queue_join,
        }

    def start(self) -> None:
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(self.settings.poll_interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for attempt in self.attempts.values():
            if attempt.timer is not None and attempt.timer.active():
                attempt.timer.cancel()

    def _pause(self, reason: str | None) -> None:
        if reason != self.pause_reason:
            if reason:
                log.info("dialer paused: {reason}", reason=reason)
            else:
                log.info("dialer resumed")
        self.pause_reason = reason
        self.metrics.pause(reason)

    # -- the loop ---------------------------------------------------------------------------
    def tick(self) -> defer.Deferred:
        if self._busy:
            return defer.succeed(None)
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._tick())

        def done(result):
            self._busy = False
            return result

        d.addBoth(done)
        d.addErrback(lambda f: log.failure("dialer tick failed", f))
        return d

    async def _tick(self) -> None:
        now = self.clock.seconds()
        if now < self._paused_until:
            return
        try:
            if now >= self._next_housekeeping:
                self._next_housekeeping = now + max(self.settings.poll_interval, self.settings.lease / 3)
                await self._housekeeping(now)
            if not self.ami.logged_in:
                self._pause("ami")
                return
            if not self.windows.is_open(now):
                self._pause("window")
                return
            self._pause(None)
            await self._dispatch(now)
        except Exception as exc:  # noqa: BLE001 — Redis down (or any store error): pause, retry later
            self.metrics.store_failures.inc()
            self._pause("redis")
            self._paused_until = now + self.settings.retry_interval
            self._next_housekeeping = 0.0
            log.warn("dialer: job store unavailable ({error}); pausing {pause} s", error=f"{type(exc).__name__}: {exc}",
                     pause=self.settings.retry_interval)

    async def _housekeeping(self, now: float) -> None:
        lease = self.settings.lease
        mine = [a.job.id for a in self.attempts.values() if not a.concluded]
        if mine:
            await self._run(lambda: self.store.renew(mine, now, lease))
        await self._renew_slots(now)
        await self._flush_releases()
        unfinished, self._unfinished = self._unfinished, []
        for attempt, outcome in unfinished:
            await self._record(attempt, outcome)
        orphans = await self._run(lambda: self.store.recover(now, lease))
        for job in orphans:
            if job.attempt_id in self.attempts:
                continue
            self.metrics.recovered.inc()
            log.info("dialer: taking over attempt {attempt} of job {job} (lease expired)", attempt=job.attempt_id,
                     job=job.id)
            slot = Slot(self.settings.trunk, new_slot_id())
            await self._run(lambda: self.paces.adopt(slot.trunk, slot.id, now, lease))
            attempt = Attempt(job.attempt_id, job, job.attempts, slot, now)
            self.attempts[attempt.id] = attempt
            self.metrics.in_flight.set(len(self.attempts))
            self._settle_later(attempt, 0)
        # answered calls whose end we may have missed (AMI was away): ask Asterisk
        for attempt in list(self.attempts.values()):
            if not attempt.concluded and not attempt.settling and attempt.extra.get("recheck"):
                self._settle_later(attempt, 0)

    async def _dispatch(self, now: float) -> None:
        trunk, lease = self.settings.trunk, self.settings.lease
        if self.pacer.why_not(trunk) is not None:
            return  # the live monitor already says no (inbound reserve): no Redis round trip
        limit = self.pacer.limits[trunk]
        room = self.pacer.trunk_room(trunk)
        bases = self.pacer.agent_bases()
        ids = [new_slot_id() for _ in range(self.settings.batch)]
        taken: list[str] = []

        def take() -> tuple[list[Job], set[str]]:
            # in the pool, one hop for the tick's three round trips (each still its own atomic script)
            granted, agent_room = self.paces.acquire(trunk, limit, now, ids, room, lease, bases)
            taken.extend(granted)
            if not granted:
                return [], set()
            jobs = self.store.claim(now, len(granted), lease, gated_modes=AGENT_MODES, room=agent_room)
            unused = granted[len(jobs):]
            holds = [(slot_id, job.queue, bases.get(job.queue, 0))
                     for job, slot_id in zip(jobs, granted) if job.mode in AGENT_MODES]
            # unused slots give their tokens back; agent-bound jobs hold an agent (all instances counted)
            refused = self.paces.commit(trunk, limit, now, lease, unused, holds) if unused or holds else set()
            return jobs, refused

        try:
            jobs, refused = await self._run(take)
        except Exception:
            # Redis failed: the slots go back once it answers (or their leases run out); jobs already
            # claimed return to their place when their leases run out
            for slot_id in taken:
                self.pacer.release(Slot(trunk, slot_id))
            raise
        ends: list[defer.Deferred] = []
        dial: list[tuple[Job, Slot, str]] = []
        for job, slot_id in zip(jobs, taken):
            if slot_id in refused:
                # another instance took the last agent to spare: back to its place, no attempt counted
                ends.append(self._put_back(job, now))
                continue
            slot = Slot(trunk, slot_id, job.queue if job.mode in AGENT_MODES else None)
            ended = self._without_call(job, slot, now)
            if ended is not None:
                ends.append(ended)
            else:
                dial.append((job, slot, f"{ATTEMPT_PREFIX}{uuid.uuid4().hex[:20]}"))
        error: Exception | None = None
        if dial:
            cap = self.settings.per_number_cap
            try:
                # the write-ahead of every call of the tick in one round trip (each job on its own terms)
                marks = await self._run(
                    lambda: self.store.mark_dialing_many([(job.id, aid) for job, _, aid in dial], now, lease, cap)
                )
            except Exception as exc:  # noqa: BLE001 — pause after the other jobs are settled
                error, marks = exc, []
            if self.settings.test_pause > 0 and marks:
                log.warn("dialer: TEST PAUSE of {pause} s between the write-ahead and the Originate",
                         pause=self.settings.test_pause)
                await task.deferLater(self.clock, self.settings.test_pause, lambda: None)
            for (job, slot, attempt_id), (status, info) in zip(dial, marks):
                if status == "ok":
                    self._originate(job, slot, attempt_id, int(info), now)
                else:
                    self.pacer.release(slot)
                    ends.append(defer.Deferred.fromCoroutine(self._not_dialled(job, status, info, now)))
        results = await defer.DeferredList(ends, consumeErrors=True)
        await self._flush_releases()
        if error is not None:
            raise error
        for ok, failure in results:
            if not ok:
                raise failure.value

    def _finish_job(self, job_id: str, now: float, entry: dict[str, Any] | None, *, final: str | None = None,
                    retry_at: float | None = None) -> defer.Deferred:
        """``JobStore.finish`` through the batched writer (0 not ours, 1 re-queued, 2 finished)."""
        if final is None and retry_at is None:
            raise ValueError("finish needs a final outcome or a retry time")
        return self._finishes.submit((job_id, now, entry, final, retry_at))

    def _put_back(self, job: Job, now: float) -> defer.Deferred:
        return self._finish_job(job.id, now, None, retry_at=job.due_at)

    async def _renew_slots(self, now: float) -> None:
        live = [a.slot for a in self.attempts.values() if not a.concluded and a.slot is not None]
        lease = self.settings.lease
        for trunk in {slot.trunk for slot in live}:
            mine = [slot for slot in live if slot.trunk == trunk]
            holds = [(slot.agent_queue, slot.id) for slot in mine if slot.agent_queue is not None]
            await self._run(lambda: self.paces.renew(trunk, now, lease, [slot.id for slot in mine], holds))

    def _flush_releases(self) -> defer.Deferred:
        """Write the slots and holds given back to the shared store; on failure keep them for the
        next try (until then their leases run out on their own). One write at a time: releases made
        while one is in flight go together in the next, right after it (the Deferred fires once
        this call's releases are written or kept)."""
        if self._releasing:
            d = defer.Deferred()
            self._release_waiters.append(d)
            return d
        releases = self.pacer.take_releases()
        if not releases:
            return defer.succeed(None)
        now = self.clock.seconds()

        def write() -> None:
            for trunk in {r.slot.trunk for r in releases}:
                mine = [r for r in releases if r.slot.trunk == trunk]
                self.paces.release(
                    trunk, self.pacer.limits[trunk], now,
                    refund=[r.slot.id for r in mine if r.call and r.refund],
                    spent=[r.slot.id for r in mine if r.call and not r.refund],
                    holds=[(r.slot.agent_queue, r.slot.id) for r in mine if r.slot.agent_queue is not None],
                )

        def failed(failure) -> None:
            self.pacer.put_back_releases(releases)
            self.metrics.store_failures.inc()
            log.warn("dialer: cannot give pacing slots back yet: {error}", error=failure.getErrorMessage())

        def done(_) -> None:
            self._releasing = False
            waiters, self._release_waiters = self._release_waiters, []
            if not waiters:
                return None
            after = self._flush_releases()
            after.addBoth(lambda _: [w.callback(None) for w in waiters])
            return None

        self._releasing = True
        return self._run(write).addErrback(failed).addBoth(done)

    def _without_call(self, job: Job, slot: Slot, now: float) -> defer.Deferred | None:
        """The checks before the write-ahead: if the job ends (or waits) without a call, give its
        slot back and return the Deferred of that ending; None if it may be dialled."""
        if now >= job.expires_at:
            self.pacer.release(slot)
            return defer.Deferred.fromCoroutine(self._finish_without_call(job, "expired", now))
        if job.cancel:
            self.pacer.release(slot)
            return defer.Deferred.fromCoroutine(self._finish_without_call(job, "cancelled", now))
        if self.policy is not None:
            decision = self.policy.check(job.number)
            if not decision.allowed:
                self.pacer.release(slot)
                return defer.Deferred.fromCoroutine(self._reject(job, decision.reason, now))
        windows = self._campaign_windows.get(job.campaign)
        if windows is not None and not windows.is_open(now):
            self.pacer.release(slot)
            # outside the campaign's own window: back to the due index at its next opening, no attempt counted
            return self._finish_job(job.id, now, None, retry_at=windows.next_open(now))
        return None

    async def _not_dialled(self, job: Job, status: str, info: Any, now: float) -> None:
        """The write-ahead refused the attempt (its slot is already given back)."""
        if status == "capped":
            entry = {"at": now, "event": "capped", "until": info}
            await self._finish_job(job.id, now, entry, retry_at=max(info, job.due_at))
        elif status in ("cancelled", "dnc"):
            await self._finish_without_call(job, "cancelled" if status == "cancelled" else "do_not_call", now)

    def _originate(self, job: Job, slot: Slot, attempt_id: str, number: int, now: float) -> None:
        """``dialing`` is written: send the Originate."""
        attempt = Attempt(attempt_id, job, number, slot, now)
        self.attempts[attempt_id] = attempt
        self.metrics.in_flight.set(len(self.attempts))
        fields = originate_fields(
            attempt_id=attempt_id, number=job.number, mode=job.mode, queue=job.queue, caller_id=job.caller_id,
            priority=self.settings.callback_priority, ring_timeout=self.settings.ring_timeout,
            variables=job.payload.get("channel_vars"),
        )
        log.info("dialer: attempt {n} of job {job} to {number} ({mode})", n=attempt.number, job=job.id,
                 number=mask_number(job.number), mode=job.mode)
        attempt.timer = self.clock.callLater(
            self.settings.ring_timeout + self.settings.response_grace, self._no_response, attempt_id
        )
        d = self.ami.send_action("Originate", fields)
        d.addCallbacks(self._originate_queued, self._originate_failed, callbackArgs=(attempt,),
                       errbackArgs=(attempt,))

    async def _reject(self, job: Job, reason: str, now: float) -> None:
        """The number policy refuses the job's number: attempt outcome ``rejected_by_policy``
        (never dialled, no attempt counted on the job), final ``rejected``."""
        outcome = AttemptOutcome("rejected_by_policy", detail=reason)
        log.warn("dialer: job {job} not dialled: {number} refused by the number policy ({reason})", job=job.id,
                 number=mask_number(job.number), reason=reason)
        self.metrics.attempts.labels(campaign=job.campaign, outcome=outcome.outcome).inc()
        for listener in list(self._attempt_listeners):
            try:
                listener(job, outcome)
            except Exception:  # a listener bug must not stop the dialer
                log.failure("dialer attempt listener {listener!r} failed", listener=listener)
        entry = {"at": now, "event": "rejected", "outcome": outcome.outcome, "detail": reason}
        result = await self._finish_job(job.id, now, entry, final="rejected")
        if result == 2:
            self._finished(job, "rejected", outcome, now)

    async def _finish_without_call(self, job: Job, final: str, now: float) -> None:
        result = await self._finish_job(job.id, now, None, final=final)
        if result == 2:
            self._finished(job, final, None, now)

    # -- outcomes ------------------------------------------------------------------------------------
    def conclude(self, attempt: Attempt, outcome: AttemptOutcome) -> None:
        """The attempt is over: release its slot, count it, record it (and retry or finish the job)."""
        if attempt.concluded:
            return
        attempt.concluded = True
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        attempt.timer = None
        if attempt.slot is not None:
            self.pacer.release(attempt.slot, refund=False)
            attempt.slot = None
            self._flush_releases()
        if outcome.outcome in ATTEMPT_OUTCOMES:
            self.metrics.attempts.labels(campaign=attempt.job.campaign, outcome=outcome.outcome).inc()
        for listener in list(self._attempt_listeners):
            try:
                listener(attempt.job, outcome)
            except Exception:  # a listener bug must not stop the dialer
                log.failure("dialer attempt listener {listener!r} failed", listener=listener)
        log.info("dialer: attempt {n} of job {job}: {outcome} ({detail})", n=attempt.number, job=attempt.job.id,
                 outcome=outcome.outcome, detail=outcome.detail)
        defer.Deferred.fromCoroutine(self._record(attempt, outcome))

    async def _record(self, attempt: Attempt, outcome: AttemptOutcome) -> None:
        now = self.clock.seconds()
        job = attempt.job
        retry = self._campaign_retry.get(job.campaign, self.retry)
        decision = retry.after(outcome.outcome, attempt.number, now, job.expires_at)
        entry = {
            "at": now, "event": "attempt", "attempt": attempt.number, "attempt_id": attempt.id,
            "outcome": outcome.outcome, "detail": outcome.detail, "pressed": outcome.pressed, "talk": outcome.talk,
        }
        try:
            result = await self._finish_job(job.id, now, entry, final=decision.final, retry_at=decision.retry_at)
        except Exception as exc:  # noqa: BLE001 — keep it and write it once Redis is back
            self.metrics.store_failures.inc()
            log.warn("dialer: cannot record attempt {attempt} yet: {error}", attempt=attempt.id, error=str(exc))
            self._unfinished.append((attempt, outcome))
            return
        self.attempts.pop(attempt.id, None)
        self.metrics.in_flight.set(len(self.attempts))
        if result == 0:
            log.warn("dialer: job {job} is no longer ours (lease taken over); attempt {attempt} recorded there",
                     job=job.id, attempt=attempt.id)
        elif result == 2:
            final = decision.final or "cancelled"
            self._finished(job, final, outcome, now)

    def _finished(self, job: Job, final: str, outcome: AttemptOutcome | None, at: float) -> None:
        if final in FINAL_OUTCOMES:
            self.metrics.finals.labels(campaign=job.campaign, outcome=final).inc()
        for listener in list(self._final_listeners):
            try:
                listener(job, final, outcome, at)
            except Exception:  # a listener bug must not stop the dialer
                log.failure("dialer final listener {listener!r} failed", listener=listener)
