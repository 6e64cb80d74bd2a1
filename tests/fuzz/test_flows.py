"""Fuzzing flow files: the real ivr_flows/*.yaml mutated as text and loaded with ``load_flow``.

A flow loads, or :class:`FlowError` names the file in every problem — never another exception, never a
problem that only says a check broke (``UNCHECKED``), never a hang: YAML bombs, deep nesting, huge numbers,
odd tags and types are all clear errors. (Wrong-typed values in a parsed flow and running what loads:
tests/unit/test_flow_types.py; its YAML-ish values are reused here.)
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.flows.loader import UNCHECKED, FlowError, load_flow

from ..unit.test_flow_types import YAMLISH
from .support import TALLY, mutated, written

FLOW_FILES = {path.name: path.read_text(encoding="utf-8")
              for path in sorted((Path(__file__).resolve().parents[2] / "ivr_flows").glob("*.yaml"))}
#: a line holding ``key: value`` (or ``- key: value``): where a value is swapped for another
_FIELD = re.compile(r"^(\s*(?:- )?[^#\s][^:\n]*:)( .*)?$")


def _bomb(width: int, depth: int) -> str:
    """Anchors whose last expands to ``width ** depth`` items (the "billion laughs"), in a few hundred bytes."""
    lines = [f"x-bomb-0: &b0 [{', '.join(['lol'] * width)}]"]
    lines += [f"x-bomb-{n}: &b{n} [{', '.join([f'*b{n - 1}'] * width)}]" for n in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


def _flow_text(value) -> str:
    """A YAML-ish value written in flow style on one line (JSON is YAML)."""
    return json.dumps(value, ensure_ascii=False)


VALUES = st.one_of(
    YAMLISH.map(_flow_text),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: "{a: " * n + "1" + "}" * n),
    st.integers(1, 6000).map(lambda n: "1" + "0" * n),
    st.integers(1, 6000).map(lambda n: "0x" + "f" * n),
    st.integers(0, 20000).map(lambda n: "x" * n),
    st.sampled_from(["1e99999", ".nan", "-.inf", "~", "yes", "off", "0755", "2024-01-01", "2024-13-45", "12:30:00",
                     "!!set {a, b}", "!!binary aGVsbG8=", "!!omap [a: 1]", "!!python/object/apply:os.system [x]",
                     "!!float x", "&self [*self]", "*nowhere", "|\n  two\n  lines", '"\\x00\\u2028"', "*b0"]),
    st.integers(0, 8).map(lambda depth: f"*b{depth}"),
)
_YAML_TOKENS = [b": ", b"- ", b"{", b"}", b"[", b"]", b"&a ", b"*a", b"!!set ", b"<<: *a\n", b"\t", b"  ",
                b"'", b'"', b"%YAML 1.1\n", b"---\n", b"...\n", b"? ", b"#", b"|", b">"]


@st.composite
def flow_texts(draw) -> bytes:
    """A real flow file with values swapped, lines dropped, maybe a bomb above it, then byte-level edits."""
    lines = FLOW_FILES[draw(st.sampled_from(sorted(FLOW_FILES)))].splitlines()
    fields = [n for n, line in enumerate(lines) if _FIELD.match(line)]
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.sampled_from(fields))
        if draw(st.booleans()):
            lines[n] = _FIELD.sub(lambda m: m.group(1) + " " + draw(VALUES), lines[n])
        else:
            lines[n] = ""  # a key deleted (its block, if any, then hangs under the key before it)
    bomb = _bomb(draw(st.integers(1, 9)), 8) if draw(st.integers(0, 3)) == 0 else ""
    text = (bomb + "\n".join(lines) + "\n").encode()
    return draw(mutated(st.just(text), tokens=_YAML_TOKENS, max_edits=2)) if draw(st.integers(0, 3)) == 0 else text


def _check_file(data: bytes) -> None:
    """load_flow on the bytes: a Flow, or FlowError naming the file in every problem; quick either way."""
    TALLY.example("flow-yaml")
    with written(data, ".yaml") as path:
        started = time.monotonic()
        try:
            flow = load_flow(path)
        except FlowError as exc:
            problems = exc.problems
            assert problems and all(p.startswith(f"{path}: ") for p in problems), problems
            assert not any(UNCHECKED in p for p in problems), f"a gap in the checks: {problems}"
            TALLY.rejected("flow-yaml", *(p.replace(str(path), "FILE") for p in problems))
        else:
            assert flow.start in flow.nodes and isinstance(flow.name, str) and flow.name
        took = time.monotonic() - started
    assert took < 5.0, f"load_flow took {took:.1f} s"


_BOMBED = (_bomb(9, 7) + re.sub(r"^(flow|description|version): .*$", r"\1: *b7", FLOW_FILES["callback.yaml"],
                                 flags=re.MULTILINE)).encode()
_DEEP = "\n".join(line.replace("queue: \"12345\"", "queue: " + "[" * 2000 + "]" * 2000)
                  for line in FLOW_FILES["callback.yaml"].splitlines()).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow_texts())
@example(_DEEP)  # RecursionError out of PyYAML
@example(FLOW_FILES["callback.yaml"].replace("priority: 20", "priority: 1" + "0" * 5000).encode())  # int() limit
@example(FLOW_FILES["callback.yaml"].replace('version: "1"', "version: 0x" + "f" * 5000).encode())  # str() limit
@example(FLOW_FILES["callback.yaml"].replace('version: "1"', "version: 2024-13-45").encode())  # datetime()
@example(_BOMBED)  # repr() of 3 × 43M items
def test_a_mutated_flow_file_loads_or_is_a_flow_error_naming_the_file(data):
    _check_file(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_a_flow_file_load_or_are_a_flow_error(data):
    _check_file(data)
