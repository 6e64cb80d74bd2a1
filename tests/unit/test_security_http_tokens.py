"""Every HTTP endpoint that changes state needs the bearer token from the environment: without it,
or with a wrong one, it refuses (401); with no token configured it refuses everyone (503, fail
closed). Endpoints without a token (metrics, health) take no state-changing method at all (405).

The table of endpoints is checked against every ``putChild(b"...")`` in the gateway's and the ASR
worker's sources: a new endpoint fails this file until it is listed here with its protection.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET, UnsupportedMethod
from twisted.web.test.requesthelper import DummyRequest

from gateway.callbacks.api import CallbacksResource
from gateway.http import build_site
from gateway.surveys.triggers import SurveysResource

REPO = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-from-the-environment"
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")

#: every mounted path segment → "token" (bearer token, every method) or "read-only" (GET only)
ENDPOINTS = {
    "callbacks": "token",   # POST/DELETE /callbacks[/<id>], POST/DELETE /callbacks/dnc
    "surveys": "token",     # POST /surveys/closed
    "metrics": "read-only",
    "healthz": "read-only",
    "readyz": "read-only",
    "bench": "read-only",   # /bench/rtt, only with `run --bench` (GET returns and clears RTT samples)
    "rtt": "read-only",
}
#: sample paths under each token-protected endpoint (every route of the two APIs)
TOKEN_PATHS = ("callbacks", "callbacks/CB-1", "callbacks/dnc", "surveys/closed", "surveys/orders/GD-1")
READ_ONLY_PATHS = ("healthz", "readyz", "bench/rtt")


def mounted_names() -> set[str]:
    names = set()
    for source in [*(REPO / "gateway").rglob("*.py"), *(REPO / "asr").rglob("*.py")]:
        if "lab" in source.relative_to(REPO).parts:
            continue
        names.update(re.findall(r'putChild\(\s*b"([^"]+)"', source.read_text()))
    return names


def test_every_mounted_endpoint_is_in_the_table():
    assert mounted_names() == set(ENDPOINTS)


def site(token: str):
    """The gateway's site with both APIs mounted, as gateway/app.py mounts them."""
    s = build_site(CollectorRegistry(), readiness=None, rtt_samples=[])  # type: ignore[arg-type]
    s.resource.putChild(b"callbacks", CallbacksResource(object(), token))  # type: ignore[arg-type]
    s.resource.putChild(b"surveys", SurveysResource(object(), token))  # type: ignore[arg-type]
    return s


def request(s, method: str, path: str, token: str | None) -> int:
    req = DummyRequest(path.encode().split(b"/"))
    req.method = method.encode()
    if token is not None:
        req.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    req.content = None
    resource = getChildForRequest(s.resource, req)
    try:
        result = resource.render(req)
    except UnsupportedMethod:
        return 405
    assert result is not NOT_DONE_YET, f"{method} /{path} reached its handler"
    return req.responseCode or 200


@pytest.mark.parametrize("path", TOKEN_PATHS)
@pytest.mark.parametrize("method", (*STATE_CHANGING, "GET"))
def test_token_endpoints_refuse_without_the_token_or_with_a_wrong_one(path, method):
    s = site(TOKEN)
    assert request(s, method, path, None) == 401
    assert request(s, method, path, "wrong") == 401
    assert request(s, method, path, TOKEN[:-1]) == 401


@pytest.mark.parametrize("path", TOKEN_PATHS)
@pytest.mark.parametrize("method", STATE_CHANGING)
def test_token_endpoints_fail_closed_when_no_token_is_configured(path, method):
    s = site("")
    assert request(s, method, path, None) == 503
    assert request(s, method, path, "") == 503


@pytest.mark.parametrize("path", READ_ONLY_PATHS)
@pytest.mark.parametrize("method", STATE_CHANGING)
def test_endpoints_without_a_token_accept_no_state_changing_method(path, method):
    assert request(site(TOKEN), method, path, None) == 405


def test_metrics_is_prometheus_exposition_only():
    """/metrics is prometheus_client's WSGI exposition app (it only reads the registry, whatever the method)."""
    from twisted.web.wsgi import WSGIResource

    metrics = getChildForRequest(site(TOKEN).resource, DummyRequest([b"metrics"]))
    assert isinstance(metrics, WSGIResource)
    assert metrics._application.__module__ == "prometheus_client.exposition"


def test_the_table_covers_each_sample_path():
    """Each sample path starts at a listed endpoint of the right kind."""
    for path in TOKEN_PATHS:
        assert ENDPOINTS[path.split("/")[0]] == "token"
    for path in (*READ_ONLY_PATHS, "metrics"):
        assert ENDPOINTS[path.split("/")[0]] == "read-only"


def test_tokens_come_only_from_the_environment(tmp_path):
    from gateway.config import ConfigError, load_config

    for section in ("callbacks", "surveys"):
        path = tmp_path / f"{section}.toml"
        path.write_text(f'[{section}]\napi_token = "in-the-file"\n')
        with pytest.raises(ConfigError, match="secret"):
            load_config(path, environ={})
    config = load_config(environ={"HOTLINE_CALLBACKS_API_TOKEN": "a", "HOTLINE_SURVEYS_API_TOKEN": "b"})
    assert (config.callbacks.api_token, config.surveys.api_token) == ("a", "b")
