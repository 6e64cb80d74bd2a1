"""The dialer hook the survey campaign uses: survey mode context, order data as channel variables,
the survey's own record kind, and a campaign's own windows and retry policy (task.Clock, private Redis)."""
from __future__ import annotations

import datetime as dt

from gateway.dialer.jobs import NewJob
from gateway.dialer.originate import originate_fields, parse_record, safe_variables
from gateway.dialer.retry import RetryPolicy
from gateway.dialer.windows import CallWindows

from .dialer_redis import _redis_server, dialer_redis  # noqa: F401 — fixtures
from .test_dialer_service import START, TZ, Rig, msg


def survey_job(rig, job_id="sv-1", number="13800138000", channel_vars=None):
    rig.store.add(NewJob(job_id, "survey", number, "+86" + number, START - 60, START - 60, START + 86400,
                         caller_id="02112345", mode="survey",
                         payload={"channel_vars": channel_vars or {"HOTLINE_SV_ORDER_1": "A1"}}), rig.clock.seconds())


def test_survey_mode_dials_through_the_callback_trunk_path_and_answers_into_the_survey_context():
    fields = originate_fields(attempt_id="hlcb-1", number="13800138000", mode="survey", queue="12345",
                              caller_id="02112345", priority=0, ring_timeout=30,
                              variables={"HOTLINE_SV_ORDER_1": "GD2026-001", "HOTLINE_SV_TOPIC_1": "streetlight"})
    as_dict = dict(f for f in fields if f[0] != "Variable")
    variables = [v for k, v in fields if k == "Variable"]
    assert as_dict["Channel"].startswith("Local/13800138000@hotline-callback-out/n")
    assert as_dict["Context"] == "hotline-survey"
    assert "HOTLINE_SV_ORDER_1=GD2026-001" in variables and "HOTLINE_SV_TOPIC_1=streetlight" in variables


def test_job_variables_cannot_smuggle_other_variables_or_separators_into_the_originate():
    assert safe_variables({"HOTLINE_SV_X": "a,b=c\r\nAction: Logoff", "CHANNEL": "x", "hotline_lower": "y"}) == [
        ("HOTLINE_SV_X", "abcAction:Logoff")]


def test_the_survey_record_counts_an_answered_question_without_a_minimum_talk_time():
    assert parse_record("survey,1,4", min_talk=10).outcome == "answered"
    assert parse_record("survey,0,40", min_talk=10).outcome == "unconfirmed"
    assert parse_record("dial,NOANSWER,19", min_talk=10).outcome == "no_answer"


def test_a_survey_job_originates_with_its_order_data_as_channel_variables(dialer_redis):
    rig = Rig(dialer_redis)
    survey_job(rig, channel_vars={"HOTLINE_SV_ORDER_1": "GD2026-001", "HOTLINE_SV_DATE_1": "20261120"})
    rig.tick()
    [(fields, variables, _)] = rig.ami.originates()
    assert fields["Context"] == "hotline-survey"
    assert "HOTLINE_SV_ORDER_1=GD2026-001" in variables and "HOTLINE_SV_DATE_1=20261120" in variables


def test_outside_the_campaigns_own_window_a_job_waits_for_its_opening_without_an_attempt(dialer_redis):
    rig = Rig(dialer_redis)  # dialer window 08:00-21:00 is open at START (10:00)
    rig.dialer.configure_campaign("survey", windows=CallWindows("14:00", "18:00", holidays="allow"))
    survey_job(rig)
    rig.tick()
    assert rig.ami.originates() == []
    job = rig.store.get("sv-1")
    assert job.state == "pending" and job.attempts == 0
    assert job.due_at == dt.datetime(2026, 11, 23, 14, 0, tzinfo=TZ).timestamp()


def test_a_campaigns_own_retry_policy_decides_its_attempts(dialer_redis):
    rig = Rig(dialer_redis)  # the dialer's own policy allows 3 attempts
    rig.dialer.configure_campaign("survey", retry=RetryPolicy(max_attempts=1))
    survey_job(rig)
    rig.tick()
    action_id = rig.ami.queue()
    rig.dialer.on_originate_response(msg(Event="OriginateResponse", ActionID=action_id, Response="Failure",
                                         Reason="3"))
    rig.clock.advance(2)  # the dialer waits briefly for the trunk leg's record before using the reason
    assert rig.finals == [("sv-1", "exhausted")]
