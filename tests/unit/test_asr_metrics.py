"""The worker's counters exist at 0 from the start, so the first failure after a (re)start shows in
``increase()``/``rate()`` — the alerts on dead letters and failing sinks would miss it otherwise."""
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from asr.metrics import JOB_OUTCOMES, AsrMetrics
from asr.worker import SinkRunner


def test_every_job_outcome_is_exported_at_zero():
    registry = CollectorRegistry()
    AsrMetrics(registry)
    for outcome in JOB_OUTCOMES:
        assert registry.get_sample_value("hotline_asr_jobs_total", {"outcome": outcome}) == 0
    assert registry.get_sample_value("hotline_asr_jobs_backlog") == 0
    assert registry.get_sample_value("hotline_asr_oldest_job_age_seconds") == 0


def test_a_sinks_counters_are_exported_at_zero_when_its_runner_is_made():
    registry = CollectorRegistry()
    metrics = AsrMetrics(registry)
    assert registry.get_sample_value("hotline_asr_sink_failures_total", {"sink": "webhook"}) is None
    SinkRunner(object(), lambda draft: defer.succeed(None), "webhook", clock=task.Clock(),
               run_redis=defer.maybeDeferred, metrics=metrics, redeliver_after=60.0)
    assert registry.get_sample_value("hotline_asr_sink_failures_total", {"sink": "webhook"}) == 0
    assert registry.get_sample_value("hotline_asr_sink_deliveries_total", {"sink": "webhook"}) == 0
