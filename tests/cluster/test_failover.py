"""Kamailio (kamailio/kamailio.cfg) in front of two SIPp nodes, with a SIPp carrier:
spreading, failover, the trunk ACL and flood protection. Real kamailio, real sipp;
every assertion counts calls (SIPp's own statistics and the INVITEs each node logged),
none measures time. Waits for the dispatcher's view of a node are bounded polls of
``kamcmd dispatcher.list``.
"""

from __future__ import annotations

import pytest

from gateway.lab.kamailio import options_ping

from .conftest import CARRIER, MEDIA, NODE_B, PROXY, SECOND_PEER, STRANGER, sip_uri
from .sipp_proc import run_calls

pytestmark = pytest.mark.integration

#: a dead node leaves rotation after PROBE_THRESHOLD (2) failed probes of 1 s, each
#: given up after FR_TIMER (1 s); generous bound for a loaded machine
STATE_CHANGE = 20.0


def carrier_calls(cluster, calls: int, **options):
    return run_calls("carrier_uac.xml", PROXY, CARRIER, calls, cluster.workdir / "carrier",
                     media_port=MEDIA[CARRIER], **options)


def test_calls_are_spread_over_both_nodes(cluster_factory):
    cluster = cluster_factory()
    counts = carrier_calls(cluster, 20, rate=10)
    assert (counts.successful, counts.failed) == (20, 0)
    a, b = cluster.invites()
    assert a + b == 20
    # round-robin: 10 each when nothing else happened; at least "both answered some"
    assert a >= 5 and b >= 5, (a, b)


def test_a_killed_node_leaves_rotation_and_comes_back_when_it_answers(cluster_factory):
    cluster = cluster_factory()
    cluster.node_b.kill()
    # calls placed before the probes noticed: the silent node times out, the call fails over
    early = carrier_calls(cluster, 4, rate=10, limit=1)
    assert (early.successful, early.failed) == (4, 0)
    cluster.proxy.wait_active([sip_uri(NODE_B)], STATE_CHANGE, active=False)

    a_before, b_before = cluster.invites()
    counts = carrier_calls(cluster, 10, rate=10)
    assert (counts.successful, counts.failed) == (10, 0)
    a_after, b_after = cluster.invites()
    assert (a_after - a_before, b_after - b_before) == (10, 0), "every call went to node A"

    cluster.node_b.start()
    cluster.proxy.wait_active([sip_uri(NODE_B)], STATE_CHANGE)
    counts = carrier_calls(cluster, 10, rate=10)
    assert (counts.successful, counts.failed) == (10, 0)
    a_back, b_back = cluster.invites()
    assert b_back - b_after >= 3 and a_back - a_after >= 3, "node B is back in rotation"
    assert (a_back - a_after) + (b_back - b_after) == 10


def test_a_node_that_answers_options_but_refuses_calls_is_taken_out(cluster_factory):
    cluster = cluster_factory(node_b="node_rejects_calls.xml")
    assert cluster.proxy.dispatcher_state()[sip_uri(NODE_B)].startswith("A"), "its probes succeed"
    # one call at a time, so the refusal is seen before the next call is routed
    counts = carrier_calls(cluster, 20, rate=10, limit=1)
    assert (counts.successful, counts.failed) == (20, 0), "every refused call failed over"
    a, b = cluster.invites()
    assert b == 1, "after its first 503 node B got no further call"
    assert a == 20


def test_calls_from_an_address_that_is_not_a_trunk_peer_get_403_and_reach_no_node(cluster_factory):
    cluster = cluster_factory()
    counts = run_calls("caller_refused.xml", PROXY, STRANGER, 5, cluster.workdir / "stranger",
                       media_port=MEDIA[STRANGER], rate=5)
    assert (counts.successful, counts.failed) == (5, 0), "each call was answered 403"
    assert cluster.invites() == (0, 0)
    # and the carrier's calls still go through
    counts = carrier_calls(cluster, 2, rate=5)
    assert (counts.successful, counts.failed) == (2, 0)


def test_an_invite_flood_from_one_address_is_limited_and_the_carrier_still_gets_through(cluster_factory):
    # the production pike thresholds (PIKE_UNIT 2 s, PIKE_DENSITY 50)
    cluster = cluster_factory()
    flood = run_calls("carrier_uac.xml", PROXY, SECOND_PEER, 400, cluster.workdir / "flood",
                      media_port=MEDIA[SECOND_PEER], rate=1000, call_length_ms=0, recv_timeout_ms=3000,
                      timeout_s=60)
    assert flood.successful + flood.failed == 400
    assert flood.failed > 0, "pike refused part of the flood"
    a, b = cluster.invites()
    assert a + b < 400, "refused INVITEs reached no node"
    assert options_ping(PROXY, CARRIER, 2.0) == 200, "the proxy is still up"
    counts = carrier_calls(cluster, 3, rate=5)
    assert (counts.successful, counts.failed) == (3, 0), "the carrier's calls are not affected"


def test_a_flood_from_a_stranger_is_refused_then_dropped_without_reaching_a_node(cluster_factory):
    cluster = cluster_factory()
    flood = run_calls("caller_refused.xml", PROXY, STRANGER, 300, cluster.workdir / "stranger-flood",
                      media_port=MEDIA[STRANGER], rate=1000, recv_timeout_ms=2000, timeout_s=60)
    assert flood.successful + flood.failed == 300
    # the first requests get their 403; once pike sees the flood the address is banned
    # and its requests are dropped without a reply (no amplification)
    assert 0 < flood.successful < 300
    assert cluster.invites() == (0, 0)
    assert "banning 127.0.0.54" in cluster.proxy.log_file.read_text()
    counts = carrier_calls(cluster, 2, rate=5)
    assert (counts.successful, counts.failed) == (2, 0)
