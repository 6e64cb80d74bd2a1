"""Results webhook (task.Clock, private Redis): one POST per order with an Idempotency-Key, retries with
backoff, dead-lettering, no phone number in the body; the daily report's rates and formats; the
recognition pool's timeout and cap."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.surveys.metrics import SurveyMetrics
from gateway.surveys.report import format_csv, format_table, summarise
from gateway.surveys.results import ResultPoster, result_body
from gateway.surveys.speech import SpeechRecognizer, SpeechUnavailable

from .test_survey_campaign import _survey_redis_server, survey_redis  # noqa: F401 — fixtures


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
