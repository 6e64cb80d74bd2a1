"""Configurable taxonomy: appeal categories, topics, urgency rules, time limits.

Loaded from ``data/taxonomy.yaml`` (or a file given by path) and validated at
load time. Scoring is a pure function over a token list: a class scores the sum
of the weights of its keywords present in the transcript (each counted once).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.drafting.data_files import DATA_DIR, DataFileError, load_yaml, require

__all__ = [
    "DEFAULT_TAXONOMY",
    "Classification",
    "Label",
    "SeasonalRule",
    "Taxonomy",
    "TimeLimits",
    "UrgencyRules",
    "load_taxonomy",
    "score_labels",
]

DEFAULT_TAXONOMY = DATA_DIR / "taxonomy.yaml"
TIME_LIMIT_CLASSES = ("consultation", "general", "difficult")


@dataclass(frozen=True)
class Label:
    code: str
    label: str
    keywords: dict[str, float]
    time_limit: str = "general"
    unit: str = ""
    located: bool = True


@dataclass(frozen=True)
class SeasonalRule:
    name: str
    start: tuple[int, int]  # (month, day), inclusive
    end: tuple[int, int]  # (month, day), inclusive; may wrap over the new year
    keywords: tuple[str, ...]
    topic: str | None = None  # applies only when the transcript is about this topic

    def in_season(self, day: dt.date) -> bool:
        md = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= md <= self.end
        return md >= self.start or md <= self.end


@dataclass(frozen=True)
class UrgencyRules:
    emergency_label: str
    emergency_keywords: tuple[str, ...]
    negations: tuple[str, ...]
    seasonal: tuple[SeasonalRule, ...]
    difficult_label: str
    difficult_keywords: tuple[str, ...]
    labels: dict[str, str]


@dataclass(frozen=True)
class TimeLimits:
    consultation: int = 1
    general: int = 3
    difficult: int = 5
    emergency_hours: float = 2.0
    working_day_end: dt.time = dt.time(18, 0)

    def working_days(self, time_limit: str) -> int:
        return int(getattr(self, time_limit))


@dataclass(frozen=True)
class Taxonomy:
    categories: tuple[Label, ...]
    topics: tuple[Label, ...]
    urgency: UrgencyRules
    time_limits: TimeLimits
    min_score: float = 2.0
    min_share: float = 0.55
    source: str = ""

    def words(self) -> set[str]:
        """Category and topic keywords, for the tokenizer's dictionary.

        Urgency phrases are matched as substrings and deliberately left out:
        as dictionary words they would swallow topic keywords (井盖没了 ⊃ 井盖).
        """
        out: set[str] = set()
        for lab in (*self.categories, *self.topics):
            out.update(lab.keywords)
        return out

    def category(self, code: str) -> Label:
        return next(c for c in self.categories if c.code == code)

    def topic(self, code: str) -> Label:
        return next(t for t in self.topics if t.code == code)


@dataclass(frozen=True)
class Classification:
    code: str | None
    label: str
    score: float  # the winner's share of all matched weight, 0..1
    raw: float  # the winner's summed keyword weight
    matched: tuple[str, ...]
    runner_up: str | None = None
    confident: bool = False
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "label": self.label, "score": round(self.score, 2), "matched": list(self.matched)}


def matches(keyword: str, tokens: frozenset[str], text: str) -> bool:
    """A keyword is present as a token, or (3+ characters) as a substring."""
    return keyword in tokens or (len(keyword) >= 3 and keyword in text)


def score_labels(labels: Sequence[Label], tokens: Sequence[str], text: str, min_score: float,
                 min_share: float) -> Classification:
    """Pick the best label for a transcript; ties go to the earlier label."""
    token_set = frozenset(tokens)
    scored: list[tuple[float, int, Label, tuple[str, ...]]] = []
    for index, lab in enumerate(labels):
        hit = tuple(k for k in lab.keywords if matches(k, token_set, text))
        scored.append((sum(lab.keywords[k] for k in hit), index, lab, hit))
    total = sum(s[0] for s in scored)
    ranked = sorted(scored, key=lambda s: (-s[0], s[1]))
    best_score, _, best, hit = ranked[0]
    scores = {lab.code: sc for sc, _, lab, _ in scored if sc > 0}
    if best_score <= 0:
        return Classification(None, "", 0.0, 0.0, (), None, False, scores)
    share = best_score / total
    runner = ranked[1][2].code if len(ranked) > 1 and ranked[1][0] > 0 else None
    confident = best_score >= min_score and share >= min_share
    return Classification(best.code, best.label, share, best_score, hit, runner, confident, scores)


# ---------------------------------------------------------------- loading

def _keywords(path: Path, where: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise DataFileError(path, where, "'keywords' must be a non-empty mapping of word: weight")
    out: dict[str, float] = {}
    for word, weight in raw.items():
        if not isinstance(word, str) or not word.strip():
            raise DataFileError(path, where, f"keyword {word!r} must be a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise DataFileError(path, where, f"keyword '{word}': weight must be a positive number, got {weight!r}")
        out[word.strip()] = float(weight)
    return out


def _labels(path: Path, data: dict[str, Any], section: str) -> tuple[Label, ...]:
    raw = require(path, section, data, section, list)
    if not raw:
        raise DataFileError(path, section, "must list at least one entry")
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(raw):
        where = f"{section}[{i}]"
        code = require(path, where, entry, "code", str)
        where = f"{section}[{i}] (code '{code}')"
        if code in seen:
            raise DataFileError(path, where, "duplicate code")
        seen.add(code)
        label = require(path, where, entry, "label", str)
        time_limit = entry.get("time_limit", "general")
        if time_limit not in TIME_LIMIT_CLASSES:
            raise DataFileError(path, where, f"time_limit must be one of {', '.join(TIME_LIMIT_CLASSES)}")
        located = entry.get("located", True)
        if not isinstance(located, bool):
            raise DataFileError(path, where, "'located' must be true or false")
        out.append(Label(code, label, _keywords(path, where, entry.get("keywords")), time_limit,
                         str(entry.get("unit", "")), located))
    return tuple(out)


def _words(path: Path, where: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(w, str) and w for w in raw):
        raise DataFileError(path, where, "must be a list of non-empty strings")
    return tuple(raw)


def _month_day(path: Path, where: str, raw: Any) -> tuple[int, int]:
    try:
        month, day = (int(p) for p in str(raw).split("-"))
        dt.date(2024, month, day)  # a leap year, so 02-29 is accepted
    except ValueError as exc:
        raise DataFileError(path, where, f"{raw!r} is not a MM-DD date") from exc
    return month, day


def _urgency(path: Path, data: dict[str, Any]) -> UrgencyRules:
    urgency = require(path, "urgency", data, "urgency", dict)
    emergency = require(path, "urgency", urgency, "emergency", dict)
    difficult = require(path, "urgency", urgency, "difficult", dict)
    seasonal = []
    for i, rule in enumerate(emergency.get("seasonal") or []):
        where = f"urgency.emergency.seasonal[{i}]"
        name = require(path, where, rule, "name", str)
        where = f"{where} ({name})"
        topic = rule.get("topic")
        if topic is not None and not isinstance(topic, str):
            raise DataFileError(path, where, "'topic' must be a topic code")
        seasonal.append(SeasonalRule(
            name, _month_day(path, where, rule.get("start")), _month_day(path, where, rule.get("end")),
            _words(path, f"{where}.keywords", rule.get("keywords")), topic))
    labels = urgency.get("labels") or {}
    if not isinstance(labels, dict):
        raise DataFileError(path, "urgency.labels", "must be a mapping")
    return UrgencyRules(
        emergency_label=str(emergency.get("label", "突发")),
        emergency_keywords=_words(path, "urgency.emergency.keywords", emergency.get("keywords")),
        negations=_words(path, "urgency.emergency.negations", emergency.get("negations") or ["没有"]),
        seasonal=tuple(seasonal),
        difficult_label=str(difficult.get("label", "疑难")),
        difficult_keywords=_words(path, "urgency.difficult.keywords", difficult.get("keywords")),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def _time_limits(path: Path, data: dict[str, Any]) -> TimeLimits:
    raw = data.get("time_limits") or {}
    if not isinstance(raw, dict):
        raise DataFileError(path, "time_limits", "must be a mapping")
    values: dict[str, Any] = {}
    for key in ("consultation", "general", "difficult"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise DataFileError(path, f"time_limits.{key}", "must be a whole number of working days")
            values[key] = v
    if "emergency_hours" in raw:
        v = raw["emergency_hours"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise DataFileError(path, "time_limits.emergency_hours", "must be a positive number of hours")
        values["emergency_hours"] = float(v)
    if "working_day_end" in raw:
        try:
            values["working_day_end"] = dt.time.fromisoformat(str(raw["working_day_end"]))
        except ValueError as exc:
            raise DataFileError(path, "time_limits.working_day_end", "must be HH:MM") from exc
    return TimeLimits(**values)


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Read and validate a taxonomy file (default: the packaged one)."""
    path = Path(path) if path is not None else DEFAULT_TAXONOMY
    data = load_yaml(path)
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise DataFileError(path, "thresholds", "must be a mapping")
    for key in ("min_score", "min_share"):
        v = thresholds.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise DataFileError(path, f"thresholds.{key}", "must be a non-negative number")
    topics = _labels(path, data, "topics")
    urgency = _urgency(path, data)
    codes = {t.code for t in topics}
    for i, rule in enumerate(urgency.seasonal):
        if rule.topic is not None and rule.topic not in codes:
            raise DataFileError(path, f"urgency.emergency.seasonal[{i}] ({rule.name})",
                                f"unknown topic '{rule.topic}'")
    return Taxonomy(
        categories=_labels(path, data, "categories"),
        topics=topics,
        urgency=urgency,
        time_limits=_time_limits(path, data),
        min_score=float(thresholds.get("min_score", 2.0)),
        min_share=float(thresholds.get("min_share", 0.55)),
        source=str(path),
    )
