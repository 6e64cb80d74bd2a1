"""Authenticated HTTP API for callbacks (twisted.web), mounted at ``/callbacks``.

Every request needs ``Authorization: Bearer <token>``; the token comes only
from the environment (``HOTLINE_CALLBACKS_API_TOKEN`` or ``…_FILE``). Without
a token the API answers 503 to everyone. Numbers are masked in every answer.

    GET    /callbacks[?state=pending|leased|done&limit=N]   list, most recent first
    GET    /callbacks/<id>                                   one callback with its history
    POST   /callbacks   {"number": "...", "note": "..."}     add a manual callback (source api)
    DELETE /callbacks/<id>                                   cancel (a call in progress finishes)
    GET    /callbacks/dnc[?limit=N]                          the do-not-call list (masked numbers)
    POST   /callbacks/dnc {"number": "..."}                  put a number on it (declined follow-up)
    DELETE /callbacks/dnc {"number": "..."}                  take a number off it

``<id>`` is a callback's id: jobs of other campaigns (survey calls) are
neither shown nor cancelled here. The do-not-call list holds for every
campaign of the dialer; a number is added or removed by its full digits in the
body (never in the URL, which access logs keep) and answered masked.
"""
from __future__ import annotations

import hmac
import json
import uuid
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from ..dialer.jobs import Job
from ..httpjson import read_json
from ..masking import mask_number
from .service import CallbackService, job_id_for

__all__ = ["CallbacksResource"]

log = Logger()
_MAX_BODY = 4096


def _job_view(job: Job) -> dict[str, Any]:
    view = job.public()
    view["number"] = mask_number(job.number)
    return view


class CallbacksResource(resource.Resource):
    isLeaf = True

    def __init__(self, service: CallbackService, token: str) -> None:
        super().__init__()
        self.service = service
        self._token = token.encode()

    # -- plumbing ------------------------------------------------------------------------
    def _authorised(self, request) -> bool:
        if not self._token:
            return False
        header = request.getHeader(b"authorization") or b""
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)

    def render(self, request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if not self._token:
            return self._json(request, 503, {"error": "callback API disabled (no token configured)"})
        if not self._authorised(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="hotline"')
            return self._json(request, 401, {"error": "unauthorised"})
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method.decode()
        d = defer.Deferred.fromCoroutine(self._route(request, method, path))

        def respond(result):
            code, body = result
            request.setResponseCode(code)
            request.write(json.dumps(body, ensure_ascii=False).encode())
            request.finish()

        def failed(failure):
            log.warn("callback API {method} failed: {error}", method=method, error=failure.getErrorMessage())
            request.setResponseCode(503)
            request.write(b'{"error": "storage unavailable"}')
            request.finish()

        d.addCallbacks(respond, failed)
        return server.NOT_DONE_YET

    @staticmethod
    def _json(request, code: int, body: dict) -> bytes:
        request.setResponseCode(code)
        return json.dumps(body, ensure_ascii=False).encode()

    @staticmethod
    def _body(request) -> tuple[int, Any]:
        """(0, the JSON object) or (an error code, its body)."""
        code, data = read_json(request, _MAX_BODY)
        if code:
            return code, data
        if not isinstance(data, dict) or not isinstance(data.get("number"), str):
            return 400, {"error": "need {\"number\": \"...\"}"}
        return 0, data

    # -- routes ---------------------------------------------------------------------------
    async def _route(self, request, method: str, path: list[str]) -> tuple[int, Any]:
        if path[:1] == ["dnc"]:
            return await self._dnc(request, method, path[1:])
        if method == "GET" and not path:
            state = (request.args.get(b"state") or [b""])[0].decode() or None
            try:
                limit = max(1, min(1000, int((request.args.get(b"limit") or [b"100"])[0])))
            except ValueError:
                return 400, {"error": "limit must be a number"}
            jobs = await self.service.list(state, limit)
            return 200, {"callbacks": [_job_view(job) for job in jobs]}
        if method == "GET" and len(path) == 1:
            job, history = await self.service.show(path[0])
            if job is None:
                return 404, {"error": "no such callback"}
            return 200, {"callback": _job_view(job), "history": history}
        if method == "POST" and not path:
            code, data = self._body(request)
            if code:
                return code, data
            mode = data.get("mode")
            if mode not in (None, "citizen-first", "agent-first"):
                return 400, {"error": "mode must be citizen-first or agent-first"}
            call_id = f"api-{uuid.uuid4().hex[:16]}"
            result = await self.service.schedule(
                source="api", call_id=call_id, caller=data["number"], original_at=self.service.clock.seconds(),
                details={"note": str(data.get("note", ""))[:200]}, mode=mode,
            )
            if result.startswith("ignored"):
                return 422, {"error": "number refused by the dialling policy", "result": result}
            if result == "added":
                return 201, {"result": result, "id": job_id_for(call_id)}
            return 200, {"result": result}  # merged into the number's open callback, or already there
        if method == "DELETE" and len(path) == 1:
            result = await self.service.cancel(path[0], "api")
            if result == 0:
                return 404, {"error": "no pending callback with this id"}
            return 200, {"result": "cancelled" if result == 2 else "cancel-requested"}
        return 405 if path in ([],) or len(path) == 1 else 404, {"error": "not supported"}

    async def _dnc(self, request, method: str, rest: list[str]) -> tuple[int, Any]:
        if rest:
            return 404, {"error": "not supported"}
        if method == "GET":
            try:
                limit = max(1, min(10000, int((request.args.get(b"limit") or [b"1000"])[0])))
            except ValueError:
                return 400, {"error": "limit must be a number"}
            count, numbers = await self.service.dnc_list(limit)
            return 200, {"count": count, "numbers": numbers}
        if method not in ("POST", "DELETE"):
            return 405, {"error": "not supported"}
        code, data = self._body(request)
        if code:
            return code, data
        result, detail = await self.service.dnc_change(data["number"], add=method == "POST", via="api")
        if result == "refused":
            return 400, {"error": f"not a valid phone number: {detail}"}
        if result == "not-listed":
            return 404, {"error": "number not on the do-not-call list", "number": detail}
        return 201 if result == "added" else 200, {"result": result, "number": detail}
