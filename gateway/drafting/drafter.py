"""Transcript → draft work order (工单草稿).

The composition of the pure steps: normalise (numerals, masking), segment
(jieba, one tokenizer per Drafter), classify category and topic, locate,
assess urgency and due time. :meth:`Drafter.draft` returns a JSON-serialisable
dict; personal numbers appear in clear only in ``caller`` and
``transcript.raw_secure``.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jieba

from gateway.drafting.gazetteer import Gazetteer, Location, load_gazetteer, locate
from gateway.drafting.normalize import Normalized, normalize
from gateway.drafting.taxonomy import Classification, Taxonomy, load_taxonomy, score_labels
from gateway.drafting.urgency import Urgency, assess
from gateway.masking import mask_number

__all__ = ["Analysis", "Drafter", "load_drafter"]

DRAFT_SCHEMA = 1
# A keyword is added to the tokenizer with a high frequency so segmentation keeps it whole.
_WORD_FREQ = 200_000


@dataclass(frozen=True)
class Analysis:
    """Everything the drafter derives from one transcript (no job data)."""

    normalized: Normalized
    tokens: tuple[str, ...]
    category: Classification
    topic: Classification
    location: Location


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _clean_confidence(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or value < 0 or value > 1:
        return None
    return float(value)


class Drafter:
    """Holds the loaded taxonomy and gazetteer and one jieba tokenizer."""

    def __init__(self, taxonomy: Taxonomy, gazetteer: Gazetteer, low_confidence: float = 0.6) -> None:
        self.taxonomy = taxonomy
        self.gazetteer = gazetteer
        self.low_confidence = low_confidence
        self._protected = tuple(sorted(gazetteer.words(), key=len, reverse=True))
        jieba.setLogLevel(logging.WARNING)  # the "Building prefix dict" chatter
        self._tokenizer = jieba.Tokenizer()
        for word in sorted(taxonomy.words() | gazetteer.words()):
            self._tokenizer.add_word(word, freq=_WORD_FREQ)

    # ------------------------------------------------------------ analysis

    def tokenize(self, text: str) -> tuple[str, ...]:
        return tuple(t for t in self._tokenizer.cut(text, HMM=True) if t.strip())

    def normalize(self, text: str | None) -> Normalized:
        return normalize(text, self._protected)

    def classify(self, text: str | None) -> tuple[Classification, Classification]:
        """(category, topic) of a raw transcript."""
        analysis = self.analyse(text)
        return analysis.category, analysis.topic

    def locate(self, text: str | None) -> Location:
        return locate(self.gazetteer, self.normalize(text).masked)

    def analyse(self, text: str | None) -> Analysis:
        norm = self.normalize(text)
        tokens = self.tokenize(norm.masked)
        tax = self.taxonomy
        category = score_labels(tax.categories, tokens, norm.masked, tax.min_score, tax.min_share)
        topic = score_labels(tax.topics, tokens, norm.masked, tax.min_score, tax.min_share)
        return Analysis(norm, tokens, category, topic, locate(self.gazetteer, norm.masked))

    def urgency(self, text: str | None, received_at: dt.datetime) -> Urgency:
        analysis = self.analyse(text)
        return self._urgency(analysis, received_at)

    def _urgency(self, analysis: Analysis, received_at: dt.datetime) -> Urgency:
        code = analysis.category.code
        time_limit = self.taxonomy.category(code).time_limit if code else "general"
        return assess(self.taxonomy, frozenset(analysis.tokens), analysis.normalized.masked, time_limit,
                      received_at, analysis.topic.code)

    # ------------------------------------------------------------ the draft

    def draft(self, job: dict[str, Any] | None, text: str | None, confidence: float | None,
              now: dt.datetime) -> dict[str, Any]:
        """A draft work order for one transcribed voice message.

        ``now`` must be timezone-aware; the time limit runs from the recording
        time when the job carries a valid one, else from ``now``.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        job = job if isinstance(job, dict) else {}
        raw_text = text if isinstance(text, str) else ""
        analysis = self.analyse(raw_text)
        recorded_at = _parse_time(job.get("recorded_at"))
        received_at = (recorded_at or now).astimezone(now.tzinfo)
        urgency = self._urgency(analysis, received_at)
        conf = _clean_confidence(confidence)

        reasons: list[str] = []
        if not analysis.normalized.masked:
            reasons.append("empty_transcript")
        if conf is None:
            reasons.append("asr_confidence_unknown")
        elif conf < self.low_confidence:
            reasons.append("low_asr_confidence")
        if not analysis.category.code:
            reasons.append("category_unknown")
        elif not analysis.category.confident:
            reasons.append("category_uncertain")
        if not analysis.topic.code:
            reasons.append("topic_unknown")
        elif not analysis.topic.confident:
            reasons.append("topic_uncertain")
        topic_label = self.taxonomy.topic(analysis.topic.code) if analysis.topic.code else None
        category_code = analysis.category.code
        if (not analysis.location.found and topic_label is not None and topic_label.located
                and category_code not in ("consultation", "suggestion", "praise")):
            reasons.append("location_missing")
        if analysis.location.conflicts:
            reasons.append("location_conflict")
        if not urgency.calendar_known:
            reasons.append("holiday_calendar_unknown")
        if urgency.level == "emergency":
            reasons.append("emergency")

        recording_id = str(job.get("recording_id") or "")
        caller = str(job.get("caller") or "")
        ivr_path = job.get("ivr_path")
        topic = analysis.topic.as_dict()
        topic["unit"] = topic_label.unit if topic_label else ""
        return {
            "schema": DRAFT_SCHEMA,
            "draft_id": f"D-{recording_id}" if recording_id else None,
            "status": "draft",
            "call_id": job.get("call_id"),
            "recording_id": recording_id or None,
            "recording_path": job.get("path"),
            "caller": caller or None,
            "caller_masked": mask_number(caller) if caller else None,
            "flow": job.get("flow"),
            "flow_version": job.get("flow_version"),
            "ended_by": job.get("ended_by"),
            "created_at": now.isoformat(),
            "recorded_at": recorded_at.isoformat() if recorded_at else None,
            "received_at": received_at.isoformat(),
            "ivr_path": list(ivr_path) if isinstance(ivr_path, (list, tuple)) else [],
            "choices": list(job["choices"]) if isinstance(job.get("choices"), (list, tuple)) else [],
            "transcript": {
                "text": analysis.normalized.masked,
                "raw_secure": raw_text,
                "confidence": conf,
            },
            "category": analysis.category.as_dict(),
            "topic": topic,
            "location": analysis.location.as_dict(),
            "urgency": urgency.as_dict(),
            "due_at": urgency.due_at.isoformat(),
            "phones_mentioned_masked": analysis.normalized.phones_masked,
            "id_numbers_mentioned_masked": analysis.normalized.id_cards_masked,
            "needs_review": bool(reasons),
            "review_reasons": reasons,
        }


def load_drafter(taxonomy_path: str | Path | None = None, gazetteer_path: str | Path | None = None,
                 low_confidence: float = 0.6) -> Drafter:
    """A Drafter over the packaged data files, or the files given."""
    return Drafter(load_taxonomy(taxonomy_path), load_gazetteer(gazetteer_path), low_confidence)
