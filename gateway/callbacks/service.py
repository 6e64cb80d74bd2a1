"""The callback service: turn lost calls into dial jobs, and their outcomes into metrics.

Rules (``[callbacks]`` configuration):

* abandons that waited less than ``min_wait`` seconds are not called back
  (0 = call every abandon back; operators may ignore 秒挂);
* a number with an open callback created within ``merge_window`` seconds is
  not called twice: the new request merges into it and the earlier place in
  line is kept;
* when the citizen calls again and an agent answers, every open callback of
  the number is cancelled at once — with ``merge_window`` shorter than
  ``expiry`` a number can have more than one (a call already ringing is not
  cut off, only its retries);
* place in line: a callback's due time is its *original* time — when the
  caller joined the queue (abandons) or asked for the callback (IVR) — so the
  dialer serves them first in, first out;
* a callback expires ``expiry`` seconds after its original time;
* success only when the citizen pressed 1 and talked at least ``min_talk``
  seconds (the dialer's ``answered``); voicemail or a wrong person is
  ``unconfirmed`` and retried.

Job ids are ``cb-<call id>``: the same lost call reported by the AMI monitor,
the queue_log replay, the safety net and the IVR is one job (idempotent).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..dialer.jobs import Job, JobStore, NewJob
from ..dialer.originate import ATTEMPT_PREFIX, AttemptOutcome
from ..dialer.policy import NumberPolicy, national_digits
from ..masking import mask_number
from ..monitor.model import AbandonedCall
from .metrics import BROAD_RATE_SOURCES, CallbackMetrics, source_label

__all__ = ["CALLBACK_CAMPAIGN", "CallbackService", "CallbackSettings"]

log = Logger()

CALLBACK_CAMPAIGN = "callback"
_ID_SAFE = re.compile(r"[^0-9A-Za-z._-]")

RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]


@dataclass(frozen=True)
class CallbackSettings:
    mode: str = "citizen-first"
    queue: str = "12345"
    caller_id: str = ""
    min_wait: float = 0.0
    merge_window: float = 4 * 3600.0
    expiry: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.mode not in ("citizen-first", "agent-first"):
            raise ValueError("callbacks.mode must be citizen-first or agent-first")


def job_id_for(call_id: str) -> str:
    clean = _ID_SAFE.sub("", call_id)[:80]
    if not clean:
        clean = hashlib.sha1(call_id.encode()).hexdigest()[:16]
    return f"cb-{clean}"


def lost_at(job: Job) -> float:
    """When the call was lost: the abandon (``abandoned_at``) or the safety net's ``missed_at``;
    for IVR, API and console requests (no lost call), the request's original time."""
    key = {"abandon": "abandoned_at", "safety-net": "missed_at"}.get(job.payload.get("source"))
    try:
        value = float(job.payload.get(key, 0)) if key else 0.0
    except (TypeError, ValueError):
        value = 0.0
    return value if value > 0 else job.original_at


class CallbackService:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        run_blocking: RunBlocking,
        store: JobStore,
        policy: NumberPolicy,
        metrics: CallbackMetrics,
        settings: CallbackSettings = CallbackSettings(),
        count_connected: Callable[[str], None] = lambda queue: None,
    ) -> None:
        self.clock = clock
        self._run = run_blocking
        self.store = store
        self.policy = policy
        self.metrics = metrics
        self.settings = settings
        self._count_connected = count_connected

    # -- scheduling -------------------------------------------------------------------------
    async def schedule(
        self, *, source: str, call_id: str, caller: str, original_at: float, queue: str = "",
        details: dict[str, Any] | None = None, mode: str | None = None,
    ) -> str:
        """Schedule a callback; returns added | merged | exists | ignored:<reason>."""
        decision = self.policy.check(caller)
        if not decision.allowed:
            reason = "no_number" if not caller else "policy"
            self.metrics.ignored.labels(reason=reason).inc()
            log.info("callback for call {call_id} not scheduled: {reason} ({number})", call_id=call_id,
                     reason=decision.reason, number=mask_number(caller))
            return f"ignored:{reason}"
        now = self.clock.seconds()
        original_at = min(original_at, now) if original_at > 0 else now
        payload = {"source": source, "call_id": call_id, "queue": queue or self.settings.queue, **(details or {})}
        job = NewJob(
            id=job_id_for(call_id),
            campaign=CALLBACK_CAMPAIGN,
            number=decision.dial,
            e164=decision.e164,
            original_at=original_at,
            due_at=original_at,
            expires_at=original_at + self.settings.expiry,
            caller_id=self.settings.caller_id,
            mode=mode or self.settings.mode,
            queue=self.settings.queue,
            payload=payload,
        )
        result, job_id = await self._run(lambda: self.store.add(job, now, self.settings.merge_window))
        if result == "added":
            self.metrics.scheduled.labels(source=source).inc()
        elif result == "merged":
            self.metrics.merged.labels(source=source).inc()
        log.info("callback {result}: job {job} for call {call_id} from {source} ({number})", result=result,
                 job=job_id, call_id=call_id, source=source, number=mask_number(decision.dial))
        return result

    def on_abandon(self, call: AbandonedCall) -> defer.Deferred | None:
        """The monitor's abandon listener (live events and the queue_log replay)."""
        if call.uniqueid.startswith(ATTEMPT_PREFIX):
            # a callback's own leg left the queue unanswered: that callback's attempt
            # settles it; never a callback of a callback (or of the hotline's caller id)
            self.metrics.ignored.labels(reason="callback-leg").inc()
            return None
        if self.settings.min_wait > 0 and call.wait < self.settings.min_wait:
            self.metrics.ignored.labels(reason="short").inc()
            return None
        d = defer.Deferred.fromCoroutine(self.schedule(
            source="abandon", call_id=call.uniqueid, caller=call.caller, original_at=call.joined_at,
            queue=call.queue, details={"abandoned_at": call.abandoned_at, "wait": round(call.wait, 1),
                                       "position": call.position},
        ))
        d.addErrback(lambda f: log.warn("callback for {call_id} not stored: {error}", call_id=call.uniqueid,
                                        error=f.getErrorMessage()))
        return d

    def on_lost(self, call: AbandonedCall) -> defer.Deferred | None:
        """The monitor's lost-call listener: a citizen who was waiting in a queue when the call
        vanished unseen (the Asterisk node went down) is called back like an abandon."""
        if call.uniqueid.startswith(ATTEMPT_PREFIX):
            self.metrics.ignored.labels(reason="callback-leg").inc()
            return None
        d = defer.Deferred.fromCoroutine(self.schedule(
            source="lost", call_id=call.uniqueid, caller=call.caller, original_at=call.joined_at,
            queue=call.queue, details={"lost_at": call.abandoned_at, "wait": round(call.wait, 1)},
        ))
        d.addErrback(lambda f: log.warn("callback for {call_id} not stored: {error}", call_id=call.uniqueid,
                                        error=f.getErrorMessage()))
        return d

    # -- cancellation -----------------------------------------------------------------------------
    async def cancel_for_number(self, caller: str, reason: str) -> dict[str, int]:
        """Cancel every open callback of the number (one atomic step); job id → 2 cancelled,
        1 cancel requested (a call in progress: no retry after it)."""
        decision = self.policy.check(caller)
        if not decision.e164:
            return {}
        now = self.clock.seconds()
        results = await self._run(lambda: self.store.cancel_open(CALLBACK_CAMPAIGN, decision.e164, now, reason))
        for job_id, result in sorted(results.items()):
            self.metrics.cancelled.labels(reason=reason).inc()
            log.info("callback {job} for {number} {result} ({reason})", job=job_id,
                     number=mask_number(decision.dial or caller),
                     result="cancelled" if result == 2 else "cancel requested", reason=reason)
        return results

    def on_answered(self, uniqueid: str, caller: str, queue: str, at: float) -> None:
        """The monitor's answer listener: the citizen called again and reached an agent.

        A callback's own leg joining the queue is not "calling again" (its
        caller id is the citizen's once the far end answered)."""
        if not caller or uniqueid.startswith(ATTEMPT_PREFIX):
            return
        d = defer.Deferred.fromCoroutine(self.cancel_for_number(caller, "answered-again"))
        d.addErrback(lambda f: log.warn("callback cancel failed: {error}", error=f.getErrorMessage()))

    async def cancel(self, job_id: str, reason: str = "api") -> int:
        """Cancel one callback (a job of another campaign, a survey call, is left alone: 0, as unknown)."""
        now = self.clock.seconds()
        result = await self._run(lambda: self.store.cancel(job_id, now, reason, campaign=CALLBACK_CAMPAIGN))
        if result:
            self.metrics.cancelled.labels(reason=reason).inc()
        return result

    # -- outcomes (dialer listeners) -----------------------------------------------------------------
    def on_attempt(self, job: Job, outcome: AttemptOutcome) -> None:
        if job.campaign == CALLBACK_CAMPAIGN:
            self.metrics.attempted.labels(outcome=outcome.outcome).inc()

    def on_final(self, job: Job, final: str, outcome: AttemptOutcome | None, at: float) -> None:
        if job.campaign != CALLBACK_CAMPAIGN:
            return
        self.metrics.finished.labels(outcome=final).inc()
        if final == "expired":
            self.metrics.expired.inc()
        if final == "connected":
            source = source_label(job.payload.get("source"))
            self.metrics.connected.labels(source=source).inc()
            self.metrics.latency.labels(source=source).observe(max(0.0, at - lost_at(job)))
            if source in BROAD_RATE_SOURCES:
                self._count_connected(job.payload.get("queue") or job.queue)

    # -- reads (API, console) -------------------------------------------------------------------------
    async def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        return await self._run(lambda: self.store.list(CALLBACK_CAMPAIGN, state, limit))

    async def show(self, job_id: str) -> tuple[Job | None, list[dict[str, Any]]]:
        """One callback and its history; (None, []) for an unknown id or a job of another campaign."""
        def read() -> tuple[Job | None, list[dict[str, Any]]]:
            job = self.store.get(job_id)
            if job is None or job.campaign != CALLBACK_CAMPAIGN:
                return None, []
            return job, self.store.history(job_id)

        return await self._run(read)

    # -- do-not-call (declined follow-up) ----------------------------------------------------------------
    async def dnc_list(self, limit: int = 1000) -> tuple[int, list[str]]:
        """(how many numbers are on the list, up to ``limit`` of them masked)."""
        count, numbers = await self._run(lambda: self.store.list_dnc(limit))
        return count, sorted(mask_number(national_digits(e164)) for e164 in numbers)

    async def dnc_change(self, number: str, add: bool, via: str = "api") -> tuple[str, str]:
        """Add a number to (or remove it from) the do-not-call list. The number goes through the
        policy's parser (any valid number, whether or not its kind may be dialled); returns
        (``added``|``already``|``removed``|``not-listed``|``refused``, masked number or the refusal's reason)."""
        decision = self.policy.check(number)
        if not decision.e164:
            return "refused", decision.reason
        masked = mask_number(decision.dial or national_digits(decision.e164))
        if add:
            changed = await self._run(lambda: self.store.add_dnc(decision.e164))
            result = "added" if changed else "already"
        else:
            changed = await self._run(lambda: self.store.remove_dnc(decision.e164))
            result = "removed" if changed else "not-listed"
        log.info("do-not-call list: {number} {result} (via {via})", number=masked, result=result, via=via)
        return result, masked
