"""ChildCache (metric children looked up once) and the log-level check hot paths use."""
import io

import pytest
from prometheus_client import CollectorRegistry
from twisted.logger import LogLevel, globalLogBeginner, globalLogPublisher

from gateway import logs
from gateway.metrics import ChildCache, GatewayMetrics

from .helpers import connect, env, make_factory
from .test_agi_protocol import registry_with


def test_child_cache_returns_the_same_child_and_counts_like_labels():
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    cache = ChildCache(metrics.fastagi_sessions)
    first = cache.get("main", "completed")
    assert cache.get("main", "completed") is first
    assert first is metrics.fastagi_sessions.labels(script="main", outcome="completed")
    first.inc()
    cache.get("main", "completed").inc()
    cache.get("main", "caller_hangup").inc()
    assert registry.get_sample_value("hotline_fastagi_sessions_total", {"script": "main", "outcome": "completed"}) == 2
    assert registry.get_sample_value("hotline_fastagi_sessions_total", {"script": "main", "outcome": "caller_hangup"}) == 1


def test_child_cache_refuses_wrong_label_count_like_labels():
    cache = ChildCache(GatewayMetrics(CollectorRegistry()).fastagi_sessions)
    with pytest.raises(ValueError):
        cache.get("main")


def test_command_histogram_children_are_looked_up_once_per_command_word():
    async def flow(session):
        await session.set_variable("A", 1)
        await session.set_variable("B", 2)
        await session.answer()

    factory, _clock, _store, registry = make_factory(registry_with(flow))
    proto, _transport = connect(factory)
    proto.dataReceived(env())
    for _ in range(3):
        proto.dataReceived(b"200 result=1\n")
    assert set(factory._command_children) == {b"SET", b"ANSWER"}
    assert registry.get_sample_value("hotline_fastagi_command_duration_seconds_count", {"command": "set"}) == 2
    assert registry.get_sample_value("hotline_fastagi_command_duration_seconds_count", {"command": "answer"}) == 1


@pytest.fixture
def restore_log_level():
    saved = logs._min_level
    yield
    logs._min_level = saved


def test_every_level_is_enabled_before_logging_starts(restore_log_level):
    logs._min_level = None
    assert logs.enabled(LogLevel.debug) and logs.enabled(LogLevel.info)


def test_enabled_follows_the_configured_level(restore_log_level, monkeypatch):
    # start_logging may only run once per process (Twisted's log beginner):
    # stand in for it and check the level it records
    begun = []
    monkeypatch.setattr(globalLogBeginner, "beginLoggingTo", lambda observers, **_: begun.append(observers))
    logs.start_logging("warn", stream=io.StringIO())
    assert begun
    assert not logs.enabled(LogLevel.info)
    assert logs.enabled(LogLevel.warn) and logs.enabled(LogLevel.error)


def test_session_log_events_are_not_built_below_the_level(restore_log_level):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        async def flow(session):
            await session.answer()

        for level in (LogLevel.warn, LogLevel.info):
            logs._min_level = level
            factory, _clock, _store, _ = make_factory(registry_with(flow))
            proto, _transport = connect(factory)
            proto.dataReceived(env())
            proto.dataReceived(b"200 result=0\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    calls = [e for e in events if e.get("log_namespace") == "gateway.agi.server"]
    assert [e["log_level"] for e in calls] == [LogLevel.info, LogLevel.info], "only the info-level run logs"
    assert calls[0]["caller"] == "138****8000"  # masked


def test_reactor_histogram_exposes_what_prometheus_client_histogram_does():
    """Same observations into the lock-free histogram and into prometheus_client's own:
    every _bucket, _count and _sum sample is equal (including values on a bucket edge)."""
    from prometheus_client import Histogram

    from gateway.metrics import _RTT_BUCKETS, ReactorHistogram

    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = ReactorHistogram("h_seconds", "doc", "command", _RTT_BUCKETS, registry=ours_registry)
    theirs = Histogram("h_seconds", "doc", ["command"], buckets=_RTT_BUCKETS, registry=theirs_registry)
    values = [0.0, 0.0004, 0.0005, 0.0007, 0.001, 0.003, 0.02, 0.5, 0.5000001, 7.0, 60.0, 61.0, 1e9]
    for index, value in enumerate(values):
        command = "set" if index % 3 else "answer"
        ours.labels(command).observe(value)
        theirs.labels(command=command).observe(value)

    def samples(registry):
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        )

    assert samples(ours_registry) == samples(theirs_registry)
    assert ours_registry.get_sample_value("h_seconds_count", {"command": "set"}) == 8


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold():
    import gc

    from gateway.app import GC_GEN0_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
