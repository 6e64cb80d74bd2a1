"""The per-call record the gateway keeps (one per FastAGI session)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .masking import mask_number


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

    def __post_init__(self) -> None:
        self.caller_masked = mask_number(self.caller)

    def as_hash(self) -> dict[str, str]:
        """Flat string fields for a Redis hash."""
        data = {
            "call_id": self.call_id,
            "channel": self.channel,
            "caller": self.caller,
            "caller_masked": self.caller_masked,
            "script": self.script,
            "flow": self.flow,
            "flow_version": self.flow_version,
            "started_at": f"{self.started_at:.3f}",
            "outcome": self.outcome,
            "handoff": self.handoff,
            "path": json.dumps(self.path, ensure_ascii=False) if self.path else "[]",
        }
        if self.ended_at is not None:
            data["ended_at"] = f"{self.ended_at:.3f}"
        return data

    def end_hash(self) -> dict[str, str]:
        """What the end of a call adds to the hash written at its start (plus ``call_id``).

        The other fields (caller, channel, script, started_at) are fixed when
        the call starts; rewriting them at the end only cost bytes and CPU.
        """
        data = self.as_hash()
        return {key: data[key] for key in ("call_id", *self.END_FIELDS) if key in data}
