"""The several-node lab for integration tests: Kamailio, two Asterisk nodes, two gateways
(dialers on), Redis with Sentinel — real processes, brought up once for this folder.

It takes the single-node lab down first (both share the chroot and its ports) and takes
itself down at the end; a later single-node test brings its own lab up again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.lab import Lab, LabError, LabSettings
from gateway.lab.cluster import ClusterLab, cluster_nodes
from gateway.lab.faults import DIALER_ENV

_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items) -> None:
    """Everything under tests/nodes is `integration`."""
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="package")
def cluster() -> Iterator[ClusterLab]:
    settings = LabSettings.from_env()
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (chroot and bind mounts)")
    if not settings.chroot.joinpath("usr/sbin/asterisk").exists() and os.environ.get("HOTLINE_LAB_BUILD") != "1":
        pytest.skip(f"no Asterisk chroot at {settings.chroot}: run `hotline-lab up` once")
    lab = Lab(settings)
    try:
        if cluster_nodes(lab) > 1:
            ClusterLab(lab).down()
        lab.down()
        cluster = ClusterLab(lab, gateway_env=DIALER_ENV)
        cluster.up(asr=False, fresh_data=True)
    except LabError as exc:
        pytest.fail(f"the two-node lab did not come up: {exc}")
    yield cluster
    if os.environ.get("HOTLINE_LAB_KEEP") != "1":
        cluster.down()
