"""Fuzzing webhook and API bodies: ``read_json``, the callbacks API, the closed-order POST and its events.

Any body gets an answer with a status the API documents and, for a refusal, a JSON ``error`` that says
what is wrong — never the 503 "storage unavailable" that an exception in a route turns into. A closed-order
event is a ClosedOrder with finite times, or :class:`EventError` with a message.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import math
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet import task
from twisted.web.test.requesthelper import DummyRequest

from gateway.callbacks.api import CallbacksResource
from gateway.dialer.policy import NumberPolicy
from gateway.httpjson import read_json
from gateway.masking import mask_number
from gateway.surveys.metrics import SurveyMetrics
from gateway.surveys.model import ClosedOrder, EventError, parse_closed_event
from gateway.surveys.triggers import SurveysResource

from ..unit.test_survey_triggers import call
from .support import TALLY, parse_or_reject

TOKEN = "fuzz-token"
TIMEZONES = [dt.timezone.utc, ZoneInfo("Asia/Shanghai")]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
TIMES = st.one_of(
    JSON, st.integers(-(10**20), 10**20), st.integers(300, 400).map(lambda n: 10**n),
    st.floats(allow_nan=True, allow_infinity=True), st.datetimes().map(dt.datetime.isoformat),
    st.sampled_from(["nan", "inf", "-Infinity", "1e400", " 1795306863 ", "0001-01-01T00:00:00+05:00",
                     "9999-12-31T23:59:59-05:00", "2026-11-22", "2026-11-22T08:00:00Z", "soon", "1_000"]),
)
NUMBERS = st.sampled_from(["13800138000", "+86 138 0013 8000", "110", "", "１３８００１３８０００"]) | JSON
#: closed-order events: the documented fields, each maybe missing, right or of any JSON type
EVENTS = st.fixed_dictionaries({}, optional={
    "order_id": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,70}", fullmatch=True) | JSON,
    "id": JSON, "phone": NUMBERS, "category": JSON, "topic": JSON, "unit": JSON, "handling_unit": JSON,
    "closed_at": TIMES, "reported_at": TIMES,
}) | st.dictionaries(st.text(max_size=12), JSON, max_size=5)


def _dumped(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


#: bodies: JSON of anything, events, event batches, and what is not JSON at all
BODIES = st.one_of(
    JSON.map(_dumped), EVENTS.map(_dumped),
    st.lists(EVENTS, max_size=4).map(lambda events: _dumped({"orders": events})),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(4000, 6000).map(lambda n: b'{"closed_at": 1' + b"0" * n + b"}"),
    st.binary(max_size=200), st.sampled_from([b"", b"NaN", b"-Infinity", b'{"orders": []}', b'{"number": 5}']),
)


def _answer(resource, method: str, path: list[str], body: bytes) -> tuple[int, object]:
    code, answer = call(resource, method, path, token=TOKEN, body=body)
    assert answer is not None, "an answer never came"
    return code, answer


def _refusal(parser: str, code: int, answer: object) -> None:
    """A 4xx answer names what is wrong."""
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer
    TALLY.rejected(parser, f"{code} {answer['error']}")


@settings(max_examples=300, deadline=None)
@given(body=BODIES, limit=st.sampled_from([4096, 512 * 1024]))
@example(body=b"[" * 2000 + b"]" * 2000, limit=4096)  # RecursionError out of json.loads
def test_any_body_reads_as_json_or_a_clear_400_or_413(body, limit):
    TALLY.example("json-body")
    request = DummyRequest([])
    request.content = io.BytesIO(body)
    code, value = read_json(request, limit)
    assert code in (0, 400, 413)
    if code:
        _refusal("json-body", code, value)


class FakeCallbacks:
    """The part of CallbackService the API calls; the number policy decides as the real one does."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.policy = NumberPolicy()

    async def schedule(self, source, call_id, caller, original_at, details, mode):
        assert isinstance(caller, str) and isinstance(details["note"], str) and len(details["note"]) <= 200
        return "added" if self.policy.check(caller).allowed else "ignored:policy"

    async def dnc_change(self, number, add, via="api"):
        decision = self.policy.check(number)
        if not decision.allowed:
            return "refused", decision.reason
        return ("added" if add else "not-listed"), mask_number(decision.dial)


@settings(max_examples=250, deadline=None)
@given(body=BODIES, route=st.sampled_from([("POST", []), ("POST", ["dnc"]), ("DELETE", ["dnc"])]),
       extra=st.dictionaries(st.sampled_from(["number", "note", "mode"]), JSON | NUMBERS, max_size=3))
@example(body=b"[" * 2000 + b"]" * 2000, route=("POST", []), extra={})
def test_the_callbacks_api_answers_any_body_with_a_documented_status(body, route, extra):
    method, path = route
    if extra:  # a body shaped like a request, with fields of any type
        body = _dumped(extra)
    TALLY.example("callbacks-api")
    code, answer = _answer(CallbacksResource(FakeCallbacks(), TOKEN), method, path, body)
    assert code in (200, 201, 400, 404, 413, 422), (code, answer)
    if code >= 400:
        _refusal("callbacks-api", code, answer)


class FakeCampaign:
    """The part of SurveyCampaign the closed-order POST calls."""

    def __init__(self) -> None:
        self.tz = ZoneInfo("Asia/Shanghai")
        self.metrics = SurveyMetrics(CollectorRegistry())

    async def accept(self, order, source):
        assert isinstance(order, ClosedOrder) and math.isfinite(order.closed_at) and math.isfinite(order.reported_at)
        return "added"


@settings(max_examples=250, deadline=None)
@given(body=BODIES)
@example(body=b'{"order_id": "GD-1", "phone": "13800138000", "closed_at": 1' + b"0" * 400 + b"}")  # OverflowError
def test_the_closed_order_post_answers_any_body_and_names_each_invalid_event(body):
    TALLY.example("survey-api")
    code, answer = _answer(SurveysResource(FakeCampaign(), TOKEN), "POST", ["closed"], body)
    assert code in (202, 400, 413), (code, answer)
    if code != 202:
        _refusal("survey-api", code, answer)
        return
    for result in answer["results"]:
        assert result["result"] == "added" or result["result"].startswith("invalid:") and len(result["result"]) > 8
        if result["result"] != "added":
            TALLY.rejected("survey-api", result["result"])


@settings(max_examples=400, deadline=None)
@given(event=EVENTS, tz=st.sampled_from(TIMEZONES))
@example(event={"order_id": "GD-1", "phone": "13800138000", "closed_at": 10**400}, tz=dt.timezone.utc)
@example(event={"order_id": "GD-1", "phone": "13800138000", "closed_at": "nan"}, tz=dt.timezone.utc)
def test_a_closed_order_event_is_an_order_with_finite_times_or_an_event_error(event, tz):
    order, _ = parse_or_reject("survey-event", EventError, parse_closed_event, event, tz)
    if order is not None:
        assert math.isfinite(order.closed_at) and math.isfinite(order.reported_at)
        assert order.order_id and order.phone and all(len(text) <= 200 for text in (order.category, order.topic,
                                                                                      order.unit))
        assert all(isinstance(value, str) for value in order.as_fields().values())
