"""``hotline-survey report --day D [--csv]``: the day's survey summary per category and per handling unit.

Orders whose survey ended on day D (local date): statuses, answers, 解决率 (solved /
solved + unsolved) and 满意率 ((satisfied + basically satisfied) / all three answers);
no-responses are counted but left out of both rates. Reads Redis (a console command:
blocking is fine here, never in the gateway).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Row", "format_csv", "format_table", "main", "summarise"]

COLUMNS = ("orders", "completed", "partial", "refused", "no_answer", "other", "solved", "unsolved",
           "solved_rate", "satisfied", "basically_satisfied", "dissatisfied", "satisfied_rate", "reopened")
HEADERS = {"solved_rate": "解决率", "satisfied_rate": "满意率"}


@dataclass
class Row:
    group: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, order: Mapping[str, str]) -> None:
        c = self.counts
        c["orders"] = c.get("orders", 0) + 1
        status = order.get("status", "")
        key = status if status in ("completed", "partial", "refused", "no_answer") else "other"
        c[key] = c.get(key, 0) + 1
        for answer in (order.get("solved"), order.get("satisfaction")):
            if answer and answer != "no_response":
                c[answer] = c.get(answer, 0) + 1
        if order.get("reopened"):
            c["reopened"] = c.get("reopened", 0) + 1

    def value(self, column: str) -> str:
        c = self.counts
        if column == "solved_rate":
            return _rate(c.get("solved", 0), c.get("solved", 0) + c.get("unsolved", 0))
        if column == "satisfied_rate":
            good = c.get("satisfied", 0) + c.get("basically_satisfied", 0)
            return _rate(good, good + c.get("dissatisfied", 0))
        return str(c.get(column, 0))


def _rate(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def summarise(orders: Iterable[Mapping[str, str]]) -> list[Row]:
    """Rows: all, then one per category, then one per handling unit (sorted by name)."""
    total = Row("all", "all")
    categories: dict[str, Row] = {}
    units: dict[str, Row] = {}
    for order in orders:
        total.add(order)
        category = order.get("category") or "-"
        unit = order.get("unit") or "-"
        categories.setdefault(category, Row("category", category)).add(order)
        units.setdefault(unit, Row("unit", unit)).add(order)
    return [total, *(categories[k] for k in sorted(categories)), *(units[k] for k in sorted(units))]


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - _width(text))
    return gap + text if right else text + gap


def format_table(day: str, rows: Sequence[Row]) -> str:
    header = ["group", "name", *(HEADERS.get(c, c) for c in COLUMNS)]
    table = [header] + [[r.group, r.name, *(r.value(c) for c in COLUMNS)] for r in rows]
    widths = [max(_width(line[i]) for line in table) for i in range(len(header))]
    lines = [f"Satisfaction surveys finished on {day}"]
    for index, line in enumerate(table):
        lines.append("  ".join(_pad(cell, widths[i], right=i >= 2) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def format_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "name", *COLUMNS])
    for row in rows:
        writer.writerow([row.group, row.name, *(row.value(c) for c in COLUMNS)])
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline-survey", description="12345 satisfaction surveys")
    parser.add_argument("--config", help="TOML configuration file (default: $HOTLINE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="a day's summary per category and per handling unit")
    report.add_argument("--day", help="local date YYYY-MM-DD (default: today)")
    report.add_argument("--csv", action="store_true", help="CSV instead of a table")
    args = parser.parse_args(argv)

    from ..config import ConfigError, load_config
    from ..storage.redis_clients import blocking_client
    from .store import SurveyStore

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hotline-survey: configuration error: {exc}", file=sys.stderr)
        return 2
    from zoneinfo import ZoneInfo

    day = args.day or dt.datetime.now(ZoneInfo(config.flows.timezone)).date().isoformat()
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        print(f"hotline-survey: --day {day!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    client = blocking_client(config.redis, timeout=10)
    store = SurveyStore(client, key_prefix=config.redis.key_prefix)
    rows = summarise(store.day(day))
    sys.stdout.write(format_csv(rows) if args.csv else format_table(day, rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
