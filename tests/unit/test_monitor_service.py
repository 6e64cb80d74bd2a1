"""build_monitor: the whole chain from configuration to metrics — scripted
Asterisk, recorded real events, task.Clock, no sockets."""
from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import defer, task

from gateway.config import load_config
from gateway.monitor.service import build_monitor, queue_log_reader

from .ami_fakes import FakeEndpoint

LAB_FIXTURES = Path(__file__).parent.parent / "lab" / "fixtures"


def test_configured_monitor_logs_in_resyncs_and_counts_recorded_calls(tmp_path):
    config = load_config(environ={"HOTLINE_AMI_SECRET": "s3cret", "HOTLINE_MONITOR_SHORT_ABANDON": "5",
                                  "HOTLINE_MONITOR_NODE": "ast2"})
    clock = task.Clock()
    clock.advance(1795307400.0)
    endpoint = FakeEndpoint(secret="s3cret")
    # the lab has no carrier registration module loaded: that list action fails → a partial resync
    endpoint.on_connect = lambda peer: peer.lists.update(
        QueueStatus=[{"Event": "QueueParams", "Queue": "12345"}], CoreShowChannels=[]
    )
    registry = CollectorRegistry()
    monitor = build_monitor(config, clock=clock, endpoint=endpoint, registry=registry)
    monitor.client.startService()
    endpoint.peer.pump()
    assert monitor.client.logged_in
    actions = [a.get("Action") for a in endpoint.peer.actions]
    # Getvar: the trunk's contacts (PJSIP_ENDPOINT(carrier,aors) answered with an error here)
    assert actions == ["Challenge", "Login", "QueueStatus", "PJSIPShowRegistrationsOutbound", "Getvar",
                       "CoreShowChannels"]
    for name in ("call-agent.ami", "call-abandon.ami"):
        endpoint.peer.send((LAB_FIXTURES / name).read_bytes())
    node = {"node": "ast2"}  # HOTLINE_MONITOR_NODE
    q = {**node, "queue": "12345"}
    assert registry.get_sample_value("hotline_queue_calls_offered_total", q) == 2
    assert registry.get_sample_value("hotline_queue_calls_answered_within_sl_total", q) == 1
    assert registry.get_sample_value("hotline_queue_calls_short_abandoned_total", q) == 1
    assert registry.get_sample_value("hotline_ami_connected", node) == 1
    assert registry.get_sample_value("hotline_ami_resyncs_total", {**node, "outcome": "partial"}) == 1
    assert {s.labels.get("node") for f in registry.collect() for s in f.samples} == {"ast2"}, "every sample"
    text = generate_latest(registry).decode()
    assert "13800138000" not in text and "Local/" not in text


def test_queue_log_reader_runs_the_read_through_the_given_runner(tmp_path):
    path = tmp_path / "queue_log"
    path.write_text("100|u1|12345|NONE|ENTERQUEUE||1|1\n200|u1|12345|NONE|ABANDON|1|1|100\n")
    ran = []

    def run_blocking(fn):
        ran.append(fn)
        return defer.succeed(fn())

    reader = queue_log_reader(str(path), run_blocking)
    d = reader(150.0)
    assert d.result == ["200|u1|12345|NONE|ABANDON|1|1|100"] and len(ran) == 1
    assert queue_log_reader("", run_blocking) is None
