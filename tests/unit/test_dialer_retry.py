"""Retries with backoff per outcome, attempt caps and expiry."""
from __future__ import annotations

import pytest

from gateway.dialer.retry import RetryPolicy

NOW = 1_000_000.0
FAR = NOW + 10 * 86400


def test_a_confirmed_answer_ends_the_job_as_connected():
    assert RetryPolicy().after("answered", 1, NOW, FAR).final == "connected"


def test_policy_rejection_is_final_and_never_retried():
    assert RetryPolicy().after("rejected_by_policy", 1, NOW, FAR).final == "rejected"


@pytest.mark.parametrize("outcome, delay", [("busy", 300), ("no_answer", 600), ("congestion", 120),
                                            ("failed", 300), ("unconfirmed", 1800)])
def test_each_outcome_has_its_own_first_retry_interval(outcome, delay):
    assert RetryPolicy().after(outcome, 1, NOW, FAR).retry_at == NOW + delay


def test_backoff_doubles_per_further_attempt_and_is_capped():
    policy = RetryPolicy(max_attempts=10)
    assert policy.after("busy", 2, NOW, FAR).retry_at == NOW + 600
    assert policy.after("busy", 3, NOW, FAR).retry_at == NOW + 1200
    assert policy.delay("busy", 9) == policy.max_delay


def test_after_the_last_allowed_attempt_the_job_is_exhausted():
    assert RetryPolicy(max_attempts=3).after("no_answer", 3, NOW, FAR).final == "exhausted"


def test_a_retry_that_would_fall_after_the_deadline_expires_the_job():
    assert RetryPolicy().after("no_answer", 1, NOW, NOW + 599).final == "expired"


def test_backoff_text_overrides_the_defaults_and_refuses_unknown_outcomes():
    policy = RetryPolicy.from_text("busy=60, no_answer=90", max_attempts=5)
    assert policy.delay("busy", 1) == 60 and policy.delay("no_answer", 1) == 90 and policy.delay("failed", 1) == 300
    with pytest.raises(ValueError):
        RetryPolicy.from_text("voicemail=10")
