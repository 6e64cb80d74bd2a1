"""The per-call record the gateway keeps (one per FastAGI session)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string  # what json.dumps(ensure_ascii=False) uses for a str

from .masking import mask_number


def _path_json(path: list[str]) -> str:
    """``json.dumps(path, ensure_ascii=False)`` (``[]`` for none), without the encoder's set-up per call."""
    if not path:
        return "[]"
    try:
        return "[" + ", ".join(map(_json_string, path)) + "]"
    except TypeError:  # an item that is not a str: let json decide (a number, or the same TypeError)
        return json.dumps(path, ensure_ascii=False)


@dataclass
class CallRecord:
    call_id: str
    channel: str
    caller: str
    script: str
    started_at: float
    flow: str = ""
    flow_version: str = ""
    ended_at: float | None = None
    outcome: str = "in_progress"
    handoff: str = ""
    path: list[str] = field(default_factory=list)

    #: the fields a call's end can change (written again at the end, with call_id)
    END_FIELDS = ("outcome", "ended_at", "handoff", "path", "flow", "flow_version")
    #: where :meth:`hash_fields` puts the value of ``started_at`` (the call index's score)
    STARTED_AT_VALUE = 3

    def __post_init__(self) -> None:
        self.caller_masked = mask_number(self.caller)

    def hash_fields(self) -> tuple[str, ...]:
        """The Redis hash as flat ``name, value, …`` pairs: ``call_id`` first, then ``started_at``.

        ``ended_at`` only once it is set; ``path`` as JSON.
        """
        fields = (
            "call_id", self.call_id,
            "started_at", f"{self.started_at:.3f}",
            "channel", self.channel,
            "caller", self.caller,
            "caller_masked", self.caller_masked,
            "script", self.script,
            "flow", self.flow,
            "flow_version", self.flow_version,
            "outcome", self.outcome,
            "handoff", self.handoff,
            "path", _path_json(self.path),
        )
        if self.ended_at is not None:
            return fields + ("ended_at", f"{self.ended_at:.3f}")
        return fields

    def end_fields(self) -> tuple[str, ...]:
        """What the end of a call adds to the hash written at its start, as flat pairs: ``call_id``
        and :attr:`END_FIELDS` (``ended_at`` only once it is set).

        The other fields (caller, channel, script, started_at) are fixed when
        the call starts; rewriting them at the end only cost bytes and CPU.
        """
        fields = (
            "call_id", self.call_id,
            "outcome", self.outcome,
            "handoff", self.handoff,
            "path", _path_json(self.path),
            "flow", self.flow,
            "flow_version", self.flow_version,
        )
        if self.ended_at is not None:
            return fields + ("ended_at", f"{self.ended_at:.3f}")
        return fields

    def as_hash(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (:meth:`hash_fields` as a dict)."""
        fields = self.hash_fields()
        return dict(zip(fields[::2], fields[1::2]))

    def end_hash(self) -> dict[str, str]:
        """:meth:`end_fields` as a dict."""
        fields = self.end_fields()
        return dict(zip(fields[::2], fields[1::2]))
