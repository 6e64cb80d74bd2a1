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
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.lab.kamailio import CONFIG, KamailioProcess, front_door_defines

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
PROBE_INTERVAL = 1
LAB_DEFINES = {"FR_TIMER": "1000"}


def sip_uri(address: tuple[str, int]) -> str:
    """The node's destination in the dispatcher list (and in ``kamcmd dispatcher.list``)."""
    return f"sip:{address[0]}:{address[1]}"


def proxy_defines(**defines: str) -> dict[str, str]:
    """kamailio.cfg's defines for the proxy of these tests (trunk peers: the carrier and the second peer)."""
    return front_door_defines(PROXY, (CARRIER, SECOND_PEER), PROBE_INTERVAL, **{**LAB_DEFINES, **defines})


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
    """cluster_factory(node_b="node_rejects_calls.xml", HOLDDOWN="5") → a running Cluster.

    Node A and node B (SIPp) are up and answering OPTIONS before Kamailio starts.
    """
    require_binaries("kamailio", "kamcmd", "sipp")
    # Kamailio runs as the kamailio user: its state folder must be reachable (tmp_path's parents are 0700)
    state_dir = Path(tempfile.mkdtemp(prefix="hotline-kamailio-"))
    state_dir.chmod(0o755)
    clusters: list[Cluster] = []

    def make(node_a: str = "node_uas.xml", node_b: str = "node_uas.xml", **defines: str) -> Cluster:
        cluster = Cluster(
            proxy=KamailioProcess(CONFIG, state_dir / f"proxy-{len(clusters)}", proxy_defines(**defines),
                                  [sip_uri(NODE_A), sip_uri(NODE_B)]),
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
    try:
        for cluster in clusters:
            try:
                cluster.proxy.stop()
            finally:
                cluster.node_a.stop()
                cluster.node_b.stop()
    finally:
        # the proxy's log outlives its state folder, for a failed test's report
        for index, cluster in enumerate(clusters):
            if cluster.proxy.log_file.exists():
                shutil.copy(cluster.proxy.log_file, tmp_path / f"kamailio-{index}.log")
        shutil.rmtree(state_dir, ignore_errors=True)
