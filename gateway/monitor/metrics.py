"""Prometheus metrics of the call-centre monitor and the AMI connection.

Declared against an injected ``CollectorRegistry`` (like ``gateway.metrics``).
Names are ``hotline_*`` in base units (seconds); counters are exposed with
``_total``. Labels are ``queue``, ``trunk``, ``outcome``, ``cause`` (a fixed
set, see ``model.HANGUP_CAUSES``) and ``operation`` (load/save) only — never a
number, channel or position — and on every metric of this module ``node``:
the Asterisk node whose AMI session this monitor watches (``monitor.node``,
one value per gateway process). Each node is watched by exactly one gateway,
so summing ``without (node)`` (the recording rules' ``by (queue)``) counts
every call of the cluster once.

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
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .model import DIAL_OUTCOMES, HANGUP_CAUSE_LABELS, HotlineState

__all__ = ["WAIT_BUCKETS", "AmiMetrics", "MonitorMetrics", "OnNode", "QueueMetrics", "StateCollector"]

#: Queue wait buckets: 15 s is the GB/T 33358 answer target, 5 s the default 秒挂 threshold.
WAIT_BUCKETS = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
TALK_BUCKETS = (15, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 3600)

_M = TypeVar("_M", Counter, Gauge, Histogram)


class OnNode(Generic[_M]):
    """A metric whose first label, ``node``, is fixed: ``metric(queue)`` is this node's child.

    Children are cached by their other label values: one dict lookup per increment on the
    hot path (``labels()`` checks its arguments and takes a lock on every call).
    """

    __slots__ = ("metric", "node", "_children")

    def __init__(self, metric: _M, node: str) -> None:
        self.metric = metric
        self.node = node
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(self.node, *values)
        return child


class QueueMetrics:
    """Counters and histograms fed by the model (one increment per counted outcome), on ``node``."""

    def __init__(self, registry: CollectorRegistry, *, node: str) -> None:
        def counter(name: str, documentation: str, *labels: str) -> OnNode[Counter]:
            return OnNode(Counter(name, documentation, ["node", *labels], registry=registry), node)

        def histogram(name: str, documentation: str, buckets: tuple[float, ...], *labels: str) -> OnNode[Histogram]:
            return OnNode(Histogram(name, documentation, ["node", *labels], buckets=buckets, registry=registry), node)

        self.offered = counter(
            "hotline_queue_calls_offered", "Calls offered to a queue (each call once, re-entries included)", "queue"
        )
        self.answered = counter("hotline_queue_calls_answered", "Queue calls answered by an agent", "queue")
        self.answered_within_sl = counter(
            "hotline_queue_calls_answered_within_sl",
            "Queue calls answered within the service level (15 s by default) of their first queue entry", "queue",
        )
        self.abandoned = counter(
            "hotline_queue_calls_abandoned", "Queue calls whose caller hung up before an agent answered", "queue"
        )
        self.short_abandoned = counter(
            "hotline_queue_calls_short_abandoned",
            "Abandoned calls that waited less than the short-abandon (秒挂) threshold", "queue",
        )
        self.untracked = counter(
            "hotline_queue_calls_untracked",
            "Queue calls that ended unseen — while AMI was away with no queue_log record of how, or with their "
            "end event dropped by Asterisk (should stay 0)", "queue",
        )
        self.wait = histogram(
            "hotline_queue_wait_seconds", "Wait from the first queue entry to answer or abandon", WAIT_BUCKETS,
            "queue", "outcome",
        )
        self.talk = histogram(
            "hotline_queue_talk_seconds", "Talk time of answered queue calls (AgentComplete)", TALK_BUCKETS, "queue"
        )
        self.agent_rings = counter(
            "hotline_queue_agent_rings", "Times a queue call rang an agent (AgentCalled)", "queue"
        )
        self.ring_no_answer = counter(
            "hotline_queue_agent_ring_no_answer", "Agent rings not answered (AgentRingNoAnswer)", "queue"
        )
        self.callbacks_connected = counter(
            "hotline_callbacks_connected",
            "Abandoned calls whose callback reached the citizen (incremented by the callback dialer, on the "
            "node that carried the callback)", "queue",
        )
        self.trunk_calls = counter(
            "hotline_trunk_outbound_calls", "Calls dialled out through a trunk, by Dial() outcome", "trunk", "outcome"
        )
        self.trunk_failures = counter(
            "hotline_trunk_outbound_failures",
            "Calls dialled out through a trunk and not answered (Dial() cancels by our side excluded), "
            "by the Q.850 hangup cause of the trunk channel, grouped", "trunk", "cause",
        )

    # -- OutcomeSink ---------------------------------------------------------------
    def queue_seen(self, queue: str) -> None:
        """Create every per-queue series at 0, so rates are defined from the first call."""
        for counter in (self.offered, self.answered, self.answered_within_sl, self.abandoned,
                        self.short_abandoned, self.untracked, self.agent_rings, self.ring_no_answer,
                        self.callbacks_connected, self.talk):
            counter(queue)
        for outcome in ("answered", "abandoned"):
            self.wait(queue, outcome)

    def offered_call(self, queue: str) -> None:
        self.offered(queue).inc()

    def answered_call(self, queue: str, wait: float, within_service_level: bool) -> None:
        self.answered(queue).inc()
        if within_service_level:
            self.answered_within_sl(queue).inc()
        self.wait(queue, "answered").observe(wait)

    def abandoned_call(self, queue: str, wait: float, short: bool) -> None:
        self.abandoned(queue).inc()
        if short:
            self.short_abandoned(queue).inc()
        self.wait(queue, "abandoned").observe(wait)

    def untracked_call(self, queue: str) -> None:
        self.untracked(queue).inc()

    def agent_rung(self, queue: str) -> None:
        self.agent_rings(queue).inc()

    def ring_not_answered(self, queue: str) -> None:
        self.ring_no_answer(queue).inc()

    def completed(self, queue: str, talk_time: float) -> None:
        self.talk(queue).observe(talk_time)

    def callback_connected(self, queue: str) -> None:
        """A callback of an abandoned call of ``queue`` reached the citizen (the callback service's hook)."""
        self.callbacks_connected(queue).inc()

    def trunk_call(self, trunk: str, outcome: str) -> None:
        self.trunk_calls(trunk, outcome).inc()

    def trunk_failure(self, trunk: str, cause: str) -> None:
        self.trunk_failures(trunk, cause).inc()

    def trunk_seen(self, trunk: str) -> None:
        """Create the trunk's outcome series at 0: ``increase()`` cannot see the increment
        that creates a series, so a first answered call would otherwise count as nothing."""
        for outcome in (*DIAL_OUTCOMES.values(), "other"):
            self.trunk_calls(trunk, outcome)
        for cause in HANGUP_CAUSE_LABELS:
            self.trunk_failures(trunk, cause)


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
    """Live gauges, computed from the model at scrape time (labelled with ``node``)."""

    _QUEUE_GAUGES = (
        ("hotline_queue_callers_waiting", "Callers waiting in the queue now", "waiting"),
        ("hotline_queue_longest_wait_seconds", "How long the longest-waiting caller has waited (first entry)",
         "longest_wait"),
        ("hotline_queue_members_logged_in", "Queue members logged in (device not unavailable)", "logged_in"),
        ("hotline_queue_members_available", "Queue members free to take a call", "available"),
        ("hotline_queue_members_paused", "Queue members logged in and paused", "paused"),
        ("hotline_queue_members_in_call", "Queue members on a call", "in_call"),
    )

    def __init__(self, state: HotlineState, now: Callable[[], float], *, node: str) -> None:
        self.state = state
        self.now = now
        self.node = node

    def _families(self) -> dict[str, GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(name, doc, labels=["node", "queue"]) for name, doc, _ in self._QUEUE_GAUGES
        }
        for name, doc in (
            ("hotline_trunk_registered", "1 if the trunk's outbound registration is Registered"),
            ("hotline_trunk_reachable", "1 if a contact of the trunk answers qualify (OPTIONS)"),
            ("hotline_trunk_rtt_seconds", "Qualify round trip of the trunk (worst reachable contact)"),
            ("hotline_trunk_channels_in_use", "Channels up on the trunk now"),
            ("hotline_trunk_channels_capacity", "Configured channel capacity of the trunk"),
        ):
            families[name] = GaugeMetricFamily(name, doc, labels=["node", "trunk"])
        families["hotline_channels_active"] = GaugeMetricFamily(
            "hotline_channels_active", "Asterisk channels up now (all kinds)", labels=["node"]
        )
        return families

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        node = self.node
        for queue, view in self.state.queue_views(self.now()).items():
            for name, _, attribute in self._QUEUE_GAUGES:
                families[name].add_metric([node, queue], float(getattr(view, attribute)))
        for trunk, view in self.state.trunk_views().items():
            labels = [node, trunk]
            if view.registered is not None:
                families["hotline_trunk_registered"].add_metric(labels, float(view.registered))
            if view.reachable is not None:
                families["hotline_trunk_reachable"].add_metric(labels, float(view.reachable))
            if view.rtt is not None:
                families["hotline_trunk_rtt_seconds"].add_metric(labels, view.rtt)
            families["hotline_trunk_channels_in_use"].add_metric(labels, float(view.channels))
            if view.capacity is not None:
                families["hotline_trunk_channels_capacity"].add_metric(labels, float(view.capacity))
        families["hotline_channels_active"].add_metric([node], float(self.state.active_channels))
        return iter(families.values())


class AmiMetrics:
    """The AMI client's :class:`~gateway.ami.client.AmiObserver` and the resync's observer, on ``node``."""

    def __init__(self, registry: CollectorRegistry, *, node: str) -> None:
        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, ["node"], registry=registry).labels(node)

        self.connected_gauge = Gauge(
            "hotline_ami_connected", "1 while the AMI session is logged in", ["node"], registry=registry
        ).labels(node)
        self.reconnects = counter("hotline_ami_reconnects", "AMI sessions re-established after a loss")
        self.login_failures = counter("hotline_ami_login_failures", "AMI logins refused or timed out")
        self.keepalive_timeouts = counter(
            "hotline_ami_keepalive_timeouts", "AMI connections dropped because Ping went unanswered"
        )
        self.events = counter("hotline_ami_events", "AMI events handled (subscribed ones)")
        self.handler_errors = counter(
            "hotline_ami_handler_errors", "AMI event handlers that raised (the event was skipped)"
        )
        self.resyncs = OnNode(Counter(
            "hotline_ami_resyncs", "State resynchronisations after a (re)connect, by outcome (ok, partial, failed)",
            ["node", "outcome"], registry=registry,
        ), node)
        self.replayed_entries = counter(
            "hotline_queue_log_replayed_entries", "queue_log entries replayed after a reconnect or a restart"
        )
        self.checkpoint_failures = OnNode(Counter(
            "hotline_monitor_checkpoint_failures",
            "Reads (at start) and writes of the monitor's restart checkpoint in Redis that failed",
            ["node", "operation"], registry=registry,
        ), node)
        for outcome in ("ok", "partial", "failed"):
            self.resyncs(outcome)
        for operation in ("load", "save"):
            self.checkpoint_failures(operation)

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
        self.resyncs(outcome).inc()

    def replayed(self, entries: int) -> None:
        self.replayed_entries.inc(entries)

    # -- CheckpointObserver ---------------------------------------------------------------------
    def checkpoint_failed(self, operation: str) -> None:
        self.checkpoint_failures(operation).inc()


class MonitorMetrics:
    """Everything of this package on one registry, labelled ``node``: ``.queue``, ``.ami``, ``.sink``,
    and the collector."""

    def __init__(self, registry: CollectorRegistry, state: HotlineState | None = None,
                 now: Callable[[], float] | None = None, *, node: str) -> None:
        self.registry = registry
        self.node = node
        self.queue = QueueMetrics(registry, node=node)
        self.ami = AmiMetrics(registry, node=node)
        self.sink = _Sink(self.queue)
        self.collector: StateCollector | None = None
        if state is not None:
            self.watch(state, now or (lambda: 0.0))

    def watch(self, state: HotlineState, now: Callable[[], float]) -> StateCollector:
        """Export ``state``'s live gauges (once per registry)."""
        if self.collector is not None:
            raise ValueError("a state is already exported on this registry")
        self.collector = StateCollector(state, now, node=self.node)
        self.registry.register(self.collector)
        return self.collector
