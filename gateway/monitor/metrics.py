"""Prometheus metrics of the call-centre monitor and the AMI connection.

Declared against an injected ``CollectorRegistry`` (like ``gateway.metrics``).
Names are ``hotline_*`` in base units (seconds); counters are exposed with
``_total``. Labels are ``queue``, ``trunk``, ``outcome``, ``cause`` (a fixed
set, see ``model.HANGUP_CAUSES``) and ``operation`` (load/save) only — never a
number, channel or position.

* :class:`QueueMetrics` — the model's :class:`~gateway.monitor.model.OutcomeSink`:
  per-queue counters and wait/talk histograms, trunk call outcomes, and the
  reserved ``hotline_callbacks_connected_total`` (the callback dialer
  increments it; it exists from the first sight of a queue so the 广义接通率
  rule has a series to add).
* :class:`StateCollector` — live gauges read from the model at scrape time
  (callers waiting, longest wait, members, trunk state, channels).
* :class:`AmiMetrics` — the AMI client's health (and the resync's and the checkpoint's).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .model import DIAL_OUTCOMES, HANGUP_CAUSE_LABELS, HotlineState

__all__ = ["WAIT_BUCKETS", "AmiMetrics", "MonitorMetrics", "QueueMetrics", "StateCollector"]

#: Queue wait buckets: 15 s is the GB/T 33358 answer target, 5 s the default 秒挂 threshold.
WAIT_BUCKETS = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
TALK_BUCKETS = (15, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 3600)


class QueueMetrics:
    """Counters and histograms fed by the model (one increment per counted outcome)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.offered = Counter(
            "hotline_queue_calls_offered", "Calls offered to a queue (each call once, re-entries included)",
            ["queue"], registry=registry,
        )
        self.answered = Counter(
            "hotline_queue_calls_answered", "Queue calls answered by an agent", ["queue"], registry=registry
        )
        self.answered_within_sl = Counter(
            "hotline_queue_calls_answered_within_sl",
            "Queue calls answered within the service level (15 s by default) of their first queue entry",
            ["queue"], registry=registry,
        )
        self.abandoned = Counter(
            "hotline_queue_calls_abandoned", "Queue calls whose caller hung up before an agent answered",
            ["queue"], registry=registry,
        )
        self.short_abandoned = Counter(
            "hotline_queue_calls_short_abandoned",
            "Abandoned calls that waited less than the short-abandon (秒挂) threshold",
            ["queue"], registry=registry,
        )
        self.untracked = Counter(
            "hotline_queue_calls_untracked",
            "Queue calls that ended unseen — while AMI was away with no queue_log record of how, or with their "
            "end event dropped by Asterisk (should stay 0)",
            ["queue"], registry=registry,
        )
        self.wait = Histogram(
            "hotline_queue_wait_seconds", "Wait from the first queue entry to answer or abandon",
            ["queue", "outcome"], buckets=WAIT_BUCKETS, registry=registry,
        )
        self.talk = Histogram(
            "hotline_queue_talk_seconds", "Talk time of answered queue calls (AgentComplete)",
            ["queue"], buckets=TALK_BUCKETS, registry=registry,
        )
        self.agent_rings = Counter(
            "hotline_queue_agent_rings", "Times a queue call rang an agent (AgentCalled)", ["queue"],
            registry=registry,
        )
        self.ring_no_answer = Counter(
            "hotline_queue_agent_ring_no_answer", "Agent rings not answered (AgentRingNoAnswer)", ["queue"],
            registry=registry,
        )
        self.callbacks_connected = Counter(
            "hotline_callbacks_connected",
            "Abandoned calls whose callback reached the citizen (incremented by the callback dialer)",
            ["queue"], registry=registry,
        )
        self.trunk_calls = Counter(
            "hotline_trunk_outbound_calls", "Calls dialled out through a trunk, by Dial() outcome",
            ["trunk", "outcome"], registry=registry,
        )
        self.trunk_failures = Counter(
            "hotline_trunk_outbound_failures",
            "Calls dialled out through a trunk and not answered (Dial() cancels by our side excluded), "
            "by the Q.850 hangup cause of the trunk channel, grouped",
            ["trunk", "cause"], registry=registry,
        )

    # -- OutcomeSink ---------------------------------------------------------------
    def queue_seen(self, queue: str) -> None:
        """Create every per-queue series at 0, so rates are defined from the first call."""
        for counter in (self.offered, self.answered, self.answered_within_sl, self.abandoned,
                        self.short_abandoned, self.untracked, self.agent_rings, self.ring_no_answer,
                        self.callbacks_connected):
            counter.labels(queue=queue)
        for outcome in ("answered", "abandoned"):
            self.wait.labels(queue=queue, outcome=outcome)
        self.talk.labels(queue=queue)

    def offered_call(self, queue: str) -> None:
        self.offered.labels(queue=queue).inc()

    def answered_call(self, queue: str, wait: float, within_service_level: bool) -> None:
        self.answered.labels(queue=queue).inc()
        if within_service_level:
            self.answered_within_sl.labels(queue=queue).inc()
        self.wait.labels(queue=queue, outcome="answered").observe(wait)

    def abandoned_call(self, queue: str, wait: float, short: bool) -> None:
        self.abandoned.labels(queue=queue).inc()
        if short:
            self.short_abandoned.labels(queue=queue).inc()
        self.wait.labels(queue=queue, outcome="abandoned").observe(wait)

    def untracked_call(self, queue: str) -> None:
        self.untracked.labels(queue=queue).inc()

    def agent_rung(self, queue: str) -> None:
        self.agent_rings.labels(queue=queue).inc()

    def ring_not_answered(self, queue: str) -> None:
        self.ring_no_answer.labels(queue=queue).inc()

    def completed(self, queue: str, talk_time: float) -> None:
        self.talk.labels(queue=queue).observe(talk_time)

    def trunk_call(self, trunk: str, outcome: str) -> None:
        self.trunk_calls.labels(trunk=trunk, outcome=outcome).inc()

    def trunk_failure(self, trunk: str, cause: str) -> None:
        self.trunk_failures.labels(trunk=trunk, cause=cause).inc()

    def trunk_seen(self, trunk: str) -> None:
        """Create the trunk's outcome series at 0: ``increase()`` cannot see the increment
        that creates a series, so a first answered call would otherwise count as nothing."""
        for outcome in (*DIAL_OUTCOMES.values(), "other"):
            self.trunk_calls.labels(trunk=trunk, outcome=outcome)
        for cause in HANGUP_CAUSE_LABELS:
            self.trunk_failures.labels(trunk=trunk, cause=cause)


class _Sink:
    """Adapts :class:`QueueMetrics` to the :class:`OutcomeSink` method names."""

    def __init__(self, metrics: QueueMetrics) -> None:
        self._m = metrics

    def queue_seen(self, queue: str) -> None:
        self._m.queue_seen(queue)

    def offered(self, queue: str) -> None:
        self._m.offered_call(queue)

    def answered(self, queue: str, wait: float, within_service_level: bool) -> None:
        self._m.answered_call(queue, wait, within_service_level)

    def abandoned(self, queue: str, wait: float, short: bool) -> None:
        self._m.abandoned_call(queue, wait, short)

    def untracked(self, queue: str) -> None:
        self._m.untracked_call(queue)

    def ring_no_answer(self, queue: str) -> None:
        self._m.ring_not_answered(queue)

    def agent_rung(self, queue: str) -> None:
        self._m.agent_rung(queue)

    def completed(self, queue: str, talk_time: float) -> None:
        self._m.completed(queue, talk_time)

    def trunk_call(self, trunk: str, outcome: str) -> None:
        self._m.trunk_call(trunk, outcome)

    def trunk_failure(self, trunk: str, cause: str) -> None:
        self._m.trunk_failure(trunk, cause)

    def trunk_seen(self, trunk: str) -> None:
        self._m.trunk_seen(trunk)


class StateCollector(Collector):
    """Live gauges, computed from the model at scrape time."""

    _QUEUE_GAUGES = (
        ("hotline_queue_callers_waiting", "Callers waiting in the queue now", "waiting"),
        ("hotline_queue_longest_wait_seconds", "How long the longest-waiting caller has waited (first entry)",
         "longest_wait"),
        ("hotline_queue_members_logged_in", "Queue members logged in (device not unavailable)", "logged_in"),
        ("hotline_queue_members_available", "Queue members free to take a call", "available"),
        ("hotline_queue_members_paused", "Queue members logged in and paused", "paused"),
        ("hotline_queue_members_in_call", "Queue members on a call", "in_call"),
    )

    def __init__(self, state: HotlineState, now: Callable[[], float]) -> None:
        self.state = state
        self.now = now

    def _families(self) -> dict[str, GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(name, doc, labels=["queue"]) for name, doc, _ in self._QUEUE_GAUGES
        }
        for name, doc in (
            ("hotline_trunk_registered", "1 if the trunk's outbound registration is Registered"),
            ("hotline_trunk_reachable", "1 if a contact of the trunk answers qualify (OPTIONS)"),
            ("hotline_trunk_rtt_seconds", "Qualify round trip of the trunk (worst reachable contact)"),
            ("hotline_trunk_channels_in_use", "Channels up on the trunk now"),
            ("hotline_trunk_channels_capacity", "Configured channel capacity of the trunk"),
        ):
            families[name] = GaugeMetricFamily(name, doc, labels=["trunk"])
        families["hotline_channels_active"] = GaugeMetricFamily(
            "hotline_channels_active", "Asterisk channels up now (all kinds)"
        )
        return families

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        for queue, view in self.state.queue_views(self.now()).items():
            for name, _, attribute in self._QUEUE_GAUGES:
                families[name].add_metric([queue], float(getattr(view, attribute)))
        for trunk, view in self.state.trunk_views().items():
            if view.registered is not None:
                families["hotline_trunk_registered"].add_metric([trunk], float(view.registered))
            if view.reachable is not None:
                families["hotline_trunk_reachable"].add_metric([trunk], float(view.reachable))
            if view.rtt is not None:
                families["hotline_trunk_rtt_seconds"].add_metric([trunk], view.rtt)
            families["hotline_trunk_channels_in_use"].add_metric([trunk], float(view.channels))
            if view.capacity is not None:
                families["hotline_trunk_channels_capacity"].add_metric([trunk], float(view.capacity))
        families["hotline_channels_active"].add_metric([], float(self.state.active_channels))
        return iter(families.values())


class AmiMetrics:
    """The AMI client's :class:`~gateway.ami.client.AmiObserver` and the resync's observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected_gauge = Gauge("hotline_ami_connected", "1 while the AMI session is logged in", registry=registry)
        self.reconnects = Counter(
            "hotline_ami_reconnects", "AMI sessions re-established after a loss", registry=registry
        )
        self.login_failures = Counter(
            "hotline_ami_login_failures", "AMI logins refused or timed out", registry=registry
        )
        self.keepalive_timeouts = Counter(
            "hotline_ami_keepalive_timeouts", "AMI connections dropped because Ping went unanswered",
            registry=registry,
        )
        self.events = Counter("hotline_ami_events", "AMI events handled (subscribed ones)", registry=registry)
        self.handler_errors = Counter(
            "hotline_ami_handler_errors", "AMI event handlers that raised (the event was skipped)",
            registry=registry,
        )
        self.resyncs = Counter(
            "hotline_ami_resyncs", "State resynchronisations after a (re)connect, by outcome (ok, partial, failed)",
            ["outcome"], registry=registry,
        )
        self.replayed_entries = Counter(
            "hotline_queue_log_replayed_entries", "queue_log entries replayed after a reconnect or a restart",
            registry=registry,
        )
        self.checkpoint_failures = Counter(
            "hotline_monitor_checkpoint_failures",
            "Reads (at start) and writes of the monitor's restart checkpoint in Redis that failed",
            ["operation"], registry=registry,
        )
        for outcome in ("ok", "partial", "failed"):
            self.resyncs.labels(outcome=outcome)
        for operation in ("load", "save"):
            self.checkpoint_failures.labels(operation=operation)

    # -- AmiObserver -------------------------------------------------------------------
    def connected(self, up: bool) -> None:
        self.connected_gauge.set(1 if up else 0)

    def reconnected(self) -> None:
        self.reconnects.inc()

    def login_failed(self) -> None:
        self.login_failures.inc()

    def keepalive_timeout(self) -> None:
        self.keepalive_timeouts.inc()

    # -- EventRouter callbacks ---------------------------------------------------------------
    def event_handled(self) -> None:
        self.events.inc()

    def handler_error(self) -> None:
        self.handler_errors.inc()

    # -- ResyncObserver ---------------------------------------------------------------------------
    def resynced(self, outcome: str) -> None:
        self.resyncs.labels(outcome=outcome).inc()

    def replayed(self, entries: int) -> None:
        self.replayed_entries.inc(entries)

    # -- CheckpointObserver ---------------------------------------------------------------------
    def checkpoint_failed(self, operation: str) -> None:
        self.checkpoint_failures.labels(operation=operation).inc()


class MonitorMetrics:
    """Everything of this package on one registry: ``.queue``, ``.ami``, ``.sink``, and the collector."""

    def __init__(self, registry: CollectorRegistry, state: HotlineState | None = None,
                 now: Callable[[], float] | None = None) -> None:
        self.registry = registry
        self.queue = QueueMetrics(registry)
        self.ami = AmiMetrics(registry)
        self.sink = _Sink(self.queue)
        self.collector: StateCollector | None = None
        if state is not None:
            self.watch(state, now or (lambda: 0.0))

    def watch(self, state: HotlineState, now: Callable[[], float]) -> StateCollector:
        """Export ``state``'s live gauges (once per registry)."""
        if self.collector is not None:
            raise ValueError("a state is already exported on this registry")
        self.collector = StateCollector(state, now)
        self.registry.register(self.collector)
        return self.collector
