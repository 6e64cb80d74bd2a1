"""The draft work order: the contract the ASR worker relies on, masking, idempotence, review flags."""
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from gateway.drafting import load_drafter

SH = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 23, 10, 5, tzinfo=SH)
JOB = {
    "recording_id": "1700000000-12-20261123100000",
    "path": "/var/spool/asterisk/hotline/messages/1700000000-12-20261123100000.wav",
    "call_id": "1700000000.12",
    "caller": "13912345678",
    "channel": "PJSIP/trunk-00000012",
    "flow": "main",
    "flow_version": "2",
    "ivr_path": ["flow:main", "prompt:welcome", "menu:1", "record:message"],
    "choices": ["1"],
    "recorded_at": "2026-11-23T10:00:00+08:00",
    "ended_by": "dtmf",
    "end_position": 12345,
}
TEXT = ("你好 我 住在 江南区 中山路 四十五号 文化新村小区 二号楼 家里 有 很 浓 的 煤气味 "
        "赶紧 派人 来 我 电话 幺三八 零零幺三 八零零零 身份证 三二零一零二一九八五零三一五一二三叉")


@pytest.fixture(scope="module")
def drafter():
    return load_drafter()


@pytest.fixture(scope="module")
def draft(drafter):
    return drafter.draft(JOB, TEXT, 0.83, NOW)


def test_draft_carries_ids_times_and_the_ivr_path(draft):
    assert draft["draft_id"] == "D-1700000000-12-20261123100000"
    assert draft["status"] == "draft"
    assert (draft["call_id"], draft["recording_id"]) == ("1700000000.12", JOB["recording_id"])
    assert draft["ivr_path"] == JOB["ivr_path"]
    assert draft["created_at"] == NOW.isoformat() and draft["recorded_at"] == JOB["recorded_at"]


def test_draft_fields_from_the_transcript(draft):
    assert (draft["category"]["code"], draft["category"]["label"]) == ("help", "求助")
    assert (draft["topic"]["code"], draft["topic"]["label"]) == ("gas", "燃气")
    loc = draft["location"]
    assert (loc["district"], loc["street"], loc["road"], loc["number"], loc["community"]) == (
        "江南区", "中山街道", "中山路", "45", "文化新村小区")
    assert draft["urgency"]["level"] == "emergency"
    assert draft["due_at"] == "2026-11-23T12:00:00+08:00"  # two hours after the recording


def test_draft_is_json_serialisable(draft):
    assert json.loads(json.dumps(draft, ensure_ascii=False)) == draft


def test_numbers_are_in_clear_only_in_the_secure_fields(draft):
    assert draft["caller"] == "13912345678" and draft["caller_masked"] == "139****5678"
    assert "幺三八" in draft["transcript"]["raw_secure"]
    rest = {k: v for k, v in draft.items() if k != "caller"}
    rest["transcript"] = {k: v for k, v in draft["transcript"].items() if k != "raw_secure"}
    dumped = json.dumps(rest, ensure_ascii=False)
    for secret in ("13912345678", "13800138000", "320102198503151234", "32010219850315123X"):
        assert secret not in dumped
    assert draft["phones_mentioned_masked"] == ["138****8000"]
    assert draft["id_numbers_mentioned_masked"] == ["32**************3X"]
    assert "138****8000" in draft["transcript"]["text"]


def test_redrafting_the_same_recording_gives_the_same_draft(drafter, draft):
    assert drafter.draft(dict(JOB), TEXT, 0.83, NOW) == draft


def test_a_bare_job_and_empty_transcript_still_give_a_draft_for_review(drafter):
    d = drafter.draft({}, "", None, NOW)
    assert d["status"] == "draft" and d["draft_id"] is None and d["ivr_path"] == []
    assert d["category"]["code"] is None and d["topic"]["code"] is None
    assert d["needs_review"] is True
    assert {"empty_transcript", "asr_confidence_unknown", "category_unknown"} <= set(d["review_reasons"])
    assert d["due_at"] == "2026-11-26T18:00:00+08:00"  # general: 3 working days from now


def test_low_asr_confidence_needs_review_even_when_the_text_is_clear(drafter):
    text = "请问 住房公积金 提取 需要 什么 材料"
    assert drafter.draft(JOB, text, 0.9, NOW)["needs_review"] is False
    low = drafter.draft(JOB, text, 0.41, NOW)
    assert low["needs_review"] is True and low["review_reasons"] == ["low_asr_confidence"]


def test_the_low_confidence_threshold_is_configurable():
    strict = load_drafter(low_confidence=0.95)
    assert "low_asr_confidence" in strict.draft(JOB, "请问 公积金 怎么 提取", 0.9, NOW)["review_reasons"]


def test_nonsense_confidence_is_treated_as_unknown(drafter):
    d = drafter.draft(JOB, "请问 公积金 怎么 提取", float("nan"), NOW)
    assert d["transcript"]["confidence"] is None and "asr_confidence_unknown" in d["review_reasons"]


def test_an_unparseable_recording_time_falls_back_to_now(drafter):
    d = drafter.draft({**JOB, "recorded_at": "yesterday"}, "请问 公积金 怎么 提取", 0.9, NOW)
    assert d["recorded_at"] is None and d["received_at"] == NOW.isoformat()


def test_a_located_problem_without_a_place_is_flagged(drafter):
    d = drafter.draft(JOB, "我们 这里 停水 两天 了 麻烦 赶紧 派人 来 修一下", 0.9, NOW)
    assert d["topic"]["code"] == "water" and "location_missing" in d["review_reasons"]


def test_a_transcript_mixing_two_topics_evenly_is_uncertain(drafter):
    _, topic = drafter.classify("停水 停电")
    assert topic.code in ("water", "power") and not topic.confident


def test_naive_now_is_refused(drafter):
    with pytest.raises(ValueError, match="aware"):
        drafter.draft(JOB, "请问", 0.9, dt.datetime(2026, 11, 23, 10))


def test_each_drafter_has_its_own_tokenizer():
    a, b = load_drafter(), load_drafter()
    assert a._tokenizer is not b._tokenizer
