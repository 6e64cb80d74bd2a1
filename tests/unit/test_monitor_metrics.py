"""Monitor metrics: names, units, low-cardinality labels, values read with
registry.get_sample_value."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.config import ConfigError, load_config
from gateway.monitor.metrics import MonitorMetrics
from gateway.monitor.model import HotlineState, Registration

ALLOWED_LABELS = {"node", "queue", "trunk", "outcome", "cause", "operation", "le"}
NODE = "ast1"


def rig(now=1000.0, node=NODE):
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry, node=node)
    state = HotlineState(metrics.sink, trunks=["carrier"], trunk_capacity={"carrier": 30})
    metrics.watch(state, lambda: now)
    return registry, metrics, state


def calls(state, n: int) -> None:
    """n calls from n different numbers over n different channels: answered, abandoned, short."""
    for i in range(n):
        uid = f"1795307447.{i}"
        state.channel_created(uid, f"PJSIP/carrier-{i:08x}", 10.0 * i)
        state.caller_joined(uid, "12345", 10.0 * i, position=i % 7 + 1, caller=f"138{i:08d}")
        kind = i % 3
        if kind == 0:
            state.agent_connected(uid, "12345", 10.0 * i + 20, "agent1")
        elif kind == 1:
            state.abandon_reported(uid, "12345", 10.0 * i + 8, i % 7 + 1, i % 7 + 1, 8)
        else:
            state.abandon_reported(uid, "12345", 10.0 * i + 2, i % 7 + 1, i % 7 + 1, 2)
        state.channel_hungup(uid, 10.0 * i + 30)


def test_counts_and_wait_histogram():
    registry, _metrics, state = rig()
    calls(state, 6)
    q = {"node": NODE, "queue": "12345"}
    assert registry.get_sample_value("hotline_queue_calls_offered_total", q) == 6
    assert registry.get_sample_value("hotline_queue_calls_answered_total", q) == 2
    assert registry.get_sample_value("hotline_queue_calls_answered_within_sl_total", q) == 0
    assert registry.get_sample_value("hotline_queue_calls_abandoned_total", q) == 4
    assert registry.get_sample_value("hotline_queue_calls_short_abandoned_total", q) == 2
    assert registry.get_sample_value("hotline_queue_wait_seconds_sum", {**q, "outcome": "answered"}) == 40
    assert registry.get_sample_value("hotline_queue_wait_seconds_bucket",
                                     {**q, "outcome": "abandoned", "le": "5.0"}) == 2
    assert registry.get_sample_value("hotline_callbacks_connected_total", q) == 0, "reserved, present at 0"


def test_live_gauges():
    registry, _metrics, state = rig(now=130.0)
    state.caller_joined("c1", "12345", 100.0, 1)
    state.member_changed("12345", "PJSIP/agent1", status=1, paused=False, in_call=False)
    state.member_changed("12345", "PJSIP/agent2", status=2, paused=False, in_call=True)
    state.apply_registrations([Registration("carrier", "sip:a@b", "sip:b", True)])
    state.contact_status("carrier", "carrier", "sip:b", "Reachable", 42000)
    state.channel_created("t1", "PJSIP/carrier-00000001")
    q, t = {"node": NODE, "queue": "12345"}, {"node": NODE, "trunk": "carrier"}
    assert registry.get_sample_value("hotline_queue_callers_waiting", q) == 1
    assert registry.get_sample_value("hotline_queue_longest_wait_seconds", q) == 30
    assert registry.get_sample_value("hotline_queue_members_logged_in", q) == 2
    assert registry.get_sample_value("hotline_queue_members_available", q) == 1
    assert registry.get_sample_value("hotline_queue_members_in_call", q) == 1
    assert registry.get_sample_value("hotline_queue_members_paused", q) == 0
    assert registry.get_sample_value("hotline_trunk_registered", t) == 1
    assert registry.get_sample_value("hotline_trunk_reachable", t) == 1
    assert registry.get_sample_value("hotline_trunk_rtt_seconds", t) == pytest.approx(0.042)
    assert registry.get_sample_value("hotline_trunk_channels_in_use", t) == 1
    assert registry.get_sample_value("hotline_trunk_channels_capacity", t) == 30
    assert registry.get_sample_value("hotline_channels_active", {"node": NODE}) == 1


def test_unknown_trunk_state_is_not_exported_as_zero():
    registry, _metrics, _state = rig()
    t = {"node": NODE, "trunk": "carrier"}
    assert registry.get_sample_value("hotline_trunk_registered", t) is None
    assert registry.get_sample_value("hotline_trunk_reachable", t) is None
    assert registry.get_sample_value("hotline_trunk_channels_in_use", t) == 0


def test_trunk_outcome_series_exist_at_zero_before_the_first_call():
    """increase() cannot see the increment that creates a series: every outcome of a
    known trunk (configured, or learnt from a registration) is exported at 0 up front."""
    registry, _metrics, state = rig()
    labels = {"node": NODE, "trunk": "carrier", "outcome": "answer"}
    assert registry.get_sample_value("hotline_trunk_outbound_calls_total", labels) == 0
    assert registry.get_sample_value("hotline_trunk_outbound_calls_total", {**labels, "outcome": "busy"}) == 0
    state.apply_registrations([Registration("backup", "sip:a@b", "sip:b", True)])
    assert registry.get_sample_value("hotline_trunk_outbound_calls_total", {**labels, "trunk": "backup"}) == 0
    state.dial_end("PJSIP/carrier-00000001", "ANSWER")
    assert registry.get_sample_value("hotline_trunk_outbound_calls_total", labels) == 1
    failures = {"node": NODE, "trunk": "backup", "cause": "network_out_of_order"}
    assert registry.get_sample_value("hotline_trunk_outbound_failures_total", failures) == 0
    state.dial_end("PJSIP/backup-00000002", "CONGESTION", dest_uniqueid="b2")
    state.channel_hungup("b2", 1.0, "PJSIP/backup-00000002", cause=38)
    assert registry.get_sample_value("hotline_trunk_outbound_failures_total", failures) == 1


def test_names_units_and_labels_follow_the_rules():
    registry, _metrics, state = rig()
    calls(state, 30)
    state.dial_end("PJSIP/carrier-00000001", "ANSWER")
    for family in registry.collect():
        assert family.name.startswith("hotline_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)


def test_every_sample_carries_the_node_of_its_monitor():
    """The node label is on every queue, trunk, channel and AMI series, with this monitor's node only:
    two gateways (one per Asterisk node) never export the same series."""
    registry, metrics, state = rig(node="ast2")
    calls(state, 3)
    state.dial_end("PJSIP/carrier-00000001", "BUSY")
    metrics.queue.callback_connected("12345")
    metrics.ami.connected(True)
    metrics.ami.checkpoint_failed("save")
    samples = [sample for family in registry.collect() for sample in family.samples]
    assert {sample.name for sample in samples} >= {
        "hotline_queue_calls_offered_total", "hotline_queue_callers_waiting", "hotline_trunk_outbound_calls_total",
        "hotline_trunk_channels_in_use", "hotline_channels_active", "hotline_ami_connected",
        "hotline_ami_events_total", "hotline_monitor_checkpoint_failures_total", "hotline_callbacks_connected_total"}
    assert {sample.labels.get("node") for sample in samples} == {"ast2"}
    assert registry.get_sample_value("hotline_callbacks_connected_total", {"node": "ast2", "queue": "12345"}) == 1


def test_two_monitors_on_one_registry_are_refused():
    """One gateway process watches one node: a second set of the same metrics is a programming error."""
    registry = CollectorRegistry()
    MonitorMetrics(registry, node="ast1")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        MonitorMetrics(registry, node="ast2")


def test_series_count_does_not_grow_with_calls():
    """Numbers, channels and positions never become labels: 10× the calls, same series."""
    registry, _metrics, state = rig()
    calls(state, 30)
    before = sum(len(f.samples) for f in registry.collect())
    calls(state, 300)
    assert sum(len(f.samples) for f in registry.collect()) == before


def test_one_state_per_registry():
    _registry, metrics, state = rig()
    with pytest.raises(ValueError):
        metrics.watch(state, lambda: 0.0)


def test_ami_health_metrics():
    registry, metrics, _ = rig()
    metrics.ami.connected(True)
    metrics.ami.reconnected()
    metrics.ami.resynced("partial")
    metrics.ami.replayed(7)
    node = {"node": NODE}
    assert registry.get_sample_value("hotline_ami_connected", node) == 1
    assert registry.get_sample_value("hotline_ami_reconnects_total", node) == 1
    assert registry.get_sample_value("hotline_ami_resyncs_total", {**node, "outcome": "partial"}) == 1
    assert registry.get_sample_value("hotline_queue_log_replayed_entries_total", node) == 7


# -- configuration of the monitor -------------------------------------------------------------


def test_monitor_configuration_from_the_environment():
    config = load_config(environ={
        "HOTLINE_MONITOR_SHORT_ABANDON": "8",
        "HOTLINE_MONITOR_TRUNKS": "carrier, backup",
        "HOTLINE_MONITOR_TRUNK_CAPACITY": "carrier=30,backup=10",
        "HOTLINE_AMI_KEEPALIVE_INTERVAL": "20",
    })
    assert config.monitor.short_abandon == 8.0 and config.monitor.service_level == 15.0
    assert config.monitor.trunk_names() == ("carrier", "backup")
    assert config.monitor.capacities() == {"carrier": 30, "backup": 10}
    assert config.ami.keepalive_interval == 20.0 and config.ami.events == "call,agent,user,system"


def test_monitor_node_is_set_per_gateway_and_defaults_to_the_first_node():
    assert load_config(environ={}).monitor.node_label() == "ast1"
    config = load_config(environ={"HOTLINE_MONITOR_NODE": "ast2"})
    assert config.monitor.node == "ast2" and config.monitor.node_label() == "ast2"
    assert load_config(environ={"HOTLINE_MONITOR_NODE": "pbx-b.dc_2"}).monitor.node_label() == "pbx-b.dc_2"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"HOTLINE_MONITOR_TRUNK_CAPACITY": "carrier"}, "trunk=channels"),
        ({"HOTLINE_AMI_KEEPALIVE_TIMEOUT": "30"}, "shorter than"),
        ({"HOTLINE_MONITOR_SERVICE_LEVEL": "0"}, "must be positive"),
        ({"HOTLINE_MONITOR_SHORT_ABANDON": "-1"}, "must not be negative"),
        ({"HOTLINE_MONITOR_NODE": "ast 2"}, "monitor.node"),
        ({"HOTLINE_MONITOR_NODE": "ast2{x}"}, "monitor.node"),
        ({"HOTLINE_MONITOR_NODE": "n" * 33}, "monitor.node"),
    ],
)
def test_bad_monitor_configuration_is_a_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)
