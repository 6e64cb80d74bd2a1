"""Work-order-closed triggers: the HTTP POST (bearer token from the environment only, batches,
invalid events named) and the Redis Stream (cursor, replays schedule nothing twice)."""
from __future__ import annotations

import io
import json

import pytest
from twisted.internet import defer
from twisted.web.test.requesthelper import DummyRequest

from gateway.callbacks.sources import StreamSource
from gateway.config import ConfigError, load_config
from gateway.surveys.triggers import SurveysResource, closed_event_handler

from .test_survey_campaign import NOW, Rig, _survey_redis_server, survey_redis  # noqa: F401 — fixtures

TOKEN = "platform-token"
EVENT = {"order_id": "GD-1", "phone": "13800138000", "category": "投诉", "topic": "路灯", "unit": "市政局",
         "closed_at": NOW - 3600}


def call(resource, method="POST", path=("closed",), token=TOKEN, body=None):
    request = DummyRequest([p.encode() for p in path])
    request.method = method.encode()
    if token is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    if body is not None:
        request.content = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    result = resource.render(request)
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
    return request.responseCode or 200, json.loads(b"".join(request.written) or b"null")


def test_the_api_is_off_without_a_token_and_refuses_a_wrong_one(survey_redis):
    rig = Rig(survey_redis)
    assert call(SurveysResource(rig.campaign, ""), body=EVENT)[0] == 503
    assert call(SurveysResource(rig.campaign, TOKEN), token="guess", body=EVENT)[0] == 401
    assert call(SurveysResource(rig.campaign, TOKEN), token=None, body=EVENT)[0] == 401
    assert rig.store.order("GD-1") == {}


def test_the_token_is_a_secret_the_config_file_may_not_hold(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[surveys]\napi_token = "x"\n')
    with pytest.raises(ConfigError, match="secret"):
        load_config(path, environ={})
    assert load_config(environ={"HOTLINE_SURVEYS_API_TOKEN": "t"}).surveys.api_token == "t"


def test_a_closed_order_posted_is_scheduled_once_and_can_be_read_back_masked(survey_redis):
    rig = Rig(survey_redis)
    api = SurveysResource(rig.campaign, TOKEN)
    assert call(api, body=EVENT) == (202, {"results": [{"order_id": "GD-1", "result": "added"}]})
    assert call(api, body=EVENT) == (202, {"results": [{"order_id": "GD-1", "result": "exists"}]})
    code, view = call(api, "GET", ("orders", "GD-1"))
    assert code == 200 and view["status"] == "pending" and view["phone"] == "138****8000"
    assert call(api, "GET", ("orders", "nope"))[0] == 404


def test_a_batch_reports_each_event_and_names_what_is_wrong(survey_redis):
    rig = Rig(survey_redis)
    api = SurveysResource(rig.campaign, TOKEN)
    code, body = call(api, body={"orders": [EVENT, {**EVENT, "order_id": "GD-2", "closed_at": "soon"},
                                            {**EVENT, "order_id": "GD-3", "phone": "110"}]})
    assert code == 202
    results = [r["result"] for r in body["results"]]
    assert results[0] == "added" and results[1].startswith("invalid:closed_at") and results[2] == "ignored:policy"
    assert call(api, body=b"not json")[0] == 400
    assert call(api, body={"orders": []})[0] == 400


def test_closed_orders_from_the_stream_are_read_after_the_cursor_and_replays_add_nothing(survey_redis):
    rig = Rig(survey_redis)
    survey_redis.xadd("hotline:workorders:closed", {k: str(v) for k, v in EVENT.items()})
    survey_redis.xadd("hotline:workorders:closed", {"order_id": "broken"})

    def source():
        return StreamSource(name="closed", clock=rig.clock, run_blocking=lambda fn: defer.maybeDeferred(fn),
                            client=survey_redis, stream="hotline:workorders:closed",
                            cursor_key="t:surveys:cursor:closed", handler=closed_event_handler(rig.campaign))

    handled = []
    source().poll().addCallback(handled.append)
    assert handled == [2]
    assert rig.store.order("GD-1")["status"] == "pending"
    survey_redis.delete("t:surveys:cursor:closed")  # a replay from the start
    source().poll()
    assert rig.sample("hotline_surveys_received_total", source="stream") == 1
    assert rig.sample("hotline_surveys_ignored_total", reason="duplicate") == 1
    assert rig.sample("hotline_surveys_ignored_total", reason="invalid") == 2
