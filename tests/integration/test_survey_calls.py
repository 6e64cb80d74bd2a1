"""Satisfaction surveys (全量回访) end to end with the real components: the gateway (dialer and
survey campaign on), Asterisk 22 (the hotline: [hotline-callback-out] → the PJSIP trunk,
[hotline-survey] → the FastAGI survey flow), the lab carrier on the far end of the trunk
(scripted citizens: AstDB ``carrier/<number>`` — they answer, wait for the question, key
their answers, leave a comment, hang up halfway or never answer) and the session's Redis.

Closed orders come in by the authenticated HTTP trigger and by the Redis Stream. Timing:
the citizens key their answers at fixed times after answering; the intro (topic and date)
lasts ~15 s and each question's prompt ~8 s, followed by 6 s of waiting, so the keys land
inside the question they answer (measured on the lab's synthesised prompts).
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from gateway.dialer.jobs import JobStore
from gateway.lab import Lab
from gateway.lab.settings import LAB_DIALER_ENV

pytestmark = pytest.mark.integration

TOKEN = "lab-survey-token"
ENV = {
    **LAB_DIALER_ENV,
    "HOTLINE_DIALER_CALLS_PER_SECOND": "4",
    "HOTLINE_DIALER_MAX_OUTBOUND": "8",
    "HOTLINE_SURVEYS_ENABLED": "1",
    "HOTLINE_SURVEYS_API_TOKEN": TOKEN,
    "HOTLINE_SURVEYS_DELAY": "0",
    "HOTLINE_SURVEYS_SPACING": "0",
    "HOTLINE_SURVEYS_INTERVAL": "0.5",
    "HOTLINE_SURVEYS_WINDOW_START": "00:00",
    "HOTLINE_SURVEYS_WINDOW_END": "24:00",
    "HOTLINE_SURVEYS_HOLIDAYS": "allow",
    "HOTLINE_SURVEYS_MAX_ATTEMPTS": "2",
    "HOTLINE_SURVEYS_BACKOFF": "no_answer=3,busy=3,congestion=3,failed=3,unconfirmed=3",
    "HOTLINE_SURVEYS_CLOSED_STREAM": "hotline:workorders:closed",
}
KEY_NAMES = {"solved": {"1": "solved", "2": "unsolved"},
             "satisfaction": {"1": "satisfied", "2": "basically_satisfied", "3": "dissatisfied"}}


def citizen(q1: str, q2: str | None = None, comment: bool = False, hang_up: bool = False) -> str:
    """A carrier behaviour: answer, key Q1 ~19 s later (inside Q1), Q2 5 s after, speak a comment."""
    steps = ["ring:1", "answer", "wait:19", f"dtmf:{q1}"]
    if hang_up:
        return ",".join(steps + ["wait:2", "hangup"])
    if q2:
        steps += ["wait:5", f"dtmf:{q2}"]
    if comment:
        steps += ["wait:9", "talk:3", "dtmf:#"]
    return ",".join(steps + ["wait:60"])  # the hotline hangs up after its thanks


def client(lab: Lab) -> redis.Redis:
    return redis.Redis.from_url(lab.settings.redis_url, decode_responses=True, socket_timeout=5)


def post(lab: Lab, events: list[dict]) -> list[dict]:
    url = f"http://{lab.settings.http_host}:{lab.settings.http_port}/surveys/closed"
    request = urllib.request.Request(url, data=json.dumps({"orders": events}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        return json.loads(response.read())["results"]


def event(order_id: str, phone: str, category: str = "投诉", topic: str = "路灯", unit: str = "市政局") -> dict:
    return {"order_id": order_id, "phone": phone, "category": category, "topic": topic, "unit": unit,
            "closed_at": time.time() - 60}


def order(lab: Lab, order_id: str) -> dict[str, str]:
    return client(lab).hgetall(f"hotline:surveys:order:{order_id}")


FINAL = ("completed", "partial", "refused", "no_answer", "do_not_call", "rejected", "cancelled")


def wait_finished(lab: Lab, ids: list[str], timeout: float) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        orders = {i: order(lab, i) for i in ids}
        if all(o.get("status") in FINAL for o in orders.values()):
            return orders
        if time.monotonic() > deadline:
            states = {i: o.get("status") for i, o in orders.items()}
            pytest.fail(f"surveys not finished within {timeout:.0f} s: {states}\n{lab.gateway.log_tail(40)}")
        time.sleep(0.5)


def metric(lab: Lab, name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{lab.settings.http_host}:{lab.settings.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()))


def outbox(lab: Lab) -> list[dict]:
    """The results (a comment's transcript arriving later is a separate ``kind=comment`` update)."""
    return [json.loads(fields["data"]) for _, fields in client(lab).xrange("hotline:surveys:outbox")
            if fields.get("kind", "result") == "result"]


@pytest.fixture
def numbers(trunk_up: Lab) -> Iterator:
    scripted: list[str] = []

    def script(number: str, behaviour: str) -> str:
        trunk_up.set_carrier_behaviour(number, behaviour)
        scripted.append(number)
        return number

    yield script
    for number in scripted:
        trunk_up.set_carrier_behaviour(number, None)


@pytest.fixture
def survey_gateway(trunk_up: Lab) -> Iterator:
    saved = dict(os.environ)
    client(trunk_up).flushdb()

    def start(**extra: str) -> Lab:
        trunk_up.gateway.stop(lambda _m: None)
        os.environ.update(ENV)
        os.environ.update(extra)
        trunk_up.gateway.start(lambda _m: None)
        return trunk_up

    yield start
    trunk_up.gateway.stop(lambda _m: None)
    os.environ.clear()
    os.environ.update(saved)


def test_citizens_answering_each_combination_get_their_answers_stored_reopened_and_posted(survey_gateway,
                                                                                          numbers) -> None:
    """Six citizens, one per answer combination, over the trunk: answers stored per order, a comment
    (transcription job with the order id) and a reopen event exactly when unsolved or dissatisfied."""
    lab = survey_gateway()
    combos = [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"), ("2", "2"), ("2", "3")]
    ids = []
    events = []
    for index, (q1, q2) in enumerate(combos):
        needs_comment = q1 == "2" or q2 == "3"
        phone = numbers(f"1390014{index:04d}", citizen(q1, q2, comment=needs_comment))
        ids.append(f"SV-C{index}")
        events.append(event(ids[-1], phone))
    assert [r["result"] for r in post(lab, events)] == ["added"] * 6
    orders = wait_finished(lab, ids, timeout=240)
    reopened = {fields["order_id"]: fields for _, fields in client(lab).xrange("hotline:workorders:reopen")}
    jobs = [json.loads(f["data"]) for _, f in client(lab).xrange("hotline:jobs:transcribe")]
    for order_id, (q1, q2) in zip(ids, combos):
        got = orders[order_id]
        solved, satisfaction = KEY_NAMES["solved"][q1], KEY_NAMES["satisfaction"][q2]
        assert (got["status"], got.get("solved"), got.get("satisfaction")) == ("completed", solved, satisfaction), got
        assert got["solved_via"] == "key" and got["reached"] == "1"
        should_reopen = solved == "unsolved" or satisfaction == "dissatisfied"
        assert (order_id in reopened) == should_reopen, (order_id, reopened.keys())
        commented = [j for j in jobs if j.get("order_id") == order_id]
        assert len(commented) == (1 if should_reopen else 0), commented
        if should_reopen:
            assert reopened[order_id]["comment_recording_id"] == commented[0]["recording_id"]
    assert sorted(o["order_id"] for o in outbox(lab)) == sorted(ids)  # one result each
    assert metric(lab, "hotline_surveys_finished_total", {"status": "completed"}) == 6
    assert metric(lab, "hotline_survey_satisfaction_total", {"category": "complaint", "answer": "dissatisfied"}) == 2
    assert metric(lab, "hotline_survey_solved_total", {"category": "complaint", "answer": "unsolved"}) == 3


def test_hang_up_halfway_at_once_and_never_answering_each_end_once(survey_gateway, numbers) -> None:
    """Halfway (after Q1) → partial with Q1 kept and a reopen (unsolved); hung up during the intro twice →
    refused; never answers → no_answer after the campaign's two attempts. By stream, not HTTP."""
    lab = survey_gateway()
    cases = {
        "SV-H1": (numbers("13900150001", citizen("2", hang_up=True)), "partial"),
        "SV-H2": (numbers("13900150002", "ring:1,answer,wait:4,hangup"), "refused"),
        "SV-H3": (numbers("13900150003", "noanswer:20"), "no_answer"),
    }
    r = client(lab)
    for order_id, (phone, _) in cases.items():
        r.xadd("hotline:workorders:closed", {k: str(v) for k, v in event(order_id, phone, category="求助").items()})
    orders = wait_finished(lab, list(cases), timeout=180)
    for order_id, (_, status) in cases.items():
        assert orders[order_id]["status"] == status, (order_id, orders[order_id])
    assert orders["SV-H1"]["solved"] == "unsolved" and "satisfaction" not in orders["SV-H1"]
    assert [f["order_id"] for _, f in r.xrange("hotline:workorders:reopen")] == ["SV-H1"]
    by_order = {j.payload["orders"][0]: j for j in JobStore(r, owner="test-reader").list("survey")}
    assert by_order["SV-H2"].attempts == 2 and by_order["SV-H3"].attempts == 2
    assert by_order["SV-H1"].attempts == 1
    assert sorted(o["order_id"] for o in outbox(lab)) == sorted(cases)


def test_a_gateway_crash_mid_campaign_loses_and_repeats_nothing(survey_gateway, numbers) -> None:
    """Four surveys in progress when the gateway is killed (SIGKILL, mid-introduction) and started again:
    every order ends exactly once (one result in the outbox), completed on a second attempt, no order is
    asked again after it was answered, and a fifth order added while the gateway was down is not lost."""
    lab = survey_gateway()
    lab.clear_carrier_steps()
    ids = [f"SV-R{i}" for i in range(4)]
    called = [numbers(f"139001600{i:02d}", citizen("1", "1")) for i in range(4)]
    post(lab, [event(order_id, number) for order_id, number in zip(ids, called)])
    deadline = time.monotonic() + 60
    while sum(1 for i in ids if order(lab, i).get("reached") == "1") < 4:
        assert time.monotonic() < deadline, lab.gateway.log_tail(40)
        time.sleep(0.3)
    os.kill(lab.gateway.pid(), signal.SIGKILL)
    client(lab).xadd("hotline:workorders:closed", {k: str(v) for k, v in event(
        "SV-R4", numbers("13900160004", citizen("1", "2"))).items()})
    time.sleep(2)
    lab.gateway.start(lambda _m: None)
    ids.append("SV-R4")
    orders = wait_finished(lab, ids, timeout=240)
    assert {i: o["status"] for i, o in orders.items()} == {i: "completed" for i in ids}
    results = outbox(lab)
    assert sorted(o["order_id"] for o in results) == sorted(ids), results  # none lost, none twice
    reader = JobStore(client(lab), owner="test-reader")
    deadline = time.monotonic() + 60  # the last calls are still saying thanks
    while any(job.state != "done" for job in reader.list("survey")):
        assert time.monotonic() < deadline, [(j.id, j.state) for j in reader.list("survey")]
        time.sleep(0.5)
    for job in reader.list("survey"):
        history = reader.history(job.id)
        finals = [e for e in history if e.get("event") == "final"]
        assert len(finals) == 1 and finals[0]["outcome"] == "connected", history
        assert job.attempts <= 2, history
    # seen from the citizens' side (the carrier): the crash came mid-introduction, before any key, so each
    # citizen keyed their two answers exactly once — nobody was asked again after answering
    steps = lab.carrier_steps()
    answered = {number: steps.get(number, {}).get("dtmf", 0) for number in called + ["13900160004"]}
    assert answered == dict.fromkeys(answered, 2), steps
