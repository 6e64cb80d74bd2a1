"""Redis with Sentinel, for real: redis-server primary (6470) and replica (6471), three redis-sentinel
processes (26470-26472), started per test in the test's temporary directory and stopped after it.

Every test here is ``integration`` (deselect with ``-m "not integration"``); skipped when Debian's
redis-server or redis-sentinel is not installed. The Twisted parts run on a private real reactor
(``private_reactor``, tests/reactor_helpers.py), never the global one.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from ..reactor_helpers import private_reactor  # noqa: F401 — a fixture of the tests here
from .cluster import SentinelCluster

_HERE = os.path.dirname(os.path.abspath(__file__))

#: ports where nothing listens (reserved for these tests, never started): "unreachable sentinels"
NOBODY = "127.0.0.1:26477,127.0.0.1:26478,127.0.0.1:26479"


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def cluster(tmp_path) -> Iterator[SentinelCluster]:
    """A primary, a replica and three sentinels, ready to fail over; all stopped after the test."""
    for binary in ("redis-server", "redis-sentinel"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (apt-get install redis-server redis-sentinel)")
    nodes = SentinelCluster(tmp_path / "redis")
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()
