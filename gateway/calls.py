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
