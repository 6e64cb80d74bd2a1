"""The callback HTTP API: bearer token from the environment only, list / show / add / cancel, masked numbers."""
from __future__ import annotations

import io
import json

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.web.test.requesthelper import DummyRequest

from gateway.callbacks.api import CallbacksResource
from gateway.callbacks.metrics import CallbackMetrics
from gateway.callbacks.service import CallbackService
from gateway.config import ConfigError, load_config
from gateway.dialer.jobs import JobStore
from gateway.dialer.policy import NumberPolicy

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures

import pytest

TOKEN = "s3cret-token"


def api(client, token=TOKEN):
    clock = task.Clock()
    clock.advance(1_800_000_000)
    store = JobStore(client, key_prefix="t", owner="gw")
    service = CallbackService(clock=clock, run_blocking=defer.maybeDeferred, store=store, policy=NumberPolicy(),
                              metrics=CallbackMetrics(CollectorRegistry()))
    return CallbacksResource(service, token), store


def call(resource, method="GET", path=(), token=TOKEN, body=None, args=None):
    request = DummyRequest([p.encode() for p in path])
    request.method = method.encode()
    if token is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    if body is not None:
        request.content = io.BytesIO(json.dumps(body).encode())
    for key, value in (args or {}).items():
        request.addArg(key.encode(), value.encode())
    result = resource.render(request)
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
    return request.responseCode or 200, json.loads(b"".join(request.written) or b"null")


def test_requests_without_the_right_bearer_token_are_refused(dialer_redis):
    resource, _ = api(dialer_redis)
    assert call(resource, token=None)[0] == 401
    assert call(resource, token="wrong")[0] == 401


def test_without_a_configured_token_the_api_is_disabled_for_everyone(dialer_redis):
    resource, _ = api(dialer_redis, token="")
    assert call(resource, token="")[0] == 503


def test_add_list_show_and_cancel_a_manual_callback(dialer_redis):
    resource, store = api(dialer_redis)
    code, body = call(resource, "POST", body={"number": "13800138000", "note": "citizen asked by letter"})
    assert code == 201 and body["result"] == "added"
    code, body = call(resource, args={"state": "pending"})
    [listed] = body["callbacks"]
    assert listed["number"] == "138****8000" and listed["source"] == "api"
    code, body = call(resource, path=(listed["id"],))
    assert code == 200 and body["history"][0]["event"] == "scheduled"
    code, body = call(resource, "DELETE", path=(listed["id"],))
    assert code == 200 and body["result"] == "cancelled"
    assert call(resource, "DELETE", path=(listed["id"],))[0] == 404


def test_a_number_refused_by_the_policy_is_not_added(dialer_redis):
    resource, store = api(dialer_redis)
    code, body = call(resource, "POST", body={"number": "16012345678"})
    assert code == 422 and store.list("callback") == []


def test_bad_requests_are_rejected_with_400(dialer_redis):
    resource, _ = api(dialer_redis)
    assert call(resource, "POST", body={"no": "number"})[0] == 400
    assert call(resource, args={"limit": "many"})[0] == 400


def test_the_token_is_a_secret_refused_in_the_config_file(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[callbacks]\napi_token = "x"\n')
    with pytest.raises(ConfigError):
        load_config(path, environ={})
    assert load_config(environ={"HOTLINE_CALLBACKS_API_TOKEN": "t"}).callbacks.api_token == "t"
