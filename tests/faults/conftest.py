"""Single-node fault tests: the integration lab's fixtures (Asterisk 22 + the lab carrier,
Redis on 6391, the gateway process), reused from tests/integration/conftest.py. Everything
here is `integration` (its own path check: the integration conftest marks only its folder)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.lab import Lab
from tests.integration.conftest import ami, gateway_up, lab, place_call, trunk_up  # noqa: F401 — fixtures

_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def fault_lab(trunk_up: Lab) -> Iterator[Lab]:
    """The lab with the trunk up and an empty test Redis; the gateway (started by each scenario
    with the dialer on) is stopped afterwards so later tests get the default gateway."""
    trunk_up.redis.client(timeout=5).flushdb()
    yield trunk_up
    trunk_up.gateway.stop(lambda _m: None)
