"""Long-run fuzzing: the properties of tests/fuzz, with many more examples per parser.

The properties are imported from tests/fuzz (every ``test_*`` there is a hypothesis property that needs no
fixture) and run with hypothesis as usual — generation, then shrinking of any failure — but with
``max_examples`` raised: ``--examples N`` per parser (default 20000), split evenly over the properties of
that parser, and/or ``--seconds S`` per parser (the properties run in rounds of at most ``--round``
examples, each round with a new seed, until the time or the examples are used up; the time is looked at
between rounds, so a parser may take one round longer). A parser's properties are found by a short probe
run: the parser a property counts most examples for (tests/fuzz/support.py).

Printed per parser: examples tried (as the properties count them: one per parse; the queue_log line
parser counts every line), crashes (distinct failures hypothesis reported; 0 expected, each one printed
after the table), distinct rejection messages (their shapes: quoted values and numbers blanked),
examples/s (over the time of the properties that count for the parser). It ends by itself; the exit
status is 1 when anything crashed.

    .venv/bin/python bench/fuzz_bench.py                    # 20000 examples per parser (~20 min on 2 cores)
    .venv/bin/python bench/fuzz_bench.py --examples 5000 | tee bench/last-fuzz.txt
    .venv/bin/python bench/fuzz_bench.py --seconds 60 --only agi-replies,ami-frames
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import hypothesis  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from tests.fuzz.support import TALLY  # noqa: E402

MODULES = ("test_agi", "test_ami", "test_flows", "test_numbers", "test_payloads", "test_queue_log", "test_redis",
           "test_wav")
PROBE_EXAMPLES = 5


@dataclass
class Property:
    name: str
    test: Callable[[], None]
    #: examples counted per parser in the probe run; the parser with most is the property's own
    counts: Counter = field(default_factory=Counter)

    @property
    def parser(self) -> str:
        return max(sorted(self.counts), key=self.counts.__getitem__)


def properties() -> list[Property]:
    found = []
    for module_name in MODULES:
        module = importlib.import_module(f"tests.fuzz.{module_name}")
        for name, test in vars(module).items():
            if name.startswith("test_") and hasattr(test, "hypothesis"):
                found.append(Property(f"{module_name}.{name}", test))
    return found


def run(prop: Property, examples: int, seed: int) -> list[BaseException]:
    """One hypothesis run of the property with ``examples`` examples; the failures it reported (none: [])."""
    test = prop.test
    own = test._hypothesis_internal_use_settings  # the property's @settings (what @seed replaces too)
    test._hypothesis_internal_use_settings = settings(
        own, max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    test._hypothesis_internal_use_seed = seed
    try:
        test()
    except BaseExceptionGroup as group:  # hypothesis reports distinct bugs together
        return list(group.exceptions)
    except Exception as exc:  # noqa: BLE001 — a failing property is what this bench counts
        return [exc]
    finally:
        test._hypothesis_internal_use_settings = own
        del test._hypothesis_internal_use_seed
    return []


@dataclass
class Row:
    examples: int = 0
    seconds: float = 0.0
    crashes: list[tuple[str, BaseException]] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=None,
                        help="examples per parser (default 20000; with --seconds alone: no limit)")
    parser.add_argument("--seconds", type=float, default=None, help="time per parser")
    parser.add_argument("--round", type=int, default=2000, help="examples per hypothesis run with --seconds")
    parser.add_argument("--only", default="", help="comma-separated parsers (default: all)")
    parser.add_argument("--seed", type=int, default=None, help="seeds every run (default: random, printed)")
    parser.add_argument("--json", default=None, help="also write the per-parser counts and rejection shapes here")
    args = parser.parse_args(argv)
    budget = args.examples if args.examples is not None else (None if args.seconds else 20000)
    first_seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(first_seed)
    started = time.monotonic()

    props = properties()
    for prop in props:  # the probe: which parser each property is for
        TALLY.reset()
        failures = run(prop, PROBE_EXAMPLES, rng.getrandbits(64))
        assert not failures, f"{prop.name} fails already in the probe: {failures[0]!r}"
        prop.counts = Counter(TALLY.examples)
    by_parser: dict[str, list[Property]] = defaultdict(list)
    for prop in props:
        by_parser[prop.parser].append(prop)
    wanted = [name for name in args.only.split(",") if name] or sorted(by_parser)
    unknown = sorted(set(wanted) - set(by_parser))
    if unknown:
        parser.error(f"unknown parser(s) {', '.join(unknown)} (known: {', '.join(sorted(by_parser))})")
    counted = set().union(*(prop.counts for prop in props))
    print(f"fuzz bench: {len(props)} properties for {len(counted)} parsers; "
          f"{'%d examples' % budget if budget else 'no example limit'} and "
          f"{'%g s' % args.seconds if args.seconds else 'no time limit'} per parser; --seed {first_seed}", flush=True)

    TALLY.reset()
    rows: dict[str, Row] = defaultdict(Row)
    for name in wanted:
        group = by_parser[name]
        for index, prop in enumerate(group):
            share = None if budget is None else budget // len(group) + (index < budget % len(group))
            deadline = None if args.seconds is None else time.monotonic() + args.seconds / len(group)
            done = 0
            while (share is None or done < share) and (deadline is None or time.monotonic() < deadline):
                size = share - done if share is not None else args.round
                if deadline is not None:
                    size = min(size, args.round)
                before = sum(TALLY.examples.values())
                t0 = time.monotonic()
                failures = run(prop, size, rng.getrandbits(64))
                took = time.monotonic() - t0
                for counted in prop.counts:
                    rows[counted].seconds += took
                rows[name].crashes.extend((prop.name, failure) for failure in failures)
                done += size
                if failures or sum(TALLY.examples.values()) == before:
                    break  # a failing property is reported once; an exhausted one has nothing new to try
        tried = TALLY.examples[name]
        seconds = rows[name].seconds
        print(f"  {name}: {tried} examples in {seconds:.1f} s, {len(rows[name].crashes)} crashes", flush=True)

    print()
    print("| parser | examples tried | crashes | distinct rejection messages | examples/s |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(TALLY.examples):
        if name not in wanted and not rows[name].seconds:
            continue
        tried, row = TALLY.examples[name], rows[name]
        rate = tried / row.seconds if row.seconds else 0.0
        print(f"| {name} | {tried} | {len(row.crashes)} | {len(TALLY.rejections[name])} | {rate:,.0f} |")
    crashes = [crash for row in rows.values() for crash in row.crashes]
    print()
    print(TALLY.line())
    for prop_name, failure in crashes:
        print(f"\nCRASH in {prop_name}: {type(failure).__name__}: {failure}")
        for note in getattr(failure, "__notes__", ()):  # hypothesis's falsifying example and its reproduction
            print(f"  {note}")
    print(f"\nhypothesis {hypothesis.__version__}, Python {platform.python_version()}; "
          f"whole bench {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(TALLY.as_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
