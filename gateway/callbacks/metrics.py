"""Callback metrics (labels: source, outcome, reason — never a number).

A connected callback also increments the monitor's reserved
``hotline_callbacks_connected_total{queue}`` (the 广义接通率 rule adds it to the
answered calls); that counter is not redeclared here.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["CallbackMetrics", "LATENCY_BUCKETS"]

#: abandon → connected callback: minutes to a day
LATENCY_BUCKETS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
SOURCES = ("abandon", "safety-net", "ivr-request", "api")


class CallbackMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.scheduled = Counter("hotline_callbacks_scheduled", "Callbacks scheduled, by source",
                                 ["source"], registry=registry)
        self.merged = Counter("hotline_callbacks_merged",
                              "Requests merged into a pending callback for the same number", ["source"],
                              registry=registry)
        self.ignored = Counter("hotline_callbacks_ignored",
                               "Abandons not called back (short abandon, no number, refused by the number policy)",
                               ["reason"], registry=registry)
        self.attempted = Counter("hotline_callbacks_attempted", "Callback attempts, by attempt outcome",
                                 ["outcome"], registry=registry)
        self.finished = Counter("hotline_callbacks_finished", "Callbacks finished, by final outcome",
                                ["outcome"], registry=registry)
        self.expired = Counter("hotline_callbacks_expired", "Callbacks that expired before they connected",
                               registry=registry)
        self.cancelled = Counter("hotline_callbacks_cancelled", "Pending callbacks cancelled, by reason",
                                 ["reason"], registry=registry)
        self.latency = Histogram("hotline_callback_latency_seconds",
                                 "From the abandon (original place in line) to the connected callback",
                                 buckets=LATENCY_BUCKETS, registry=registry)
        for source in SOURCES:
            self.scheduled.labels(source=source)
            self.merged.labels(source=source)
