"""Integration fixtures: the real lab (Asterisk 22 in its chroot, Redis, and
the gateway when a test asks for it), brought up once per test session
through the Python API (gateway.lab.Lab) and taken down at the end.

Fixtures for other integration tests:

* ``lab``           — Asterisk + Redis up (gateway not started); a
                      :class:`gateway.lab.Lab` (``.cli()``, ``.ami()``,
                      ``.call()``, ``.asterisk``, ``.redis``, ``.gateway``).
* ``gateway_up``    — the same lab with the gateway running (started if needed).
* ``gateway_down``  — the same lab with the gateway stopped.
* ``ami``           — a logged-in AMI session as ``hotline-gateway``, the gateway's
                      least-privilege, event-filtered user (closed after). The lab
                      tool's own user (``hotline-lab``, every event) is ``lab.ami()``;
                      the carrier's is ``lab.carrier_ami()``.
* ``trunk_up``      — the lab with the hotline registered at the lab carrier and the
                      trunk qualified (waits for it).
* ``place_call``    — ``place_call(dtmf="1", hangup_after=15, ...)`` → CallResult:
                      originate a simulated citizen and follow the call to its end.

Needs root and the chroot (``hotline-lab up`` builds it once); otherwise every
test here is skipped with the reason. Environment:
``HOTLINE_LAB_KEEP=1`` leaves the lab running after the session;
``HOTLINE_LAB_BUILD=1`` lets the session build a missing chroot (minutes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from gateway.lab import CallRequest, CallResult, Lab, LabError, LabSettings
from gateway.lab.ami_blocking import AmiClient

_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items) -> None:
    """Everything under tests/integration is `integration` (deselect with -m "not integration")."""
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.integration)


def _skip_reason(settings: LabSettings) -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (chroot and bind mounts)"
    if not (settings.chroot / "usr" / "sbin" / "asterisk").exists() and os.environ.get("HOTLINE_LAB_BUILD") != "1":
        return f"no Asterisk chroot at {settings.chroot}: run `hotline-lab up` once (or set HOTLINE_LAB_BUILD=1)"
    return None


#: The test session's own Redis (so tests may stop and restart it) and its own
#: copy of the flows (so tests may switch settings and SIGHUP the gateway).
TEST_REDIS_URL = "redis://127.0.0.1:6391/0"
REPO_FLOWS = os.path.join(_HERE, "..", "..", "ivr_flows")


def _test_environment(cache: str) -> None:
    os.environ.setdefault("HOTLINE_REDIS_URL", TEST_REDIS_URL)
    if "HOTLINE_FLOWS_DIRECTORY" not in os.environ:
        flows = os.path.join(cache, "lab", "test-flows")
        shutil.rmtree(flows, ignore_errors=True)
        shutil.copytree(REPO_FLOWS, flows)
        os.environ["HOTLINE_FLOWS_DIRECTORY"] = flows


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Asterisk and Redis, freshly started for this session (no gateway)."""
    _test_environment(str(LabSettings.from_env().cache_dir))
    settings = LabSettings.from_env()
    reason = _skip_reason(settings)
    if reason:
        pytest.skip(reason)
    lab = Lab(settings)
    try:
        # a fresh Asterisk: its boot log belongs to this session, no calls left over
        lab.down()
        lab.up(gateway=False, asr=False)
    except LabError as exc:
        pytest.fail(f"the lab did not come up: {exc}")
    yield lab
    if os.environ.get("HOTLINE_LAB_KEEP") != "1":
        lab.down()


@pytest.fixture
def gateway_up(lab: Lab) -> Lab:
    """The lab with the gateway answering FastAGI and /healthz."""
    try:
        lab.gateway.start(lambda _message: None)
    except LabError as exc:
        pytest.fail(f"the gateway did not start: {exc}")
    return lab


@pytest.fixture
def gateway_down(lab: Lab) -> Lab:
    """The lab with the gateway stopped (calls must fall back to the queue)."""
    lab.gateway.stop(lambda _message: None)
    return lab


@pytest.fixture
def ami(lab: Lab) -> Iterator[AmiClient]:
    """An AMI session logged in as the gateway's least-privilege user."""
    with lab.gateway_ami() as client:
        yield client


@pytest.fixture
def trunk_up(lab: Lab) -> Lab:
    """The lab carrier running, the hotline registered at it and its contact reachable."""
    if lab.carrier.pid() is None or not lab.carrier.responsive():
        try:
            lab.carrier.start(lambda _message: None)
        except LabError as exc:
            pytest.fail(f"the lab carrier did not start: {exc}")
    try:
        lab.wait_trunk(60)
    except LabError as exc:
        pytest.fail(str(exc))
    return lab


@pytest.fixture
def place_call(lab: Lab) -> Callable[..., CallResult]:
    """Originate a simulated citizen call and follow it: place_call(**CallRequest fields)."""

    def call(**fields) -> CallResult:
        return lab.call(CallRequest(**fields))

    return call
