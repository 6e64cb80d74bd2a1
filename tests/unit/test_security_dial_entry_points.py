"""Toll fraud: a premium, international, short-code or emergency number handed in through ANY entry
point (callback API, abandoned/lost call, safety-net stream, IVR request, survey POST and stream, the
console, a job written straight into Redis) is refused and never reaches an AMI Originate.

One private Redis (the dialer tests' port), the real job and survey stores, the real dialer loop with
task.Clock and a recording fake AMI; a valid mobile number through the same rig is dialled (control).
"""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer

from gateway.app import main as gateway_main
from gateway.callbacks.api import CallbacksResource
from gateway.callbacks.metrics import CallbackMetrics
from gateway.callbacks.service import CallbackService
from gateway.callbacks.sources import ivr_request_handler, missed_call_handler
from gateway.dialer.policy import NumberPolicy
from gateway.monitor.records import AbandonedCall
from gateway.surveys.campaign import CampaignSettings, SurveyCampaign
from gateway.surveys.metrics import SurveyMetrics
from gateway.surveys.rules import SurveyRules
from gateway.surveys.store import SurveyStore
from gateway.surveys.triggers import SurveysResource, closed_event_handler

from .dialer_redis import PORT, _redis_server, dialer_redis  # noqa: F401 — fixtures
from .test_callback_api import call as http_call
from .test_dialer_service import START, Rig

TOKEN = "entry-point-token"
#: what must never be dialled: premium-looking, international (00 / +), short service codes, emergency
#: numbers, 400 shared-cost and 800 toll-free (not allowed by default)
REFUSED = ("16895551234", "00442079460958", "+12125551234", "0012125551234", "12345", "95598", "10086",
           "110", "119", "120", "4008001234", "8008101234")
GOOD = "13812345678"


class Gate:
    """Every entry point wired to one store and one dialer, as gateway/app.py wires them."""

    def __init__(self, client) -> None:
        self.rig = Rig(client, policy=NumberPolicy())
        clock = self.rig.clock
        run = defer.maybeDeferred
        self.callbacks = CallbackService(clock=clock, run_blocking=run, store=self.rig.store, policy=NumberPolicy(),
                                         metrics=CallbackMetrics(CollectorRegistry()))
        self.campaign = SurveyCampaign(
            clock=clock, run_blocking=run, store=SurveyStore(client, key_prefix="t", reopen_stream="t:reopen"),
            jobs=self.rig.store, policy=NumberPolicy(), metrics=SurveyMetrics(CollectorRegistry()),
            rules=SurveyRules(delay=0, combine_ahead=0, spacing=0, expiry=72 * 3600),
            settings=CampaignSettings(caller_id="02112345"),
        )
        self.callback_api = CallbacksResource(self.callbacks, TOKEN)
        self.survey_api = SurveysResource(self.campaign, TOKEN)

    def submit_everywhere(self, number: str, tag: str) -> list[object]:
        """The number through every entry point; the results each gave."""
        results = []
        results.append(http_call(self.callback_api, "POST", body={"number": number}, token=TOKEN)[0])
        closed = START - 3600
        event = {"order_id": f"GD-{tag}", "phone": number, "category": "投诉", "topic": "路灯", "unit": "市政局",
                 "closed_at": closed}
        code, body = http_call(self.survey_api, "POST", ("closed",), token=TOKEN, body=event)
        results.append(body["results"][0]["result"] if code == 202 else code)
        call = AbandonedCall(f"ab-{tag}", "12345", START - 120, START - 60, 60.0, 1, 1, False, caller=number)
        lost = AbandonedCall(f"lost-{tag}", "12345", START - 120, START - 60, 60.0, 1, 1, False, caller=number)
        results.append(_resolve(self.callbacks.on_abandon(call)))
        results.append(_resolve(self.callbacks.on_lost(lost)))
        results.append(_resolve(defer.Deferred.fromCoroutine(missed_call_handler(self.callbacks)(
            f"{int(START * 1000)}-1", {"call_id": f"sn-{tag}", "caller": number, "missed_at": str(START - 60)}))))
        results.append(_resolve(defer.Deferred.fromCoroutine(ivr_request_handler(self.callbacks)(
            f"{int(START * 1000)}-2", {"call_id": f"ivr-{tag}", "data": f'{{"caller": "{number}"}}'}))))
        results.append(_resolve(defer.Deferred.fromCoroutine(closed_event_handler(self.campaign)(
            f"{int(START * 1000)}-3", {**{k: str(v) for k, v in event.items()}, "order_id": f"GS-{tag}"}))))
        return results

    def dial_everything(self) -> None:
        """Let the survey campaign turn accepted orders into jobs, then run the dialer a while."""
        for _ in range(5):
            _resolve(self.campaign.tick())
            self.rig.tick()
            self.rig.clock.advance(2)


def _resolve(d):
    box = []
    d.addBoth(box.append)
    assert box, "the deferred did not fire"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


def _dialled(rig) -> list[str]:
    return [fields["Channel"] for fields, _, _ in rig.ami.originates()]


@pytest.mark.parametrize("number", REFUSED)
def test_a_number_outside_the_policy_is_refused_by_every_entry_point_and_never_originated(dialer_redis, number):
    gate = Gate(dialer_redis)
    results = gate.submit_everywhere(number, "x")
    # API 422, survey POST and stream ignored:policy, the four callback sources ignored:<reason>
    assert results[0] == 422
    assert results[1] == "ignored:policy" and results[6] == "ignored:policy"
    assert all(str(r).startswith("ignored:") for r in results[2:6]), results
    assert gate.rig.store.list("callback", limit=100) == [] and gate.rig.store.list("survey", limit=100) == []
    gate.dial_everything()
    assert gate.rig.ami.sent == []


def test_the_same_entry_points_do_dial_a_valid_mobile_number(dialer_redis):
    """The control: without it the refusal test above could pass on a rig that never dials."""
    gate = Gate(dialer_redis)
    results = gate.submit_everywhere(GOOD, "ok")
    assert results[0] == 201 and results[1] == "added"
    gate.dial_everything()
    assert f"Local/{GOOD}@hotline-callback-out/n" in _dialled(gate.rig)


@pytest.mark.parametrize("number", ("16895551234", "0012125551234", "110", "4008001234"))
def test_a_job_written_straight_into_redis_is_refused_at_dial_time(dialer_redis, number):
    """A job that bypassed every entry point (an old import, a hand edit) still never reaches Originate."""
    gate = Gate(dialer_redis)
    gate.rig.add("cb-direct", number)
    gate.dial_everything()
    assert gate.rig.ami.sent == []
    assert gate.rig.store.get("cb-direct").outcome == "rejected"


@pytest.mark.parametrize("number", ("110", "0012125551234", "16895551234"))
def test_the_console_refuses_to_add_a_number_outside_the_policy(dialer_redis, monkeypatch, capsys, number):
    monkeypatch.setenv("HOTLINE_REDIS_URL", f"redis://127.0.0.1:{PORT}/0")
    monkeypatch.setenv("HOTLINE_REDIS_KEY_PREFIX", "t")
    monkeypatch.delenv("HOTLINE_CONFIG", raising=False)
    assert gateway_main(["callbacks", "add", number]) == 1
    assert "refused" in capsys.readouterr().err
    assert dialer_redis.keys("*") == []
