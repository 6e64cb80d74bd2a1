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


def test_the_do_not_call_list_is_listed_added_to_and_removed_from_with_masked_numbers(dialer_redis):
    resource, store = api(dialer_redis)
    code, body = call(resource, "POST", path=("dnc",), body={"number": "+86 138 0013 8000"})
    assert (code, body) == (201, {"result": "added", "number": "138****8000"})
    assert call(resource, "POST", path=("dnc",), body={"number": "13800138000"}) == (
        200, {"result": "already", "number": "138****8000"})
    call(resource, "POST", path=("dnc",), body={"number": "020-8888-9999"})
    assert store.is_dnc("+8613800138000") and store.is_dnc("+862088889999")
    code, body = call(resource, path=("dnc",))
    assert code == 200 and body == {"count": 2, "numbers": ["020****9999", "138****8000"]}
    assert "13800138000" not in json.dumps(body)
    code, body = call(resource, "DELETE", path=("dnc",), body={"number": "13800138000"})
    assert (code, body) == (200, {"result": "removed", "number": "138****8000"})
    assert not store.is_dnc("+8613800138000")
    assert call(resource, "DELETE", path=("dnc",), body={"number": "13800138000"})[0] == 404
    assert call(resource, path=("dnc",))[1]["count"] == 1


def test_the_do_not_call_routes_need_the_token_and_a_number_the_policys_parser_accepts(dialer_redis):
    resource, store = api(dialer_redis)
    assert call(resource, "POST", path=("dnc",), token="wrong", body={"number": "13800138000"})[0] == 401
    assert call(resource, path=("dnc",), token=None)[0] == 401
    assert call(resource, "POST", path=("dnc",), body={"number": "95598"})[0] == 400
    assert call(resource, "POST", path=("dnc",), body={"number": "call me"})[0] == 400
    assert call(resource, "POST", path=("dnc",), body={"no": "number"})[0] == 400
    assert call(resource, "PUT", path=("dnc",), body={"number": "13800138000"})[0] == 405
    assert store.list_dnc() == (0, [])
    # a number of a kind the policy does not dial (400) can still be listed: the list is about the citizen
    assert call(resource, "POST", path=("dnc",), body={"number": "4001234567"})[0] == 201


def test_adding_or_removing_a_do_not_call_number_logs_it_masked(dialer_redis):
    from twisted.logger import formatEvent, globalLogPublisher

    resource, _ = api(dialer_redis)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        call(resource, "POST", path=("dnc",), body={"number": "13800138000"})
        call(resource, "DELETE", path=("dnc",), body={"number": "13800138000"})
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if "do-not-call" in formatEvent(e)]
    assert len(lines) == 2 and all("138****8000" in line and "13800138000" not in line for line in lines)


def test_show_and_cancel_by_id_leave_survey_jobs_alone(dialer_redis):
    from gateway.dialer.jobs import NewJob

    resource, store = api(dialer_redis)
    now = 1_800_000_000.0
    store.add(NewJob("sv-1", "survey", "13800138000", "+8613800138000", now, now, now + 3600), now)
    assert call(resource, path=("sv-1",))[0] == 404
    assert call(resource, "DELETE", path=("sv-1",))[0] == 404
    assert store.get("sv-1").state == "pending" and not store.get("sv-1").cancel


def test_the_console_manages_the_do_not_call_list(dialer_redis, monkeypatch, capsys):
    from gateway.app import main

    from .dialer_redis import PORT

    monkeypatch.delenv("HOTLINE_CONFIG", raising=False)
    monkeypatch.setenv("HOTLINE_REDIS_URL", f"redis://127.0.0.1:{PORT}/0")
    monkeypatch.setenv("HOTLINE_REDIS_KEY_PREFIX", "hotline")
    store = JobStore(dialer_redis, key_prefix="hotline", owner="test")
    assert main(["callbacks", "dnc", "13800138000"]) == 0  # the old form: add
    assert main(["callbacks", "dnc", "add", "02088889999"]) == 0
    assert store.is_dnc("+8613800138000") and store.is_dnc("+862088889999")
    capsys.readouterr()
    assert main(["callbacks", "dnc", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["020****9999", "138****8000", "2 number(s) on the do-not-call list"]
    assert main(["callbacks", "dnc", "remove", "+86 138 0013 8000"]) == 0
    assert not store.is_dnc("+8613800138000")
    assert main(["callbacks", "dnc", "remove", "13800138000"]) == 1
    assert main(["callbacks", "dnc", "add", "95598"]) == 1
