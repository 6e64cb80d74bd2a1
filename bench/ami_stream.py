"""The captured AMI stream the AMI benchmarks replay.

Built from the real sessions recorded on the lab's Asterisk 22
(``tests/lab/fixtures/*.ami``; ``tests/unit/fixtures`` holds only a queue_log
sample, no AMI). One *round* is the three recorded calls in the order they
happened; the stream repeats rounds until it holds the asked number of
events. So that the state model sees new calls, not replays of finished ones,
round *k* gets its own call identities (``…Uniqueid``, ``…Linkedid`` and
``CallId`` values suffixed ``.r<k>``) and its ``Timestamp`` values moved
``k × ROUND_PERIOD`` seconds later. Only ``Event`` messages are kept (the
recorded replies to the lab's own Originate actions are dropped), so
"events" and "messages" are the same count.

``kind="all"`` is everything Asterisk sent in the recording (all event
classes, including the dialplan class — ``Newexten``, ``VarSet`` — that the
gateway does not ask for). ``kind="subscribed"`` is what the gateway's AMI
user actually receives: the events of its subscription table, narrowed like
the ``manager.conf`` event filter (``UserEvent`` only with
``UserEvent: HotlinePath``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_FIXTURES = REPO / "tests" / "lab" / "fixtures"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
#: seconds between the starts of two rounds (one recorded round spans ~26 s); whole seconds
ROUND_PERIOD = 30
TERMINATOR = b"\r\n\r\n"

_ID_HEADER = re.compile(rb"^(\w*(?:Uniqueid|Linkedid)|CallId): ([^\r\n]+)", re.MULTILINE)
_TIMESTAMP = re.compile(rb"^Timestamp: ([0-9]+(?:\.[0-9]+)?)", re.MULTILINE)


@dataclass(frozen=True)
class Stream:
    """``data`` holds ``events`` complete AMI events (no banner); ``offsets[i]``
    is where event *i* starts (``offsets[events] == len(data)``)."""

    data: bytes
    offsets: tuple[int, ...]
    kind: str

    @property
    def events(self) -> int:
        return len(self.offsets) - 1

    def slice(self, start: int, stop: int) -> bytes:
        """Events ``start`` … ``stop - 1`` as bytes (always whole messages)."""
        return self.data[self.offsets[start] : self.offsets[stop]]


def recorded_sessions(directory: Path = LAB_FIXTURES) -> list[bytes]:
    """The recorded sessions, oldest first (by their first Timestamp)."""
    sessions = []
    for path in sorted(directory.glob("*.ami")):
        data = path.read_bytes()
        first = _TIMESTAMP.search(data)
        sessions.append((float(first.group(1)) if first else 0.0, path.name, data))
    if not sessions:
        raise FileNotFoundError(f"no recorded AMI sessions (*.ami) in {directory}")
    return [data for _, _, data in sorted(sessions)]


def _subscribed_names() -> frozenset[str]:
    from gateway.monitor.events import AmiEventAdapter, subscription_table
    from gateway.monitor.model import HotlineState

    return frozenset(subscription_table(AmiEventAdapter(HotlineState(), lambda: 0.0)))


def round_events(sessions: list[bytes], kind: str = "all") -> list[bytes]:
    """One round: the Event messages of ``sessions`` (each with its terminator)."""
    if kind not in ("all", "subscribed"):
        raise ValueError(f"unknown stream kind {kind!r}")
    names = _subscribed_names() if kind == "subscribed" else None
    events = []
    for data in sessions:
        for block in data.split(TERMINATOR):
            block = block.strip(b"\r\n")
            if not block.startswith(b"Event: "):
                continue
            if names is not None:
                name = block[7 : block.find(b"\r\n") if b"\r\n" in block else len(block)].decode()
                if name not in names:
                    continue
                # manager.conf eventfilter: UserEvent only for HotlinePath
                if name == "UserEvent" and b"\r\nUserEvent: HotlinePath" not in block:
                    continue
            events.append(block + TERMINATOR)
    return events


def rewrite_round(event: bytes, k: int) -> bytes:
    """``event`` (one or more events) as it would be in round ``k``: new call identities, later timestamps."""
    return _RoundTemplate(event).render(k)


class _RoundTemplate:
    """A round cut at the values ``rewrite_round`` changes, so rendering a round is a join."""

    _SLOT = re.compile(_ID_HEADER.pattern + b"|" + _TIMESTAMP.pattern, re.MULTILINE)

    def __init__(self, data: bytes) -> None:
        self.literals: list[bytes] = []
        #: (is_timestamp, value): an id value, or a timestamp's (whole seconds, fraction)
        self.slots: list[tuple[bool, object]] = []
        position = 0
        for match in self._SLOT.finditer(data):
            if match.group(3) is None:
                self.literals.append(data[position : match.start(2)])
                self.slots.append((False, match.group(2)))
                position = match.end(2)
            else:
                whole, _, fraction = match.group(3).partition(b".")
                self.literals.append(data[position : match.start(3)])
                self.slots.append((True, (int(whole), b"." + fraction if fraction else b"")))
                position = match.end(3)
        self.literals.append(data[position:])

    def render(self, k: int) -> bytes:
        suffix = b".r%d" % k
        shift = int(k * ROUND_PERIOD)
        out = [self.literals[0]]
        for (is_timestamp, value), literal in zip(self.slots, self.literals[1:]):
            if is_timestamp:
                whole, fraction = value
                out.append(b"%d" % (whole + shift) + fraction)
            else:
                out.append(value + suffix)
            out.append(literal)
        return b"".join(out)


def build_stream(events: int, kind: str = "all", sessions: list[bytes] | None = None) -> Stream:
    """Exactly ``events`` events: rounds of the recorded sessions, rewritten per round."""
    one_round = round_events(sessions if sessions is not None else recorded_sessions(), kind)
    if not one_round:
        raise ValueError("the recorded sessions hold no events of that kind")
    template = _RoundTemplate(b"".join(one_round))
    parts: list[bytes] = []
    offsets = [0]
    position = 0
    k = 0
    while len(offsets) <= events:
        blocks = template.render(k).split(TERMINATOR)[:-1]
        for block in blocks[: events - len(offsets) + 1]:
            data = block + TERMINATOR
            parts.append(data)
            position += len(data)
            offsets.append(position)
        k += 1
    return Stream(b"".join(parts), tuple(offsets), kind)


def chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into reads of ``size`` bytes, as a socket would hand them over."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0…1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
