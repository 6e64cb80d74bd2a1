"""The survey campaign on the real dialer (task.Clock, a scripted AMI, private Redis): a closed order
becomes an Originate into [hotline-survey] with the order data; the dialplan's survey record settles
it; the do-not-call list, the campaign's own window and attempts apply; the report CLI reads the day."""
from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry
from twisted.internet import defer

from gateway.dialer.pacestore import PaceStore
from gateway.dialer.pacing import Pacer, TrunkLimit
from gateway.dialer.retry import RetryPolicy
from gateway.dialer.service import Dialer, DialerMetrics, DialerSettings
from gateway.dialer.windows import CallWindows
from gateway.surveys.campaign import SURVEY_CAMPAIGN
from gateway.surveys.report import main as report_main

from .test_dialer_service import FakeAmi, msg
from .test_survey_campaign import NOW, TZ, Rig, PORT as SURVEY_REDIS_PORT, _survey_redis_server, survey_redis  # noqa: F401 — fixtures


class Path(Rig):
    def __init__(self, client, survey_window=("00:00", "24:00"), max_attempts=2, **rules):
        super().__init__(client, delay=0, **rules)
        self.ami = FakeAmi()
        self.dialer = Dialer(
            clock=self.clock, run_blocking=lambda fn: defer.maybeDeferred(fn), store=self.jobs, ami=self.ami,
            pacer=Pacer({"carrier": TrunkLimit(30, 10, 5, 100.0)}),
            pace_store=PaceStore(self.jobs.client, key_prefix="t"),
            windows=CallWindows("08:00", "21:00", holidays="allow"), retry=RetryPolicy(max_attempts=5),
            metrics=DialerMetrics(CollectorRegistry()), settings=DialerSettings(min_talk=10, lease=60),
        )
        self.dialer.configure_campaign(SURVEY_CAMPAIGN, retry=RetryPolicy(max_attempts=max_attempts),
                                       windows=CallWindows(*survey_window, holidays="allow"))
        self.dialer.add_attempt_listener(self.campaign.on_attempt)
        self.dialer.add_final_listener(self.campaign.on_final)

    def step(self):
        self.tick()
        self.dialer._next_housekeeping = 0.0
        self.dialer.tick()

    def originate(self, index=-1):
        fields, variables, _ = self.ami.originates()[index]
        return fields, variables, self.ami.queue(index)

    def record(self, fields, value):
        attempt = fields["ChannelId"]
        self.dialer.on_user_event(msg(Event="UserEvent", UserEvent="HotlineCallback", AttemptId=attempt,
                                      Step="done", Data=value))


def test_a_closed_order_is_called_into_the_survey_context_and_its_answered_call_finishes_it(survey_redis):
    path = Path(survey_redis)
    path.accept("GD-1")
    path.step()
    fields, variables, action_id = path.originate()
    assert fields["Context"] == "hotline-survey" and fields["Channel"].startswith("Local/13800138000@")
    assert fields["CallerID"] == "12345 <02112345>"
    assert "HOTLINE_SV_ORDER_1=GD-1" in variables and "HOTLINE_SV_TOPIC_1=streetlight" in variables
    path.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Success"))
    path.answer("GD-1", solved="solved")  # what the flow stored before the citizen hung up
    path.record(fields, "survey,1,31")
    assert path.store.order("GD-1")["status"] == "partial"
    assert path.sample("hotline_surveys_attempted_total", outcome="answered") == 1


def test_silence_is_retried_by_the_campaigns_policy_then_ends_as_refused(survey_redis):
    path = Path(survey_redis, max_attempts=2)
    path.accept("GD-1")
    path.step()
    fields, _, _ = path.originate()
    path.store.update("GD-1", NOW, {"reached": "1"})
    path.record(fields, "survey,0,55")  # answered, nothing keyed or said
    assert path.store.order("GD-1")["status"] == "calling"
    path.clock.advance(7200)  # the dialer's default backoff for unconfirmed is 1800 s, doubled
    path.step()
    fields, _, _ = path.originate()
    path.record(fields, "survey,0,55")
    assert path.store.order("GD-1")["status"] == "refused"
    assert len(path.ami.originates()) == 2


def test_a_number_on_the_do_not_call_list_is_never_dialled_and_its_order_says_so(survey_redis):
    path = Path(survey_redis)
    path.jobs.add_dnc("+8613800138000")
    path.accept("GD-1")
    path.step()
    assert path.ami.originates() == []
    assert path.store.order("GD-1")["status"] == "do_not_call"


def test_outside_the_survey_window_nobody_is_called_until_it_opens(survey_redis):
    path = Path(survey_redis, survey_window=("14:00", "18:00"))  # NOW is 10:00
    path.accept("GD-1")
    path.step()
    assert path.ami.originates() == []
    path.clock.advance(4 * 3600)
    path.step()
    assert len(path.ami.originates()) == 1


def test_the_report_command_prints_the_day_from_redis(survey_redis, monkeypatch, capsys):
    path = Path(survey_redis)
    path.accept("GD-1")
    path.step()
    path.answer("GD-1", solved="solved", satisfaction="dissatisfied")
    defer.Deferred.fromCoroutine(path.campaign.finish("GD-1", "completed"))
    monkeypatch.setenv("HOTLINE_REDIS_URL", f"redis://127.0.0.1:{SURVEY_REDIS_PORT}/0")
    monkeypatch.setenv("HOTLINE_REDIS_KEY_PREFIX", "t")
    day = dt.datetime.fromtimestamp(NOW, TZ).date().isoformat()
    assert report_main(["report", "--day", day, "--csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "all,all,1,1,0,0,0,0,1,0,100.0%,0,0,1,0.0%,1"
    assert "category,投诉,1,1" in out[2] and "unit,市政局,1,1" in out[3]
    assert report_main(["report", "--day", "23-11-2026"]) == 2
