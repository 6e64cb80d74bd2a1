"""Prometheus metrics of the gateway, declared against an injected registry.

Names are ``hotline_*`` in base units; labels are low-cardinality only
(script, outcome, command, operation) — never a number, channel or position.
"""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ChildCache", "GatewayMetrics"]

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
        self.fastagi_command_seconds = Histogram(
            "hotline_fastagi_command_duration_seconds",
            "Round trip of one AGI command, send to reply",
            ["command"],
            buckets=_RTT_BUCKETS,
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
