"""Webhook sink (retries with backoff on a task.Clock, headers) and JSON-lines sink; no network."""
import json

import pytest
from twisted.internet import defer, task

from asr.sinks import JsonlSink, SinkError, WebhookSink, backoff_delay


class FakeResponse:
    def __init__(self, code):
        self.code = code

    def content(self):
        return defer.succeed(b"")


class FakePost:
    """Records calls; answers with the queued status codes (an Exception instance = connection failure)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, url, data, headers, timeout):
        self.calls.append((url, data, headers, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(FakeResponse(answer))


DRAFT = {"draft_id": "D-1-2", "recording_id": "1-2", "transcript": {"text": "路灯坏了"}}


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, 1.0, 10.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_headers_carry_the_idempotency_key_and_bearer_token():
    post = FakePost([200])
    sink = WebhookSink("https://orders.example/drafts", "t0k", task.Clock(), post=post)
    d = defer.ensureDeferred(sink.deliver(DRAFT))
    assert d.called
    url, body, headers, timeout = post.calls[0]
    assert headers[b"Idempotency-Key"] == [b"D-1-2"]
    assert headers[b"Authorization"] == [b"Bearer t0k"]
    assert json.loads(body.decode())["transcript"]["text"] == "路灯坏了"


def test_no_token_means_no_authorization_header():
    post = FakePost([204])
    defer.ensureDeferred(WebhookSink("http://x/", "", task.Clock(), post=post).deliver(DRAFT))
    assert b"Authorization" not in post.calls[0][2]


def test_failures_are_retried_after_growing_delays_then_succeed():
    clock = task.Clock()
    post = FakePost([ConnectionRefusedError(), 503, 200])
    sink = WebhookSink("http://x/", "", clock, post=post, retries=5, initial_backoff=1.0)
    d = defer.ensureDeferred(sink.deliver(DRAFT))
    assert len(post.calls) == 1 and not d.called
    clock.advance(0.99)
    assert len(post.calls) == 1
    clock.advance(0.01)
    assert len(post.calls) == 2
    clock.advance(1.99)
    assert len(post.calls) == 2
    clock.advance(0.01)
    assert len(post.calls) == 3 and d.called and d.result is None


def test_gives_up_after_the_retries_with_a_sink_error():
    clock = task.Clock()
    sink = WebhookSink("http://x/", "", clock, post=FakePost([500, 500, 500]), retries=3)
    d = defer.ensureDeferred(sink.deliver(DRAFT))
    clock.pump([1, 2, 4])
    failure = []
    d.addErrback(failure.append)
    assert failure and failure[0].check(SinkError)
    assert "HTTP 500" in failure[0].getErrorMessage()


def test_jsonl_appends_one_object_per_line(tmp_path):
    sink = JsonlSink(str(tmp_path / "sub" / "drafts.jsonl"))
    sink.write(DRAFT)
    sink.write({**DRAFT, "draft_id": "D-2"})
    lines = (tmp_path / "sub" / "drafts.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["draft_id"] for line in lines] == ["D-1-2", "D-2"]
    assert "路灯坏了" in lines[0]  # UTF-8, not \u escapes
