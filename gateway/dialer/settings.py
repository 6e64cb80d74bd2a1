"""The dialer's settings and its metrics (``hotline_dialer_*``)."""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["DialerMetrics", "DialerSettings"]


class DialerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter("hotline_dialer_attempts", "Outbound attempts by outcome",
                                ["campaign", "outcome"], registry=registry)
        self.finals = Counter("hotline_dialer_jobs_finished", "Dial jobs finished, by final outcome",
                              ["campaign", "outcome"], registry=registry)
        self.in_flight = Gauge("hotline_dialer_calls_in_flight", "Outbound attempts in progress", registry=registry)
        self.paused = Gauge("hotline_dialer_paused", "1 while the dialer does not start calls, by reason",
                            ["reason"], registry=registry)
        self.store_failures = Counter("hotline_dialer_store_failures", "Job-store (Redis) operations that failed",
                                      registry=registry)
        self.recovered = Counter("hotline_dialer_leases_recovered",
                                 "Attempts taken over from an expired lease (an instance crashed or stopped)",
                                 registry=registry)
        for reason in ("ami", "redis", "window"):
            self.paused.labels(reason=reason)

    def pause(self, reason: str | None) -> None:
        for name in ("ami", "redis", "window"):
            self.paused.labels(reason=name).set(1 if name == reason else 0)



@dataclass(frozen=True)
class DialerSettings:
    trunk: str = "carrier"
    lease: float = 60.0
    poll_interval: float = 1.0
    batch: int = 20
    ring_timeout: float = 30.0
    #: seconds after the ring timeout before an attempt with no OriginateResponse is settled from Asterisk
    response_grace: float = 30.0
    per_number_cap: int = 3
    #: talk seconds (after pressing 1) for a callback to count as connected
    min_talk: float = 10.0
    #: pause after a Redis failure
    retry_interval: float = 5.0
    #: after a failed OriginateResponse, seconds to wait for the trunk leg's record (DIALSTATUS)
    record_grace: float = 1.5
    callback_priority: int = 20
    #: TEST ONLY (fault runs): seconds to sleep between the write-ahead of a tick's calls and their
    #: Originate, so a test can kill the process there. 0 (off) outside the fault tests.
    test_pause: float = 0.0



