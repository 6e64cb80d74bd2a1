"""Survey voice comments through the transcription worker (fake engine, task.Clock, the survey tests' private
Redis): the masked transcript lands on the survey's order — with the result, or as a ``comment`` update of the
results webhook and the reopen stream — never as a work-order draft; acked only once stored, idempotent."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from asr.engine import Transcript, Word
from asr.jobs import JobQueue
from asr.metrics import AsrMetrics
from asr.worker import TranscriptionWorker
from gateway.drafting.normalize import normalize
from gateway.surveys.flow import SurveyFlowBackend

from .test_survey_campaign import NOW, Rig, _survey_redis_server, resolve, survey_redis  # noqa: F401 — fixtures
from .test_survey_results import Platform, poster

JOBS = "t:jobs:transcribe"
#: what the citizen said: a phone number spoken as digits (masked before it is stored)
SPOKEN = "路灯 还是 不 亮 打 幺 三 八 零 零 幺 三 八 零 零 零"


class NoDrafts:
    """The drafter: survey comments must never reach it (only its normaliser is used)."""

    def normalize(self, text):
        return normalize(text)

    def draft(self, job, text, confidence, now):
        raise AssertionError("a survey comment was drafted as a work order")


class Engine:
    def __init__(self, error=None):
        self.paths, self.error = [], error

    def __call__(self, path, should_stop):
        self.paths.append(str(path))
        if self.error is not None:
            raise self.error
        words = tuple(Word(w, i * 0.3, i * 0.3 + 0.3, 0.8) for i, w in enumerate(SPOKEN.split()))
        return Transcript(SPOKEN, words, duration=5.0, elapsed=0.5, sample_rate=16000)


def sync(fn):
    return defer.maybeDeferred(fn)


class Setup:
    def __init__(self, client, *, engine=None, comments=True):
        self.client = client
        self.rig = Rig(client, delay=0)
        self.queue = JobQueue(client, JOBS, "asr", "w1", dead_letter_stream=f"{JOBS}:dead",
                              drafts_stream="t:drafts", draft_key_prefix="t:draft:", draft_ttl=3600)
        self.queue.ensure_group()
        self.registry = CollectorRegistry()
        self.engine = engine or Engine()
        self.worker = TranscriptionWorker(
            self.queue, self.engine, NoDrafts(), clock=self.rig.clock, run_redis=sync, run_decode=sync,
            metrics=AsrMetrics(self.registry), read_block_ms=None,
            comments=self.rig.store if comments else None)
        self.backend = SurveyFlowBackend(clock=self.rig.clock, run_blocking=sync, store=self.rig.store,
                                         metrics=self.rig.metrics, client=client, jobs_stream=JOBS)

    def order_in_call(self, order_id="GD-1", **answers):
        self.rig.accept(order_id)
        self.rig.tick()
        self.rig.answer(order_id, **answers)

    def comment(self, order_id="GD-1", recording_id="1763770875-42-GD-1-comment-20261123100000"):
        """The job exactly as the survey flow's comment node writes it (gateway/flows/survey_nodes.py)."""
        job = {"recording_id": recording_id, "path": f"/var/spool/asterisk/hotline/messages/{recording_id}.wav",
               "call_id": "1763770875.42", "caller": "13800138000", "channel": "Local/x", "flow": "survey",
               "flow_version": "1", "ivr_path": ["intro", "q_solved", "q_satisfaction", "comment"],
               "choices": ["solved=unsolved"], "recorded_at": "2026-11-23T10:00:00+08:00", "ended_by": "silence",
               "end_position": 40000, "kind": "survey_comment", "order_id": order_id}
        resolve(defer.Deferred.fromCoroutine(self.backend.comment(order_id, job)))  # job queued (order: if open)
        return recording_id

    def finish(self, order_id="GD-1"):
        return resolve(defer.Deferred.fromCoroutine(self.rig.campaign.finish(order_id, "completed")))

    def work(self):
        return resolve(defer.Deferred.fromCoroutine(self.worker.run_once()))

    def pending(self):
        return self.queue.pending_count()

    def no_drafts(self):
        return not self.client.keys("t:draft:*") and self.client.xlen("t:drafts") == 0


def test_a_comment_transcribed_after_the_reopen_is_a_comment_update_on_the_reopen_stream_and_webhook(survey_redis):
    """The usual order of things: the order is finished (and reopened) at the end of its questions, seconds
    before the worker has the comment's transcript."""
    s = Setup(survey_redis)
    s.order_in_call(solved="unsolved", satisfaction="dissatisfied")
    recording_id = s.comment()
    assert s.finish() == "finished"
    assert s.work() == "done"
    assert s.engine.paths == [f"/var/spool/asterisk/hotline/messages/{recording_id}.wav"]
    assert s.no_drafts() and s.pending() == 0
    order = s.rig.store.order("GD-1")
    assert order["comment"] == recording_id and order["comment_confidence"] == "0.800"
    assert order["comment_text"].startswith("路灯还是不亮打138") and "13800138000" not in order["comment_text"]
    [(_, reopen), (_, update)] = survey_redis.xrange("t:workorders:reopen")
    assert reopen["event"] == "reopen" and reopen["comment_text"] == ""
    assert update == {"event": "comment", "order_id": "GD-1", "reopened": "unsolved+dissatisfied",
                      "comment_recording_id": recording_id, "comment_text": order["comment_text"],
                      "comment_confidence": "0.800", "transcribed_at": repr(NOW)}
    platform = Platform([200, 200])
    p, _ = poster(survey_redis, platform, task.Clock())
    p.poll()
    [(_, result_headers, result), (_, comment_headers, comment)] = platform.posts
    assert result_headers["Idempotency-Key"] == "survey-GD-1" and result["event"] == "result"
    assert result["comment_recording_id"] == recording_id
    assert comment_headers["Idempotency-Key"] == "survey-GD-1-comment"
    assert comment == {"event": "comment", "order_id": "GD-1", "status": "completed",
                       "reopened": "unsolved+dissatisfied", "comment_recording_id": recording_id,
                       "comment_text": order["comment_text"], "comment_confidence": 0.8,
                       "transcribed_at": repr(NOW)}
    assert "13800138000" not in json.dumps(platform.posts, ensure_ascii=False)


def test_a_comment_transcribed_before_the_order_is_finished_goes_out_with_the_result_and_the_reopen(survey_redis):
    s = Setup(survey_redis)
    s.order_in_call(solved="unsolved", satisfaction="satisfied")
    s.comment()
    assert s.work() == "done"
    assert s.finish() == "finished"
    [(_, reopen)] = survey_redis.xrange("t:workorders:reopen")
    assert reopen["event"] == "reopen" and reopen["comment_text"].startswith("路灯还是不亮")
    assert reopen["comment_confidence"] == "0.800"
    [(_, entry)] = survey_redis.xrange("t:surveys:outbox")
    assert "kind" not in entry  # one result, no separate update
    platform = Platform([200])
    p, _ = poster(survey_redis, platform, task.Clock())
    p.poll()
    [(_, _, body)] = platform.posts
    assert body["comment_text"] == reopen["comment_text"] and body["comment_confidence"] == 0.8
    assert s.no_drafts()


def test_a_satisfied_citizens_comment_updates_the_webhook_only(survey_redis):
    """No reopen, no reopen-stream entry; the result's update still carries the transcript."""
    s = Setup(survey_redis)
    s.order_in_call(solved="solved", satisfaction="basically_satisfied")
    s.comment()
    s.finish()
    assert s.work() == "done"
    assert survey_redis.xlen("t:workorders:reopen") == 0
    kinds = [fields.get("kind", "result") for _, fields in survey_redis.xrange("t:surveys:outbox")]
    assert kinds == ["result", "comment"]


def test_the_same_comment_delivered_twice_is_stored_once_and_acked(survey_redis):
    """A duplicate job (the flow retried its write) and a store step repeated are no-ops, acked."""
    s = Setup(survey_redis)
    s.order_in_call(solved="unsolved", satisfaction="dissatisfied")
    recording_id = s.comment()
    s.finish()
    s.comment()  # the same job once more
    assert s.work() == "done"
    assert s.work() == "duplicate"
    assert len(s.engine.paths) == 1 and s.pending() == 0
    assert s.rig.store.attach_comment("GD-1", recording_id, "别的", 0.5, NOW + 9) == ("duplicate", "completed")
    assert s.rig.store.order("GD-1")["comment_text"].startswith("路灯")
    assert survey_redis.xlen("t:workorders:reopen") == 2 and survey_redis.xlen("t:surveys:outbox") == 2
    assert s.registry.get_sample_value("hotline_asr_jobs_total", {"outcome": "duplicate"}) == 1


def test_a_comment_whose_transcription_fails_stays_pending_and_stores_nothing(survey_redis):
    s = Setup(survey_redis, engine=Engine(FileNotFoundError("no such recording")))
    s.order_in_call(solved="unsolved", satisfaction="dissatisfied")
    s.comment()
    s.finish()
    assert s.work() == "failed"
    assert s.pending() == 1  # not acked: retried after reclaim_idle_seconds
    assert "comment_text" not in s.rig.store.order("GD-1")
    assert survey_redis.xlen("t:workorders:reopen") == 1 and survey_redis.xlen("t:surveys:outbox") == 1
    assert s.no_drafts()


def test_a_comment_of_an_unknown_order_is_dead_lettered_not_drafted(survey_redis):
    s = Setup(survey_redis)
    s.comment(order_id="GD-404")  # the order's record is gone (expired)
    assert s.work() == "dead_lettered"
    [(_, dead)] = survey_redis.xrange(f"{JOBS}:dead")
    assert "unknown" in dead["reason"] and "GD-404" in dead["reason"]
    assert s.pending() == 0 and s.no_drafts()


def test_a_worker_without_the_survey_store_fails_the_comment_instead_of_drafting_it(survey_redis):
    s = Setup(survey_redis, comments=False)
    s.order_in_call(solved="unsolved", satisfaction="dissatisfied")
    s.comment()
    assert s.work() == "failed"
    assert s.pending() == 1 and s.no_drafts()
    assert "no survey store" in survey_redis.hget(f"{JOBS}:errors", survey_redis.xrange(JOBS)[0][0])
