"""Drafting accuracy over the fixture transcripts.

    python -m gateway.drafting.report [--fixtures PATH] [--taxonomy PATH] [--gazetteer PATH] [-v]

Prints per-field accuracy (category, topic, location fields, urgency) and the
mismatches. :func:`evaluate` is the pure part, used by the tests too.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from gateway.drafting.drafter import Drafter, load_drafter

__all__ = ["FIELDS", "Fixture", "Report", "evaluate", "load_fixtures", "main"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "transcripts"
DEFAULT_RECORDED_AT = "2026-11-23T10:00:00+08:00"
FIELDS = ("category", "topic", "district", "street", "road", "number", "community", "urgency")
LOCATION_FIELDS = ("district", "street", "road", "number", "community")


@dataclass(frozen=True)
class Fixture:
    id: str
    text: str
    expected: dict[str, Any]
    unambiguous: bool = False
    recorded_at: str = DEFAULT_RECORDED_AT
    confidence: float = 0.9


@dataclass
class Report:
    total: int = 0
    correct: dict[str, int] = field(default_factory=dict)
    mismatches: list[tuple[str, str, Any, Any]] = field(default_factory=list)  # (id, field, expected, got)

    def accuracy(self, name: str) -> float:
        return self.correct.get(name, 0) / self.total if self.total else 0.0

    def format(self, verbose: bool = False) -> str:
        lines = [f"drafting accuracy over {self.total} fixture transcripts"]
        for name in FIELDS:
            lines.append(f"  {name:<10} {self.accuracy(name):7.1%}  ({self.correct.get(name, 0)}/{self.total})")
        if self.mismatches:
            lines.append(f"mismatches ({len(self.mismatches)}):")
            shown = self.mismatches if verbose else self.mismatches[:40]
            for fid, name, want, got in shown:
                lines.append(f"  {fid:<16} {name:<10} expected {want!r:<12} got {got!r}")
        return "\n".join(lines)


def load_fixtures(path: Path | str = DEFAULT_FIXTURES) -> list[Fixture]:
    """All fixtures in a YAML file, or in every ``*.yaml`` of a directory."""
    path = Path(path)
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    out: list[Fixture] = []
    for file in files:
        for i, entry in enumerate(yaml.safe_load(file.read_text(encoding="utf-8")) or []):
            if not isinstance(entry, dict) or "text" not in entry or "expected" not in entry:
                raise ValueError(f"{file}: entry {i} needs 'text' and 'expected'")
            out.append(Fixture(
                id=str(entry.get("id", f"{file.stem}-{i}")), text=str(entry["text"]),
                expected=dict(entry["expected"]), unambiguous=bool(entry.get("unambiguous", False)),
                recorded_at=str(entry.get("recorded_at", DEFAULT_RECORDED_AT)),
                confidence=float(entry.get("confidence", 0.9)),
            ))
    return out


def actual_fields(draft: dict[str, Any]) -> dict[str, Any]:
    got = {"category": draft["category"]["code"], "topic": draft["topic"]["code"],
           "urgency": draft["urgency"]["level"]}
    for name in LOCATION_FIELDS:
        got[name] = draft["location"][name]
    return got


def draft_fixture(drafter: Drafter, fx: Fixture) -> dict[str, Any]:
    recorded = dt.datetime.fromisoformat(fx.recorded_at)
    job = {"recording_id": f"fixture-{fx.id}", "call_id": f"fixture.{fx.id}", "caller": "13800138000",
           "recorded_at": fx.recorded_at}
    return drafter.draft(job, fx.text, fx.confidence, recorded + dt.timedelta(minutes=2))


def evaluate(drafter: Drafter, fixtures: Sequence[Fixture]) -> Report:
    report = Report(total=len(fixtures), correct={name: 0 for name in FIELDS})
    for fx in fixtures:
        got = actual_fields(draft_fixture(drafter, fx))
        for name in FIELDS:
            want = fx.expected.get(name)
            if want is not None:
                want = str(want)
            if got[name] == want:
                report.correct[name] += 1
            else:
                report.mismatches.append((fx.id, name, want, got[name]))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.drafting.report", description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=str(DEFAULT_FIXTURES), help="fixture YAML file or directory")
    parser.add_argument("--taxonomy", default=None, help="taxonomy YAML (default: packaged)")
    parser.add_argument("--gazetteer", default=None, help="gazetteer YAML (default: packaged)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every mismatch")
    args = parser.parse_args(argv)
    drafter = load_drafter(args.taxonomy, args.gazetteer)
    report = evaluate(drafter, load_fixtures(args.fixtures))
    sys.stdout.write(report.format(args.verbose) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
