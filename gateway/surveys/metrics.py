"""Survey metrics. Labels: category (a small fixed set), answer, status, outcome, source —
never a handling unit (hundreds of them), an order id or a number."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .model import ANSWERS, FINAL_STATUSES

__all__ = ["CATEGORY_KEYS", "SurveyMetrics", "category_key"]

#: the platform's request types (诉求类型) → label values; anything else is "other"
CATEGORY_KEYS = {
    "咨询": "consultation", "consultation": "consultation",
    "求助": "help", "help": "help",
    "投诉": "complaint", "complaint": "complaint",
    "举报": "report", "report": "report",
    "建议": "suggestion", "suggestion": "suggestion",
    "表扬": "praise", "praise": "praise",
}
CATEGORIES = ("consultation", "help", "complaint", "report", "suggestion", "praise", "other")
ATTEMPT_OUTCOMES = ("answered", "unconfirmed", "no_answer", "busy", "congestion", "failed", "rejected_by_policy")


def category_key(category: str) -> str:
    return CATEGORY_KEYS.get(category.strip().lower(), CATEGORY_KEYS.get(category.strip(), "other"))


class SurveyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter("hotline_surveys_received", "Work-order-closed events accepted for a survey",
                                ["source"], registry=registry)
        self.ignored = Counter("hotline_surveys_ignored",
                               "Closed-order events not surveyed (duplicate, invalid, number refused, too old)",
                               ["reason"], registry=registry)
        self.calls = Counter("hotline_surveys_calls_scheduled", "Survey calls handed to the dialer", registry=registry)
        self.combined = Counter("hotline_surveys_orders_combined",
                                "Orders asked about in a call that covers more than one order", registry=registry)
        self.attempted = Counter("hotline_surveys_attempted", "Survey call attempts, by attempt outcome",
                                 ["outcome"], registry=registry)
        self.finished = Counter("hotline_surveys_finished", "Orders whose survey ended, by status "
                                "(completed, partial, refused, no_answer, ...)", ["status"], registry=registry)
        self.solved = Counter("hotline_survey_solved", "Answers to 'was the problem solved?' by category",
                              ["category", "answer"], registry=registry)
        self.satisfaction = Counter("hotline_survey_satisfaction", "Answers to 'how satisfied are you?' by category",
                                    ["category", "answer"], registry=registry)
        self.answers_by = Counter("hotline_survey_answers", "Answers given, by how (key, speech, no_response)",
                                  ["via"], registry=registry)
        self.speech = Counter("hotline_survey_speech", "Spoken-answer recognitions, by result "
                              "(matched, unmatched, unavailable, timeout)", ["result"], registry=registry)
        self.reopened = Counter("hotline_surveys_reopened", "Reopen events emitted (dissatisfied or unsolved)",
                                ["category"], registry=registry)
        self.webhook = Counter("hotline_survey_webhook_deliveries", "Result webhook deliveries, by result",
                               ["result"], registry=registry)
        self.webhook_backlog = Gauge("hotline_survey_webhook_backlog", "Results waiting for the webhook",
                                     registry=registry)
        self.store_failures = Counter("hotline_surveys_store_failures", "Survey store (Redis) operations that failed",
                                      registry=registry)
        # export every series at 0 so rates and ratios exist before the first survey
        for outcome in ATTEMPT_OUTCOMES:
            self.attempted.labels(outcome=outcome)
        for status in FINAL_STATUSES:
            self.finished.labels(status=status)
        for category in CATEGORIES:
            self.reopened.labels(category=category)
            for answer in ANSWERS["solved"]:
                self.solved.labels(category=category, answer=answer)
            for answer in ANSWERS["satisfaction"]:
                self.satisfaction.labels(category=category, answer=answer)
        for source in ("http", "stream"):
            self.received.labels(source=source)
        for via in ("key", "speech", "no_response"):
            self.answers_by.labels(via=via)
        for result in ("matched", "unmatched", "unavailable", "timeout"):
            self.speech.labels(result=result)
        for result in ("delivered", "retry", "dead"):
            self.webhook.labels(result=result)
