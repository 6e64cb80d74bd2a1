"""Prometheus metrics of the transcription worker, against an injected registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["AsrMetrics", "JOB_OUTCOMES"]

JOB_OUTCOMES = ("done", "duplicate", "failed", "dead_lettered", "released")

_SECONDS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_RTF = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2, 3, 5)


class AsrMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs = Counter(
            "hotline_asr_jobs",
            "Transcription jobs by outcome: done, duplicate (draft already stored), failed (will be retried), "
            "dead_lettered, released (worker stopping)",
            ["outcome"],
            registry=registry,
        )
        self.callbacks_requested = Counter(
            "hotline_asr_callbacks_requested",
            "Voice messages dead-lettered (recording empty, truncated or unreadable) turned into a callback "
            "request for the citizen (hotline:callback:requests)",
            registry=registry,
        )
        self.reclaimed = Counter(
            "hotline_asr_jobs_reclaimed", "Jobs taken over from a consumer that left them pending", registry=registry
        )
        self.transcription_seconds = Histogram(
            "hotline_asr_transcription_duration_seconds", "Wall-clock seconds decoding one recording",
            buckets=_SECONDS, registry=registry,
        )
        self.audio_seconds = Counter(
            "hotline_asr_audio_seconds", "Seconds of audio transcribed", registry=registry
        )
        self.real_time_factor = Histogram(
            "hotline_asr_real_time_factor", "Decoding time / audio duration per recording",
            buckets=_RTF, registry=registry,
        )
        self.sink_deliveries = Counter(
            "hotline_asr_sink_deliveries", "Drafts delivered, by sink", ["sink"], registry=registry
        )
        self.sink_failures = Counter(
            "hotline_asr_sink_failures", "Draft deliveries that failed (left for redelivery), by sink", ["sink"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "hotline_asr_redis_errors", "Redis operations that failed and were retried", ["operation"],
            registry=registry,
        )
        # export every outcome at 0, so the first failure after a start shows in increase()/rate()
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome=outcome)
        self.busy = Gauge("hotline_asr_worker_busy", "1 while a recording is being decoded", registry=registry)
        # the job stream as a whole (every worker reports the same numbers: alert on max())
        self.backlog = Gauge(
            "hotline_asr_jobs_backlog",
            "Transcription jobs not finished: not yet delivered to any worker, or delivered and not acked "
            "(being decoded, or failed and waiting for a retry)",
            registry=registry,
        )
        self.oldest_job_age = Gauge(
            "hotline_asr_oldest_job_age_seconds",
            "Age of the oldest unfinished transcription job, from its stream id (0 when there is none)",
            registry=registry,
        )

    def sink_started(self, sink: str) -> None:
        """Export the sink's delivery and failure counters at 0 (its first failure then counts in rate())."""
        self.sink_deliveries.labels(sink=sink)
        self.sink_failures.labels(sink=sink)
