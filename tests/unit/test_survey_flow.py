"""The survey flow (ivr_flows/survey.yaml) over a scripted call: every answer combination, retries
then no response, hang-ups keeping what was answered, comments as transcription jobs, spoken
answers with a grammar, and a survey call that never breaks when its backend or ASR fails."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from twisted.internet import defer, task

from gateway.agi.session import CallerHungUp, Handoff, RecordResult
from gateway.flows.engine import FlowRunner
from gateway.flows.loader import FlowError, build_flow, load_flow
from gateway.flows.services import NullServices
from gateway.surveys.speech import match_answer

FLOW = Path(__file__).resolve().parents[2] / "ivr_flows" / "survey.yaml"
ORDERS = {"HOTLINE_SV_COUNT": "1", "HOTLINE_SV_ORDER_1": "GD-1", "HOTLINE_SV_TOPIC_1": "streetlight",
          "HOTLINE_SV_DATE_1": "20261120"}


class Call:
    """The answered citizen: ``keys`` pressed in order (None = nothing), ``speech`` per recording."""

    def __init__(self, keys=(), variables=None, hang_up_after=None, speech=()):
        from gateway.agi.codec import AgiEnvironment

        self.keys = list(keys)
        self.speech = list(speech)
        self.channel = dict(ORDERS if variables is None else variables)
        self.path, self.actions, self.vars, self.handoff = [], [], {}, None
        self.call_id = "1700000000.7"
        self.caller = ""
        self.environment = AgiEnvironment({"agi_channel": "Local/13800138000@hotline-callback-out-1;1"})
        self.hang_up_after = hang_up_after

    def _act(self, *action):
        if self.hang_up_after is not None and len(self.actions) >= self.hang_up_after:
            raise CallerHungUp("citizen hung up")
        self.actions.append(action)

    def _key(self):
        return self.keys.pop(0) if self.keys else None

    def step(self, text):
        self.path.append(text)

    async def play(self, prompt, escape_digits=""):
        self._act("play", prompt)
        if escape_digits and self.keys and self.keys[0] and self.keys[0][-1:] in escape_digits \
                and not self.keys[0].startswith("rec:"):
            return self._key()
        return None

    async def wait_for_digit(self, timeout_ms):
        self._act("wait")
        return self._key()

    async def record(self, path, fmt="wav", escape_digits="#", timeout_ms=0, silence_s=0, beep=True):
        self._act("record", path)
        if escape_digits != "#" and self.keys and self.keys[0] and self.keys[0].startswith("rec:"):
            return RecordResult(path, "dtmf", self._key()[4:], 800)  # keyed while the answer was recorded
        if escape_digits != "#" and self.keys and self.keys[0] is None:
            self.keys.pop(0)
        return RecordResult(path, "silence", None, 16000)

    async def command(self, name, *args, **kw):
        self._act(name.lower(), *args)

    async def get_variable(self, name):
        return self.channel.get(name)

    async def set_variable(self, name, value):
        self.channel[name] = str(value)

    async def hangup(self):
        self._act("hangup")
        self.handoff = Handoff("hangup", "")

    def played(self):
        return [a[1] for a in self.actions if a[0] == "play"]


class Backend:
    def __init__(self, finished=(), down=False, speech=None, language="ko"):
        self.answers, self.reached, self.comments, self.completed, self.declined = [], [], [], [], []
        self.finished = set(finished)
        self.down = down
        self.speech = speech
        self.speech_language = language

    @property
    def speech_enabled(self):
        return self.speech is not None

    def _check(self):
        if self.down:
            raise ConnectionError("redis down")

    async def open_orders(self, ids):
        self._check()
        return {i for i in ids if i not in self.finished}

    async def reached(self, order_id):
        self._check()
        self.reached.append(order_id)

    async def answer(self, order_id, question, answer, via):
        self._check()
        self.answers.append((order_id, question, answer, via))

    async def comment(self, order_id, job):
        self._check()
        self.comments.append((order_id, job))

    async def complete(self, order_id):
        self._check()
        self.completed.append(order_id)
        return "finished"

    async def decline(self, order_ids):
        self._check()
        self.declined.append(list(order_ids))
        return len(order_ids)

    async def recognise(self, path, words):
        if self.speech == "broken":
            raise RuntimeError("ASR down")
        text = self.speech.pop(0) if self.speech else ""
        return match_answer(text, words)


def survey(call, backend=None):
    services = NullServices(task.Clock())
    services._clock.advance(dt.datetime(2026, 11, 23, 10, 0).timestamp())
    runner = FlowRunner(load_flow(FLOW), services=services, survey=backend)
    d = defer.Deferred.fromCoroutine(runner.run(call))
    failures = []
    d.addErrback(failures.append)
    if failures:
        failures[0].raiseException()
    return call


def test_the_survey_flow_file_is_valid():
    flow = load_flow(FLOW)
    assert flow.name == "survey" and flow.nodes["q_solved"].type == "survey_question"


def test_the_introduction_names_the_orders_topic_and_report_date():
    call = survey(Call(keys=["1", "1"]), Backend())
    assert call.actions[:7] == [("play", "sv_intro"), ("play", "topic_streetlight"), ("say number", 11, ""),
                                ("play", "date_month"), ("say number", 20, ""), ("play", "date_day"),
                                ("play", "sv_intro_after")]


@pytest.mark.parametrize("keys,solved,satisfaction,comment", [
    (["1", "1"], "solved", "satisfied", False),
    (["1", "2"], "solved", "basically_satisfied", False),
    (["1", "3"], "solved", "dissatisfied", True),
    (["2", "1"], "unsolved", "satisfied", True),
    (["2", "2"], "unsolved", "basically_satisfied", True),
    (["2", "3"], "unsolved", "dissatisfied", True),
])
def test_every_answer_combination_is_stored_and_only_unsolved_or_dissatisfied_asks_for_a_comment(
        keys, solved, satisfaction, comment):
    backend = Backend()
    call = survey(Call(keys=keys), backend)
    assert backend.answers == [("GD-1", "solved", solved, "key"), ("GD-1", "satisfaction", satisfaction, "key")]
    assert ("play", "sv_comment") in call.actions if comment else ("play", "sv_comment") not in call.actions
    assert [c[0] for c in backend.comments] == (["GD-1"] if comment else [])
    assert backend.completed == ["GD-1"]
    assert call.channel["HOTLINE_SV_ANSWERED"] == "1"
    assert call.played()[-1] == "sv_thanks" and call.handoff.kind == "hangup"


def test_the_comment_becomes_a_transcription_job_with_the_order_id():
    backend = Backend()
    survey(Call(keys=["2", "3"]), backend)
    [(_, job)] = backend.comments
    assert job["order_id"] == "GD-1" and job["kind"] == "survey_comment"
    assert job["path"].startswith("/var/spool/asterisk/hotline/messages/1700000000-7-GD-1-comment-") and job["path"].endswith(".wav")
    assert job["choices"] == ["solved=unsolved", "satisfaction=dissatisfied"]


def test_wrong_or_missing_keys_are_asked_again_then_recorded_as_no_response():
    backend = Backend()
    call = survey(Call(keys=["7", None, "8", "2"]), backend)
    assert backend.answers[0] == ("GD-1", "solved", "no_response", "no_response")
    assert call.played().count("sv_q_solved") == 3 and call.played().count("sv_invalid") == 2
    assert backend.answers[1] == ("GD-1", "satisfaction", "basically_satisfied", "key")


def test_a_citizen_who_never_keys_anything_is_not_marked_as_having_answered():
    backend = Backend()
    call = survey(Call(keys=[]), backend)
    assert [a[2] for a in backend.answers] == ["no_response", "no_response"]
    assert "HOTLINE_SV_ANSWERED" not in call.channel


def test_a_hang_up_after_the_first_answer_keeps_that_answer():
    backend = Backend()
    with pytest.raises(CallerHungUp):
        survey(Call(keys=["2"], hang_up_after=9), backend)  # intro (7), Q1, then gone during Q2
    assert backend.answers == [("GD-1", "solved", "unsolved", "key")]
    assert backend.completed == []


def test_a_call_covering_two_orders_asks_about_each_in_turn():
    variables = {**ORDERS, "HOTLINE_SV_COUNT": "2", "HOTLINE_SV_ORDER_2": "GD-2", "HOTLINE_SV_TOPIC_2": "unknown",
                 "HOTLINE_SV_DATE_2": "20261121"}
    backend = Backend()
    call = survey(Call(keys=["1", "1", "1", "2"], variables=variables), backend)
    assert backend.completed == ["GD-1", "GD-2"]
    assert "topic_other" in call.played()  # an unknown topic key is spoken generically
    assert backend.answers[-1] == ("GD-2", "satisfaction", "basically_satisfied", "key")


def test_an_order_already_surveyed_is_not_asked_again():
    backend = Backend(finished={"GD-1"})
    call = survey(Call(keys=["1", "1"]), backend)
    assert backend.answers == [] and call.played() == ["sv_thanks"]


def test_the_survey_call_goes_on_when_its_store_is_down():
    call = survey(Call(keys=["2", "3"]), Backend(down=True))
    assert call.played()[-1] == "sv_thanks"
    assert "survey:answer:unavailable" in call.path


def test_a_spoken_answer_is_recognised_with_the_questions_grammar():
    backend = Backend(speech=["아니요", "불만"])
    call = survey(Call(keys=[None, None]), backend)
    assert backend.answers == [("GD-1", "solved", "unsolved", "speech"), ("GD-1", "satisfaction", "dissatisfied",
                                                                          "speech")]
    assert sum(1 for a in call.actions if a[0] == "record") == 3  # two answers and the comment


def test_a_key_pressed_while_the_answer_is_recorded_wins():
    backend = Backend(speech=["아니요"])
    survey(Call(keys=["rec:1", "1"]), backend)
    assert backend.answers[0][2:] == ("solved", "key")
    assert backend.speech == ["아니요"]  # nothing was sent to recognition


def test_when_asr_fails_the_question_falls_back_to_keys_and_no_response():
    backend = Backend(speech="broken")
    call = survey(Call(keys=[None, "1", "1"]), backend)
    assert backend.answers[0] == ("GD-1", "solved", "solved", "key")
    assert "survey:speech:unavailable" in call.path


def test_grammar_words_pick_one_answer_and_refuse_ambiguity():
    words = {"解决了": "solved", "解决": "solved", "没有解决": "unsolved"}
    assert match_answer("没有 解决", words) == "unsolved"  # Vosk's word spacing
    assert match_answer("没有解决", words) == "unsolved"
    assert match_answer("解决了", words) == "solved"
    assert match_answer("[unk]", words) is None
    assert match_answer("解决 没有解决", words) is None


@pytest.mark.parametrize("change,problem", [
    (lambda d: d["nodes"]["q_solved"].update(answers={"1": "solved", "2": "maybe"}), "is not an answer to solved"),
    (lambda d: d["nodes"]["q_solved"].update(question="mood"), "question must be one of"),
    (lambda d: d["nodes"]["q_solved"].update(answers={"0": "solved"}), "is not one of the keys 1-9"),
    (lambda d: d["prompts"].pop("topic_other"), "'topic_other' needs a text"),
    (lambda d: d["nodes"]["q_solved"].update(decline_key="1"), "is also an answer key"),
    (lambda d: d["nodes"]["q_solved"].pop("decline_next"), "'decline_key' and 'decline_next' go together"),
    (lambda d: d["nodes"]["q_solved"].update(decline_next="nowhere"), "points to unknown node 'nowhere'"),
    (lambda d: d["settings"]["speech"]["zh"].update(solved={"好": "great"}), "is not a word and an answer"),
])
def test_a_broken_survey_flow_fails_at_load_with_the_problem_named(change, problem):
    import yaml

    data = yaml.safe_load(FLOW.read_text(encoding="utf-8"))
    change(data)
    with pytest.raises(FlowError) as err:
        build_flow(data, "survey.yaml", "x")
    assert any(problem in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("keys,answers", [(["9"], []), (["2", "9"], [("GD-1", "solved", "unsolved", "key")])])
def test_key_9_declines_further_calls_for_every_order_of_the_call_and_ends_it(keys, answers):
    variables = {**ORDERS, "HOTLINE_SV_COUNT": "2", "HOTLINE_SV_ORDER_2": "GD-2", "HOTLINE_SV_TOPIC_2": "noise",
                 "HOTLINE_SV_DATE_2": "20261121"}
    backend = Backend()
    call = survey(Call(keys=keys, variables=variables), backend)
    assert backend.declined == [["GD-1", "GD-2"]]
    assert backend.answers == answers and backend.completed == [] and backend.comments == []
    assert call.played()[-1] == "sv_declined" and call.handoff.kind == "hangup"
    assert "survey:declined" in call.path


def test_a_decline_the_store_could_not_take_still_ends_the_call_politely():
    call = survey(Call(keys=["9"]), Backend(down=True))
    assert call.played()[-1] == "sv_declined" and "survey:decline:unavailable" in call.path
