"""The cluster tests: the real Kamailio with kamailio/kamailio.cfg in front of SIPp
"nodes", and a SIPp "carrier". Addresses 127.0.0.50-59 only:

    127.0.0.50:5060  Kamailio          127.0.0.53  the carrier (trunk peer)
    127.0.0.51:5060  node A            127.0.0.54  a stranger (not a trunk peer)
    127.0.0.52:5060  node B            127.0.0.55  a second trunk peer (the flood test)

Every process a test starts is stopped when the test ends. kamailio, kamcmd and sipp
come from scripts/bootstrap.sh: without them the tests fail under CI=true and are
skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .kamailio_proc import KamailioProcess, ProxySettings
from .sipp_proc import SippNode

PROXY = ("127.0.0.50", 5060)
NODE_A = ("127.0.0.51", 5060)
NODE_B = ("127.0.0.52", 5060)
CARRIER = "127.0.0.53"
STRANGER = "127.0.0.54"
SECOND_PEER = "127.0.0.55"
#: SIPp media ports, one range per role
MEDIA = {"node-a": 16500, "node-b": 16520, CARRIER: 16540, STRANGER: 16560, SECOND_PEER: 16580}
#: lab values: probe every second; a silent node is given up after one second
LAB_DEFINES = (("FR_TIMER", "1000"),)


def require_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None and shutil.which(name, path="/usr/sbin") is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (scripts/bootstrap.sh installs kamailio, sip-tester)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Cluster:
    proxy: KamailioProcess
    node_a: SippNode
    node_b: SippNode
    workdir: Path

    def invites(self) -> tuple[int, int]:
        return self.node_a.invites(), self.node_b.invites()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """cluster_factory(node_b="node_rejects_calls.xml", defines=(...)) → a running Cluster.

    Node A and node B (SIPp) are up and answering OPTIONS before Kamailio starts.
    """
    require_binaries("kamailio", "kamcmd", "sipp")
    clusters: list[Cluster] = []

    def make(node_a: str = "node_uas.xml", node_b: str = "node_uas.xml",
             defines: tuple[tuple[str, str], ...] = ()) -> Cluster:
        settings = ProxySettings(listen=PROXY, trunk_peers=(CARRIER, SECOND_PEER), nodes=(NODE_A, NODE_B),
                                 probe_interval=1, defines=LAB_DEFINES + defines)
        cluster = Cluster(
            proxy=KamailioProcess(settings),
            node_a=SippNode(node_a, *NODE_A, MEDIA["node-a"], tmp_path / "node-a"),
            node_b=SippNode(node_b, *NODE_B, MEDIA["node-b"], tmp_path / "node-b"),
            workdir=tmp_path,
        )
        clusters.append(cluster)
        cluster.node_a.start()
        cluster.node_b.start()
        cluster.proxy.start()
        return cluster

    yield make
    for cluster in clusters:
        # the proxy's log outlives its runtime folder, for a failed test's report
        (tmp_path / "kamailio.log").write_text(cluster.proxy.log_text())
        try:
            cluster.proxy.stop()
        finally:
            cluster.node_a.stop()
            cluster.node_b.stop()
