"""Prometheus metrics of the gateway, declared against an injected registry.

Names are ``hotline_*`` in base units; labels are low-cardinality only
(script, outcome, command, operation) — never a number, channel or position.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

__all__ = ["ChildCache", "GatewayMetrics", "ReactorHistogram"]

_RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ChildCache:
    """The labelled children of one metric, each looked up once.

    ``metric.labels(...)`` validates and sorts its labels on every call; on a
    per-call path a dict lookup does instead. Give the label values in the
    metric's label order. Labels are low-cardinality here, so the cache
    stays small.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def get(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class _HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # first bound >= value: "le"
        self.sum += value


class ReactorHistogram:
    """A labelled histogram observed from the reactor thread only, without locks.

    ``prometheus_client.Histogram`` takes a mutex and walks its buckets on
    every observation, because any thread may observe. The AGI command round
    trip is observed ~12 times per call, always from the reactor thread, so
    this collector keeps plain per-bucket counts (one ``bisect`` and two
    additions per observation) and builds the same exposition
    (``_bucket``/``_count``/``_sum``) when scraped. A scrape runs in the web
    thread pool and may land between the two additions: ``_count`` is derived
    from the buckets, so buckets and count always agree; ``_sum`` may lag by
    the observation in progress.
    """

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = None) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self._bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        self._children: dict[str, _HistogramChild] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, value: str) -> _HistogramChild:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = _HistogramChild(self._bounds)
        return child

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=[self._label])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=[self._label])
        edges = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        for value, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for edge, count in zip(edges, counts):
                running += count
                cumulative.append((edge, running))
            family.add_metric([value], cumulative, total)
        yield family


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.fastagi_sessions = Counter(
            "hotline_fastagi_sessions",
            "FastAGI sessions by script and how they ended",
            ["script", "outcome"],
            registry=registry,
        )
        self.fastagi_active = Gauge(
            "hotline_fastagi_sessions_active", "FastAGI sessions in progress", registry=registry
        )
        self.fastagi_errors = Counter(
            "hotline_fastagi_errors",
            "FastAGI errors by kind (protocol, timeout, command, flow, unknown_script)",
            ["kind"],
            registry=registry,
        )
        self.fastagi_command_seconds = ReactorHistogram(
            "hotline_fastagi_command_duration_seconds",
            "Round trip of one AGI command, send to reply",
            "command",
            _RTT_BUCKETS,
            registry=registry,
        )
        self.handoffs = Counter(
            "hotline_call_handoffs",
            "Calls handed from the IVR to the dialplan, by kind (queue, transfer, hangup, fallback)",
            ["kind"],
            registry=registry,
        )
        self.redis_failures = Counter(
            "hotline_redis_failures",
            "Redis operations that failed (the call went on regardless)",
            ["operation"],
            registry=registry,
        )
        self.redis_backlog = Gauge(
            "hotline_redis_backlog_records",
            "Call records held in memory until Redis is reachable again",
            registry=registry,
        )
        self.redis_dropped = Counter(
            "hotline_redis_backlog_dropped",
            "Call records dropped because the in-memory backlog was full",
            registry=registry,
        )
        self.flow_service_failures = Counter(
            "hotline_flow_service_failures",
            "Stores a flow needed that did not answer (the caller was carried on to an agent)",
            ["service"],
            registry=registry,
        )
        self.flow_loads = Counter(
            "hotline_flow_loads",
            "Flow (re)loads by result",
            ["result"],
            registry=registry,
        )
        self.fast_path = Counter(
            "hotline_flow_fast_path",
            "Calls of flows with a fast path, by how they ran (fast, key, peak, engine)",
            ["result"],
            registry=registry,
        )
