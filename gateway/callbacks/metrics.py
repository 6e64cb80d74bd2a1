"""Callback metrics (labels: source, outcome, reason — never a number).

A connected callback of a call that was *offered* to a queue and lost — a
queue abandon (source ``abandon``) or the safety net's missed-call record
(``safety-net``) — also increments the monitor's reserved
``hotline_callbacks_connected_total{queue}``: the 广义接通率 rule adds it to the
answered calls over the offered ones, so IVR "call me back" requests and API or
console callbacks (never an abandoned queue call) stay out of it, else the rate
could pass 100 %. That counter is not redeclared here;
``hotline_callbacks_connected_by_source_total{source}`` counts every connected
callback.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["BROAD_RATE_SOURCES", "CallbackMetrics", "LATENCY_BUCKETS", "SOURCES", "source_label"]

#: abandon → connected callback: minutes to a day
LATENCY_BUCKETS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
SOURCES = ("abandon", "safety-net", "ivr-request", "api", "console")
#: sources whose lost call was offered to a queue: their connected callbacks complete the 广义接通率
BROAD_RATE_SOURCES = ("abandon", "safety-net")


def source_label(source: object) -> str:
    """A job's payload source as a label value (anything unknown is ``other``: bounded cardinality)."""
    return source if isinstance(source, str) and source in SOURCES else "other"


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
        self.connected = Counter("hotline_callbacks_connected_by_source",
                                 "Callbacks that reached the citizen, by source (every source; the 广义接通率 "
                                 "counter hotline_callbacks_connected_total only counts abandons and missed calls)",
                                 ["source"], registry=registry)
        self.latency = Histogram("hotline_callback_latency_seconds",
                                 "From the abandon or missed call (IVR and API requests: the request) "
                                 "to the connected callback, by source",
                                 ["source"], buckets=LATENCY_BUCKETS, registry=registry)
        for source in SOURCES:
            self.scheduled.labels(source=source)
            self.merged.labels(source=source)
            self.connected.labels(source=source)
            self.latency.labels(source=source)
