"""The survey campaign: closed orders → survey calls → dialer jobs; dialer outcomes → results.

* :meth:`SurveyCampaign.accept` takes a closed order (HTTP or stream trigger), checks the
  number with the dialer's number policy and stores it, due ``delay`` after closure
  (idempotent per order id);
* every ``interval`` seconds (injected clock) numbers whose call is due become survey calls
  (:mod:`.rules`: combined orders, spacing) and each call one dialer job of campaign
  ``survey``, mode ``survey``: the survey's caller ID, its own windows and retry policy
  (``Dialer.configure_campaign``), the dialer's do-not-call list and per-number cap;
* the order data reaches the call as channel variables (``HOTLINE_SV_*``), the survey flow
  stores answers as they are given (:mod:`.flow`), and when the dialer finishes the job the
  orders not yet finished get their final status here (partial, refused, no answer …) and
  the number is released for its next orders after the spacing.

A crash between planning a call and adding its dialer job is repaired at the next tick
(``P:unsubmitted``; the job add is idempotent by call id), so a restart loses and repeats
nothing.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..dialer.jobs import Job, JobStore, NewJob
from ..dialer.originate import AttemptOutcome
from ..dialer.policy import NumberPolicy
from ..masking import mask_number
from .metrics import SurveyMetrics, category_key
from .model import QUESTIONS, ClosedOrder
from .rules import SurveyRules
from .store import CallPlan, SurveyStore, real_answers

__all__ = ["SURVEY_CAMPAIGN", "CampaignSettings", "SurveyCampaign", "channel_vars", "topic_key"]

log = Logger()

SURVEY_CAMPAIGN = "survey"
SURVEY_MODE = "survey"
_KEY = re.compile(r"[a-z0-9_]{1,32}")

RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]


@dataclass(frozen=True)
class CampaignSettings:
    caller_id: str = ""
    #: the dialer's queue field (unused by survey calls; must be a queue-shaped name)
    queue: str = "12345"
    interval: float = 5.0
    #: how often calls still open here are checked against the dialer's jobs (a final missed in a crash)
    sweep_interval: float = 60.0
    timezone: str = "Asia/Shanghai"
    #: topic names of the platform → prompt keys of the survey flow (``topic_<key>``); else ``other``
    topics: Mapping[str, str] = field(default_factory=dict)


def topic_key(topic: str, topics: Mapping[str, str]) -> str:
    key = topics.get(topic.strip()) or topics.get(topic.strip().lower())
    if key and _KEY.fullmatch(key):
        return key
    text = topic.strip().lower()
    if _KEY.fullmatch(text) and text in topics.values():
        return text
    return "other"


def channel_vars(plan: CallPlan, topics: Mapping[str, str], tz: dt.tzinfo) -> dict[str, str]:
    """The order data the survey flow speaks: ids, topic prompt keys, report dates (YYYYMMDD)."""
    out = {"HOTLINE_SV_CALL": plan.call_id, "HOTLINE_SV_COUNT": str(len(plan.orders))}
    for index, order in enumerate(plan.orders, start=1):
        reported = float(order.get("reported_at") or order.get("closed_at") or 0)
        out[f"HOTLINE_SV_ORDER_{index}"] = order["order_id"]
        out[f"HOTLINE_SV_TOPIC_{index}"] = topic_key(order.get("topic", ""), topics)
        out[f"HOTLINE_SV_DATE_{index}"] = dt.datetime.fromtimestamp(reported, tz).strftime("%Y%m%d")
    return out


class SurveyCampaign:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        run_blocking: RunBlocking,
        store: SurveyStore,
        jobs: JobStore,
        policy: NumberPolicy,
        metrics: SurveyMetrics,
        rules: SurveyRules = SurveyRules(),
        settings: CampaignSettings = CampaignSettings(),
    ) -> None:
        self.clock = clock
        self._run = run_blocking
        self.store = store
        self.jobs = jobs
        self.policy = policy
        self.metrics = metrics
        self.rules = rules
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self._loop: task.LoopingCall | None = None
        self._busy = False
        self._next_sweep = 0.0
        self.healthy = True

    # -- orders in ------------------------------------------------------------------------
    async def accept(self, order: ClosedOrder, source: str) -> str:
        """``added`` | ``exists`` | ``ignored:<reason>`` (policy, too_old)."""
        now = self.clock.seconds()
        decision = self.policy.check(order.phone)
        if not decision.allowed:
            self.metrics.ignored.labels(reason="policy").inc()
            log.info("survey for order {order} not scheduled: {reason} ({number})", order=order.order_id,
                     reason=decision.reason, number=mask_number(order.phone))
            return "ignored:policy"
        if self.rules.too_old(order.closed_at, now):
            self.metrics.ignored.labels(reason="too_old").inc()
            return "ignored:too_old"
        due = self.rules.due_at(order.closed_at, now)
        stored = ClosedOrder(order.order_id, decision.dial, order.category, order.topic, order.unit,
                             order.closed_at, order.reported_at)
        result = await self._run(lambda: self.store.accept(stored, decision.e164, decision.dial, due, now,
                                                           self.rules.spacing))
        if result == "added":
            self.metrics.received.labels(source=source).inc()
        else:
            self.metrics.ignored.labels(reason="duplicate").inc()
        log.info("survey order {order} {result} from {source} ({number}), due in {due:.0f} s", order=order.order_id,
                 result=result, source=source, number=mask_number(decision.dial), due=due - now)
        return result

    # -- the loop ---------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(self.settings.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def tick(self) -> defer.Deferred:
        if self._busy:
            return defer.succeed(0)
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._tick())

        def failed(failure):
            self.metrics.store_failures.inc()
            if self.healthy:
                log.warn("survey campaign: store unavailable ({error}); retrying", error=failure.getErrorMessage())
            self.healthy = False
            return 0

        def done(result):
            self._busy = False
            return result

        d.addErrback(failed)
        d.addBoth(done)
        return d

    async def _tick(self) -> int:
        now = self.clock.seconds()
        horizon = self.rules.horizon(now)
        plans = await self._run(lambda: self.store.promote(now, horizon, self.rules.max_orders_per_call))
        self.healthy = True
        for plan in plans:
            await self._submit(plan, now)
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.sweep_interval
            await self.sweep()
        return len(plans)

    async def sweep(self) -> int:
        """End calls whose dialer job is over but whose end was not recorded here (the gateway stopped
        between the dialer's final write and this campaign's listener, or Redis failed just then)."""
        def over() -> list[tuple[str, str]]:
            # one atomic read of open minus unsubmitted calls: reading the two sets one after the other let a
            # call planned in between by another instance (its job not yet added) look like a vanished job
            ended = []
            for call_id in self.store.submitted_calls():
                job = self.jobs.get(call_id)
                if job is None:
                    ended.append((call_id, "expired"))  # the job's record is gone: nothing will finish it
                elif job.state == "done":
                    ended.append((call_id, job.outcome or "cancelled"))
            return ended

        ended = await self._run(over)
        for call_id, final in ended:
            log.info("survey call {call}: dialer job ended ({final}) without a recorded end; finishing it",
                     call=call_id, final=final)
            await self.call_ended(call_id, final)
        return len(ended)

    async def _submit(self, plan: CallPlan, now: float) -> None:
        if not plan.orders:
            await self._run(lambda: self.store.release(plan.call_id, now, 0.0, "empty"))
            return
        job = NewJob(
            id=plan.call_id,
            campaign=SURVEY_CAMPAIGN,
            number=plan.dial,
            e164=plan.e164,
            original_at=plan.first_due,
            due_at=plan.created_at,
            expires_at=plan.created_at + self.rules.expiry,
            caller_id=self.settings.caller_id,
            mode=SURVEY_MODE,
            queue=self.settings.queue,
            payload={"source": "survey", "orders": [o["order_id"] for o in plan.orders],
                     "channel_vars": channel_vars(plan, self.settings.topics, self.tz)},
        )

        def add() -> str:
            result, _ = self.jobs.add(job, now)
            self.store.submitted(plan.call_id)
            return result

        result = await self._run(add)
        if result == "added":
            self.metrics.calls.inc()
            if len(plan.orders) > 1:
                self.metrics.combined.inc(len(plan.orders))
        log.info("survey call {call} for {n} order(s) to {number}: {result}", call=plan.call_id, n=len(plan.orders),
                 number=mask_number(plan.dial), result=result)

    # -- dialer listeners ---------------------------------------------------------------------
    def on_attempt(self, job: Job, outcome: AttemptOutcome) -> None:
        if job.campaign == SURVEY_CAMPAIGN:
            self.metrics.attempted.labels(outcome=outcome.outcome).inc()

    def on_final(self, job: Job, final: str, outcome: AttemptOutcome | None, at: float) -> None:
        if job.campaign != SURVEY_CAMPAIGN:
            return
        d = defer.Deferred.fromCoroutine(self.call_ended(job.id, final))
        d.addErrback(lambda f: log.warn("survey call {call} end not recorded: {error}", call=job.id,
                                        error=f.getErrorMessage()))

    async def call_ended(self, call_id: str, final: str) -> list[tuple[str, str]]:
        """Finish every order of the call that the flow did not finish; release the number."""
        now = self.clock.seconds()
        plan = await self._run(lambda: self.store.call(call_id))
        finished: list[tuple[str, str]] = []
        if plan is None:
            return finished
        for order in plan.orders:
            status = final_status(order, final)
            if status is None:
                continue
            result = await self.finish(order["order_id"], status)
            if result == "finished":
                finished.append((order["order_id"], status))
        await self._run(lambda: self.store.release(call_id, now, self.rules.spacing, final))
        return finished

    async def finish(self, order_id: str, status: str) -> str:
        """Write an order's final status once; count it (once) in the metrics."""
        now = self.clock.seconds()
        day = dt.datetime.fromtimestamp(now, self.tz).date().isoformat()
        result, order = await self._run(lambda: self.store.finish(order_id, status, now, day))
        if result == "finished":
            self.count(order, status)
            log.info("survey of order {order}: {status} (solved={solved}, satisfaction={satisfaction})",
                     order=order_id, status=status, solved=order.get("solved", "-"),
                     satisfaction=order.get("satisfaction", "-"))
        return result

    async def decline(self, order_ids: list[str]) -> int:
        """The citizen asked not to be called again: the number joins the dialer's do-not-call list (the
        same ``JobStore.add_dnc`` as ``hotline-gateway callbacks dnc``), and the call's orders still open end
        as ``declined``. Returns how many orders this finished."""
        def numbers() -> set[str]:
            return {self.store.order(i).get("e164", "") for i in order_ids} - {""}

        for e164 in await self._run(numbers):
            await self._run(lambda e164=e164: self.jobs.add_dnc(e164))
            log.info("survey: {number} declined further calls; added to the do-not-call list",
                     number=mask_number(e164))
        finished = 0
        for order_id in order_ids:
            if await self.finish(order_id, "declined") == "finished":
                finished += 1
        return finished

    def count(self, order: Mapping[str, str], status: str) -> None:
        self.metrics.finished.labels(status=status).inc()
        if status not in ("completed", "partial"):
            return
        category = category_key(order.get("category", ""))
        if order.get("solved"):
            self.metrics.solved.labels(category=category, answer=order["solved"]).inc()
        if order.get("satisfaction"):
            self.metrics.satisfaction.labels(category=category, answer=order["satisfaction"]).inc()
        if order.get("reopened"):
            self.metrics.reopened.labels(category=category).inc()


def final_status(order: Mapping[str, str], final: str) -> str | None:
    """The status of an order its call did not finish (None: already finished).

    Every question has a value and one a real answer → completed (hung up during the comment);
    answered at least one question → partial; reached (heard its introduction) or the
    citizen answered the call → refused; the dialer's own finals map through; else no answer.
    """
    if order.get("status") not in ("calling", "pending"):
        return None
    answered = real_answers(order)
    if answered > 0 and all(order.get(q) for q in QUESTIONS):
        return "completed"  # every question answered (or no response after retries); hung up at the comment
    if answered > 0:
        return "partial"
    if order.get("reached") == "1" or final == "connected":
        return "refused"
    if final in ("do_not_call", "rejected", "cancelled"):
        return final
    return "no_answer"
