"""A voice message that cannot be transcribed is not dropped: the citizen is called back.

The gateway checks a recording for audio before telling the citizen "saved"
(gateway/flows/recordings.py), but a file can still pass that check and not decode
(a truncated or corrupt WAV, a file removed since). When such a job is dead-lettered,
the worker adds, in the same Redis transaction, a callback request to the IVR's
stream (``hotline:callback:requests``, read by gateway/callbacks/sources.py), in the
shape the flow's ``callback_request`` node writes. Scheduling is idempotent per call id.
"""
from __future__ import annotations

import json
from typing import Any

from .jobs import Delivery

__all__ = ["LOST_VOICE_MESSAGE", "callback_request"]

#: the request's ``reason`` (kept in the callback job's details by nobody but logs and the stream)
LOST_VOICE_MESSAGE = "voice_message_unreadable"


def callback_request(delivery: Delivery, reason: str) -> dict[str, Any] | None:
    """The callback request for a dead-lettered voice-message job, or None (no caller to call, a
    survey comment, or a job that cannot be read at all)."""
    try:
        job = json.loads(str(delivery.fields.get("data") or ""))
    except ValueError:
        return None
    if not isinstance(job, dict) or job.get("kind") or not job.get("caller") or not job.get("call_id"):
        return None  # only the IVR's voice messages (survey comments have a kind and no citizen waiting)
    return {
        "call_id": str(job["call_id"]),
        "caller": str(job["caller"]),
        "queue": "",
        "position": None,
        "estimated_wait": None,
        "requested_at": job.get("recorded_at") or None,
        "flow": job.get("flow", ""),
        "choices": list(job.get("choices") or []),
        "priority": 0,
        "reason": LOST_VOICE_MESSAGE,
        "recording_id": str(job.get("recording_id", "")),
        "error": reason[:500],
    }
