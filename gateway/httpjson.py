"""Reading a JSON request body in the gateway's small HTTP APIs (/callbacks, /surveys)."""
from __future__ import annotations

import json
from typing import Any

__all__ = ["read_json"]


def read_json(request, limit: int) -> tuple[int, Any]:
    """``(0, the decoded body)``, or ``(an error status, its JSON body)`` for a body over ``limit``
    bytes (413) or one that is not JSON (400). An empty body reads as ``{}``."""
    body = request.content.read(limit + 1) if request.content is not None else b""
    if len(body) > limit:
        return 413, {"error": "body too large"}
    try:
        return 0, json.loads(body or b"{}")
    except ValueError:
        return 400, {"error": "body must be JSON"}
    except RecursionError:  # "[[[[…" a few thousand deep: json's decoder recurses
        return 400, {"error": "body must be JSON (nested too deeply)"}
