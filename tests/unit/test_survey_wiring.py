"""The composition root wires the survey campaign onto the dialer: its own windows and retry policy,
listeners, the /surveys API, the survey flow's backend — and leaves it all off unless enabled."""
from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from gateway.app import build_gateway
from gateway.config import load_config

from .test_survey_campaign import PORT as SURVEY_REDIS_PORT

ENV = {
    "HOTLINE_AMI_SECRET": "x", "HOTLINE_DIALER_ENABLED": "1", "HOTLINE_SURVEYS_ENABLED": "1",
    "HOTLINE_SURVEYS_API_TOKEN": "t", "HOTLINE_SURVEYS_MAX_ATTEMPTS": "2", "HOTLINE_SURVEYS_WINDOW_START": "10:00",
    "HOTLINE_REDIS_URL": f"redis://127.0.0.1:{SURVEY_REDIS_PORT}/0",
}


def test_surveys_enabled_are_a_campaign_of_the_dialer_with_their_own_policy_and_api():
    gateway = build_gateway(MemoryReactorClock(), load_config(environ=ENV))
    assert gateway.surveys is not None
    assert gateway.dialer._campaign_retry["survey"].max_attempts == 2
    assert gateway.dialer._campaign_windows["survey"].start.hour == 10
    assert gateway.surveys.on_final in gateway.dialer._final_listeners
    runner = gateway.flows._runners["survey"]
    assert runner.survey is not None and runner.survey.finish == gateway.surveys.finish
    assert runner.survey.decline_orders == gateway.surveys.decline
    assert gateway.surveys.settings.topics["路灯"] == "streetlight"


def test_surveys_are_off_by_default():
    env = {k: v for k, v in ENV.items() if k != "HOTLINE_SURVEYS_ENABLED"}
    gateway = build_gateway(MemoryReactorClock(), load_config(environ=env))
    assert gateway.surveys is None and "survey" not in gateway.dialer._campaign_retry
    assert gateway.flows._runners["survey"].survey is None
