"""Faults on the two-node lab, counted (real Kamailio, two Asterisk 22 nodes, two gateway
processes, Redis with Sentinel, the lab carrier): each scenario of ``hotline-lab faults``
must lose nothing and double nothing. The rows are printed (pytest -s shows the table)."""

from __future__ import annotations

import pytest

from gateway.lab.cluster import ClusterLab
from gateway.lab.faults import SCENARIOS, FaultRow, format_table

ROWS: list[FaultRow] = []


def _run(cluster: ClusterLab, name: str) -> FaultRow:
    row = SCENARIOS[name](cluster, lambda _message: None)
    ROWS.append(row)
    print("\n" + format_table([row]))
    return row


@pytest.fixture(autouse=True)
def _calls_gone(cluster: ClusterLab):
    """Every scenario starts and ends with no call up at the carrier."""
    from gateway.lab.faults import wait_calls_gone

    wait_calls_gone(cluster, 90)
    yield
    wait_calls_gone(cluster, 90)


def test_calls_are_spread_over_both_nodes(cluster: ClusterLab) -> None:
    """Round-robin at the front door: 6 citizens, every one reaches a queue, both nodes take some."""
    from gateway.lab.faults import QueueLogMark, callers, place_calls, wait_calls_gone

    mark = QueueLogMark(cluster)
    citizens = callers("49", 6)
    with cluster.lab.carrier_ami() as carrier:
        place_calls(carrier, citizens, hangup_after=10, spacing=0.5)
    wait_calls_gone(cluster, 60)
    reached, doubled, per_node = mark.reached(citizens)
    assert (reached, doubled) == (6, 0), per_node
    assert all(count > 0 for count in per_node.values()), per_node


def test_a_killed_node_loses_no_new_call_and_its_waiting_citizens_get_a_callback(cluster: ClusterLab) -> None:
    row = _run(cluster, "node")
    assert (row.reached, row.lost, row.doubled) == (row.calls, 0, 0), row


def test_a_gateway_killed_mid_flow_still_puts_every_citizen_in_a_queue(cluster: ClusterLab) -> None:
    row = _run(cluster, "gateway-flow")
    assert (row.reached, row.lost, row.doubled) == (row.calls, 0, 0), row


def test_a_gateway_killed_mid_dial_dials_each_callback_once_and_loses_none(cluster: ClusterLab) -> None:
    row = _run(cluster, "gateway-dial")
    assert (row.lost, row.doubled) == (0, 0), row


def test_the_redis_primary_killed_loses_no_call_record_and_no_callback(cluster: ClusterLab) -> None:
    row = _run(cluster, "redis")
    assert (row.reached, row.lost, row.doubled) == (row.calls, 0, 0), row


def test_an_ami_cut_counts_each_abandon_once_on_its_node(cluster: ClusterLab) -> None:
    row = _run(cluster, "ami")
    assert (row.lost, row.doubled) == (0, 0), row
