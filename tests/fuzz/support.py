"""What every fuzz property shares: the per-parser tally, byte mutations, chunkings, scratch files.

Every property counts what it tries in :data:`TALLY`, per parser: most through
:func:`parse_or_reject` (one parse, counted; a documented error must carry a
message, whose shape is kept to count distinct rejections; any other exception
propagates — a crash, which hypothesis reports), the stream properties with
``TALLY.example``/``TALLY.rejected`` directly. ``tests/fuzz/conftest.py``
prints the tally after a pytest run; ``bench/fuzz_bench.py`` reads it per parser.
"""
from __future__ import annotations

import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

__all__ = ["CUTS", "TALLY", "Tally", "chunked", "mutated", "parse_or_reject", "shape", "written"]

T = TypeVar("T")

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"#x[0-9a-fA-F]+|\d+(?:\.\d+)?")
_NODE = re.compile(r"\bnode [^:\s]+:")


def shape(message: str) -> str:
    """A rejection message with its quoted values, numbers and node names blanked: what kind of refusal it is."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return _NODE.sub("node …:", _NUMBER.sub("N", _QUOTED.sub("'…'", first)))[:120]


class Tally:
    """Examples tried and rejection shapes seen, per parser (one pytest session or one bench run)."""

    def __init__(self) -> None:
        self.examples: Counter[str] = Counter()
        self.rejections: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def example(self, parser: str) -> None:
        self.examples[parser] += 1

    def rejected(self, parser: str, *messages: str) -> None:
        for message in messages:
            assert message.strip(), f"{parser}: a rejection without a message"
            self.rejections[parser][shape(message)] += 1

    def reset(self) -> None:
        self.examples.clear()
        self.rejections.clear()

    def line(self) -> str:
        counts = ", ".join(f"{parser} {count}" for parser, count in sorted(self.examples.items()))
        return f"fuzz: examples tried per parser: {counts}"

    def as_dict(self) -> dict[str, Any]:
        return {
            parser: {"examples": count, "distinct_rejections": len(self.rejections[parser]),
                     "rejections": dict(self.rejections[parser].most_common())}
            for parser, count in sorted(self.examples.items())
        }


#: the tally of this process (a pytest session, or the bench)
TALLY = Tally()


def parse_or_reject(parser: str, errors: type[BaseException] | tuple[type[BaseException], ...],
                    function: Callable[..., T], *args: Any, hide: Sequence[str] = ()) -> tuple[T | None,
                                                                                       BaseException | None]:
    """``(result, None)``, or ``(None, error)`` for a documented error with a message; anything else raises.

    ``hide``: texts of this example (a scratch file's path, the input) blanked before the message's shape is kept.
    """
    TALLY.example(parser)
    try:
        return function(*args), None
    except errors as exc:
        message = str(exc)
        for text in hide:
            message = message.replace(text, "…") if text else message
        TALLY.rejected(parser, message)
        return None, exc


# -- inputs ---------------------------------------------------------------------------------------------------------
_BYTE_TOKENS = [b"\n", b"\r", b"\r\n", b"\r\n\r\n", b":", b" ", b"\t", b"\x00", b"\xff", b"\xe5\xb8\x82", b"\xe5"]


@st.composite
def mutated(draw, base: st.SearchStrategy[bytes], tokens: Sequence[bytes] = (), max_edits: int = 4) -> bytes:
    """Valid bytes with a few edits: bytes flipped, tokens or random bytes inserted, ranges cut or doubled."""
    data = bytearray(draw(base))
    pieces = st.sampled_from([*_BYTE_TOKENS, *tokens]) | st.binary(min_size=1, max_size=8)
    for _ in range(draw(st.integers(0, max_edits))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["flip", "insert", "cut", "double", "truncate"]))
        if edit == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(pieces)
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "double":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
        elif edit == "truncate":
            del data[at:]
    return bytes(data)


#: where to cut a stream (points past its end are ignored: one piece)
CUTS = st.lists(st.integers(0, 600), max_size=12)


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``cuts``, in order (no empty pieces; at least one piece)."""
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:])] or [b""]


@contextmanager
def written(data: bytes, suffix: str) -> Iterator[Path]:
    """``data`` in a scratch file of its own, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="hotline-fuzz-") as directory:
        path = Path(directory) / f"fuzzed{suffix}"
        path.write_bytes(data)
        yield path
