"""Results webhook (task.Clock, private Redis): one POST per order with an Idempotency-Key, retries with
backoff, dead-lettering, no phone number in the body; the daily report's rates and formats; the
recognition pool's timeout and cap."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter
from twisted.web.resource import Resource
from twisted.web.server import Site

from gateway.app import build_gateway
from gateway.config import load_config

from gateway.surveys.metrics import SurveyMetrics
from gateway.surveys.report import format_csv, format_table, summarise
from gateway.surveys.results import ResultPoster, result_body
from gateway.surveys.speech import SpeechRecognizer, SpeechUnavailable

from .test_survey_campaign import _survey_redis_server, resolve, survey_redis  # noqa: F401 — fixtures
from .test_survey_wiring import ENV as WIRING_ENV


class Platform:
    def __init__(self, answers):
        self.answers = list(answers)
        self.posts = []

    def post(self, url, headers, body):
        self.posts.append((url, headers, json.loads(body)))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def poster(client, platform, clock, **kw):
    registry = CollectorRegistry()
    metrics = SurveyMetrics(registry)
    return ResultPoster(clock=clock, run_blocking=lambda fn: defer.maybeDeferred(fn), client=client,
                        outbox="t:surveys:outbox", url="https://platform.example/survey-results", token="s3cret",
                        post=platform.post, metrics=metrics, initial_backoff=5, max_backoff=60, max_tries=4,
                        **kw), registry


def outbox(client, order_id, **data):
    client.xadd("t:surveys:outbox", {"order_id": order_id, "data": json.dumps(
        {"dial": "13800138000", "e164": "+8613800138000", "phone": "13800138000", "status": "completed", **data})})


def test_each_result_is_posted_once_with_its_idempotency_key_and_without_the_number(survey_redis):
    platform = Platform([200, 201])
    clock = task.Clock()
    p, registry = poster(survey_redis, platform, clock)
    outbox(survey_redis, "GD-1", solved="solved")
    outbox(survey_redis, "GD-2", solved="unsolved", reopened="unsolved")
    p.poll()
    p.poll()
    assert [h["Idempotency-Key"] for _, h, _ in platform.posts] == ["survey-GD-1", "survey-GD-2"]
    assert all(h["Authorization"] == "Bearer s3cret" for _, h, _ in platform.posts)
    body = platform.posts[1][2]
    assert body["order_id"] == "GD-2" and body["reopened"] == "unsolved"
    assert "13800138000" not in json.dumps([b for _, _, b in platform.posts])
    assert registry.get_sample_value("hotline_survey_webhook_deliveries_total", {"result": "delivered"}) == 2


def test_a_failing_platform_is_retried_with_growing_backoff_and_nothing_is_skipped(survey_redis):
    platform = Platform([503, ConnectionError("refused"), 200])
    clock = task.Clock()
    p, _ = poster(survey_redis, platform, clock)
    outbox(survey_redis, "GD-1")
    p.poll()
    assert len(platform.posts) == 1
    clock.advance(4.9)
    p.poll()
    assert len(platform.posts) == 1  # backoff 5 s not over
    clock.advance(0.1)
    p.poll()
    assert len(platform.posts) == 2
    clock.advance(9.9)
    p.poll()
    assert len(platform.posts) == 2  # then 10 s
    clock.advance(0.1)
    p.poll()
    assert [b["order_id"] for _, _, b in platform.posts] == ["GD-1"] * 3
    p.poll()
    assert len(platform.posts) == 3  # delivered: not sent again


def test_a_duplicate_answered_with_409_counts_as_delivered(survey_redis):
    platform = Platform([409])
    p, _ = poster(survey_redis, platform, task.Clock())
    outbox(survey_redis, "GD-1")
    p.poll()
    p.poll()
    assert len(platform.posts) == 1


def test_after_the_last_try_a_result_is_kept_aside_and_the_next_one_goes_out(survey_redis):
    platform = Platform([500, 500, 500, 500, 200])
    clock = task.Clock()
    p, registry = poster(survey_redis, platform, clock)
    outbox(survey_redis, "GD-1")
    outbox(survey_redis, "GD-2")
    for _ in range(6):
        p.poll()
        clock.advance(60)
    assert [b["order_id"] for _, _, b in platform.posts] == ["GD-1"] * 4 + ["GD-2"]
    [(_, dead)] = survey_redis.xrange("t:surveys:outbox:dead")
    assert dead["order_id"] == "GD-1" and dead["error"] == "HTTP 500"
    assert registry.get_sample_value("hotline_survey_webhook_deliveries_total", {"result": "dead"}) == 1


def test_result_body_names_the_comment_recording():
    assert result_body("A", {"comment": "rec-1", "dial": "138"})["comment_recording_id"] == "rec-1"


# -- report -------------------------------------------------------------------------------------------
ORDERS = [
    {"order_id": "1", "category": "投诉", "unit": "市政局", "status": "completed", "solved": "solved",
     "satisfaction": "satisfied"},
    {"order_id": "2", "category": "投诉", "unit": "城管局", "status": "completed", "solved": "unsolved",
     "satisfaction": "dissatisfied", "reopened": "unsolved+dissatisfied"},
    {"order_id": "3", "category": "咨询", "unit": "市政局", "status": "partial", "solved": "solved"},
    {"order_id": "4", "category": "咨询", "unit": "市政局", "status": "no_answer"},
    {"order_id": "5", "category": "咨询", "unit": "市政局", "status": "completed", "solved": "no_response",
     "satisfaction": "basically_satisfied"},
]


def test_the_report_counts_per_category_and_per_unit_with_rates_that_leave_out_no_responses():
    rows = {(r.group, r.name): r for r in summarise(ORDERS)}
    total = rows[("all", "all")]
    assert total.value("orders") == "5" and total.value("completed") == "3" and total.value("no_answer") == "1"
    assert total.value("solved_rate") == "66.7%"  # 2 solved of 3 answered
    assert total.value("satisfied_rate") == "66.7%"  # satisfied + basically of 3 answered
    assert rows[("category", "咨询")].value("solved_rate") == "100.0%"
    assert rows[("unit", "城管局")].value("reopened") == "1"
    assert rows[("unit", "城管局")].value("satisfied_rate") == "0.0%"


def test_a_day_without_answers_shows_dashes_not_a_division_by_zero():
    [total] = summarise([])
    assert total.value("solved_rate") == "-" and total.value("orders") == "0"


def test_the_report_prints_an_aligned_table_and_a_csv():
    rows = summarise(ORDERS)
    table = format_table("2026-11-23", rows).splitlines()
    assert table[0] == "Satisfaction surveys finished on 2026-11-23"
    assert "解决率" in table[1] and "满意率" in table[1]
    assert len({len(line.rstrip()) for line in table[3:]}) >= 1
    csv = format_csv(rows).splitlines()
    assert csv[0].startswith("group,name,orders,completed")
    assert csv[1].startswith("all,all,5,3,1,0,1,0,2,1,66.7%,1,1,1,66.7%,1")
    assert any(line.startswith("unit,市政局,4,") for line in csv)


# -- recognition pool ----------------------------------------------------------------------------------
def test_a_slow_recognition_times_out_on_the_clock_and_a_full_pool_refuses_at_once():
    clock = task.Clock()
    pending = []

    def run_in_pool(fn, *args):
        d = defer.Deferred()
        pending.append(d)
        return d

    speech = SpeechRecognizer(clock=clock, run_in_pool=run_in_pool, engine_factory=lambda: None, timeout=5,
                              max_waiting=1)
    first = defer.Deferred.fromCoroutine(speech.recognise("/a.wav", ["네"]))
    second = defer.Deferred.fromCoroutine(speech.recognise("/b.wav", ["네"]))
    errors = []
    second.addErrback(lambda f: errors.append(f.value))
    assert isinstance(errors[0], SpeechUnavailable) and "busy" in str(errors[0])
    first.addErrback(lambda f: errors.append(f.value))
    clock.advance(5)
    assert isinstance(errors[1], SpeechUnavailable) and "longer than" in str(errors[1])
    assert speech.waiting == 0


def test_recordings_are_read_under_the_configured_root():
    speech = SpeechRecognizer(clock=task.Clock(), run_in_pool=None, engine_factory=lambda: None,
                              recordings_root="/srv/lab/root")
    assert speech.local_path("/var/spool/x.wav") == "/srv/lab/root/var/spool/x.wav"


# -- the production poster: real treq and twisted.web over an in-memory connection --------------------
class _Platform(Resource):
    """The work-order platform's results endpoint (a real twisted.web resource): answers from a list."""

    isLeaf = True

    def __init__(self, codes):
        super().__init__()
        self.codes, self.requests = list(codes), []

    def render_POST(self, request):
        self.requests.append({"path": request.path, "body": json.loads(request.content.read()),
                              "headers": {k.decode().lower(): v[0].decode()
                                          for k, v in request.requestHeaders.getAllRawHeaders()}})
        request.setResponseCode(self.codes.pop(0) if self.codes else 200)
        return b"{}"


def _exchange(reactor, completer, pumps):
    """Connect a new client connection to the in-memory server (if one was opened) and move the bytes."""
    reactor.advance(0)
    pump = completer.succeedOnce()
    if pump is not None:
        pumps.append(pump)
    for each in pumps:
        each.flush()


def test_the_wired_poster_posts_through_treq_with_bearer_and_idempotency_key_and_retries_a_500(survey_redis):
    """build_gateway's poster and treq_post as in production, against a twisted.web server in memory
    (MemoryReactorClock + iosim: real HTTP/1.1 on both sides, no socket): 500, then retried after the
    backoff and delivered; the cursor moves only then."""
    env = {**WIRING_ENV, "HOTLINE_SURVEYS_WEBHOOK_URL": "http://platform.example:8080/survey-results",
           "HOTLINE_SURVEYS_WEBHOOK_TOKEN": "s3cret", "HOTLINE_SURVEYS_WEBHOOK_BACKOFF": "5"}
    reactor = MemoryReactorClock()
    gateway = build_gateway(reactor, load_config(environ=env))
    p = gateway.survey_poster
    assert p is not None and p.url == "http://platform.example:8080/survey-results"
    p._run = lambda fn: defer.maybeDeferred(fn)  # the gateway's Redis thread pool does not run on this reactor
    platform = _Platform([500, 201])
    reactor.listenTCP(8080, Site(platform, reactor=reactor))
    completer, pumps = ConnectionCompleter(reactor), []
    survey_redis.xadd(p.outbox, {"order_id": "GD-7", "data": json.dumps(
        {"dial": "13800138000", "status": "completed", "solved": "unsolved", "reopened": "unsolved",
         "comment": "rec-7", "category": "投诉"}, ensure_ascii=False)})

    first = p.poll()
    _exchange(reactor, completer, pumps)
    assert resolve(first) == 0
    [request] = platform.requests
    assert request["path"] == b"/survey-results"
    assert request["headers"]["authorization"] == "Bearer s3cret"
    assert request["headers"]["idempotency-key"] == "survey-GD-7"
    assert request["headers"]["content-type"] == "application/json; charset=utf-8"
    assert request["body"]["order_id"] == "GD-7" and request["body"]["reopened"] == "unsolved"
    assert request["body"]["comment_recording_id"] == "rec-7" and request["body"]["category"] == "投诉"
    assert "13800138000" not in json.dumps(request["body"])
    assert survey_redis.get(f"{p.outbox}:cursor") is None  # not delivered: not past it

    reactor.advance(4)
    resolve(p.poll())
    assert len(platform.requests) == 1  # still backing off
    reactor.advance(1)
    second = p.poll()
    _exchange(reactor, completer, pumps)
    assert resolve(second) == 1
    assert [r["headers"]["idempotency-key"] for r in platform.requests] == ["survey-GD-7"] * 2
    assert platform.requests[1]["body"] == request["body"]
    [(entry_id, _)] = survey_redis.xrange(p.outbox)
    assert survey_redis.get(f"{p.outbox}:cursor") == entry_id


# -- two gateway instances share one outbox -----------------------------------------------------------
def test_two_instances_post_each_result_once_only_the_lease_holder_posts(survey_redis):
    clock = task.Clock()
    platform = Platform([])
    a, _ = poster(survey_redis, platform, clock, owner="gw-a", lease=30)
    b, _ = poster(survey_redis, platform, clock, owner="gw-b", lease=30)
    for n in range(3):
        outbox(survey_redis, f"GD-{n}")
    resolve(a.poll())
    resolve(b.poll())
    outbox(survey_redis, "GD-3")
    for _ in range(3):
        clock.advance(5)
        resolve(b.poll())
        resolve(a.poll())
    assert [h["Idempotency-Key"] for _, h, _ in platform.posts] == [f"survey-GD-{n}" for n in range(4)]
    assert a.leader and not b.leader


def test_a_post_in_flight_keeps_the_lease_so_the_other_instance_does_not_post_it_too(survey_redis):
    """A slow platform: A's POST is still open after several polls (longer than the lease); A renews."""
    clock = task.Clock()
    answers = []

    def slow_post(url, headers, body):
        answers.append(defer.Deferred())
        return answers[-1]

    platform = Platform([])
    a, _ = poster(survey_redis, Platform([]), clock, owner="gw-a", lease=10)
    a._post = slow_post
    b, _ = poster(survey_redis, platform, clock, owner="gw-b", lease=10)
    outbox(survey_redis, "GD-1")
    in_flight = a.poll()
    for _ in range(6):  # 30 s: three leases long
        clock.advance(5)
        a.poll()
        resolve(b.poll())
    assert platform.posts == [] and len(answers) == 1
    answers[0].callback(200)
    assert resolve(in_flight) == 1
    clock.advance(5)
    resolve(b.poll())
    assert platform.posts == []  # delivered once, by A


def test_an_instance_backing_off_keeps_the_lease_so_a_failing_platform_is_not_hammered(survey_redis):
    clock = task.Clock()
    platform = Platform([503])
    a, _ = poster(survey_redis, platform, clock, owner="gw-a", lease=10)
    b, _ = poster(survey_redis, platform, clock, owner="gw-b", lease=10)
    outbox(survey_redis, "GD-1")
    resolve(a.poll())  # 503: A backs off for 5 s
    clock.advance(2)
    resolve(b.poll())
    clock.advance(2)
    resolve(a.poll())
    resolve(b.poll())
    assert len(platform.posts) == 1
    clock.advance(1)
    resolve(a.poll())
    assert len(platform.posts) == 2 and platform.posts[1][1]["Idempotency-Key"] == "survey-GD-1"


def test_when_the_holder_dies_or_stops_another_instance_takes_over_and_the_dead_one_cannot_move_the_cursor(
        survey_redis):
    clock = task.Clock()
    platform = Platform([])
    a, _ = poster(survey_redis, platform, clock, owner="gw-a", lease=10)
    b, _ = poster(survey_redis, platform, clock, owner="gw-b", lease=10)
    outbox(survey_redis, "GD-1")
    answers = []
    a._post = lambda url, headers, body: answers.append(defer.Deferred()) or answers[-1]
    stalled = a.poll()  # A stalls mid-POST (e.g. its process is paused) and stops renewing
    clock.advance(11)
    survey_redis.delete(a.lock_key)  # its lease expired (PX runs on Redis's own clock, not task.Clock)
    resolve(b.poll())
    assert [h["Idempotency-Key"] for _, h, _ in platform.posts] == ["survey-GD-1"] and b.leader
    answers[0].callback(200)  # A's late answer: it no longer holds the lease
    assert resolve(stalled) == 0 and not a.leader
    [(entry_id, _)] = survey_redis.xrange("t:surveys:outbox")
    assert survey_redis.get("t:surveys:outbox:cursor") == entry_id
    outbox(survey_redis, "GD-2")
    a._post = platform.post
    resolve(b.stop())
    resolve(a.poll())  # B gave the lease up: A takes over at once
    assert platform.posts[-1][1]["Idempotency-Key"] == "survey-GD-2" and a.leader

