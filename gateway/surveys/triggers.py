"""Work-order-closed events: an authenticated HTTP POST and a Redis Stream.

HTTP (twisted.web, mounted at ``/surveys``). Every request needs
``Authorization: Bearer <token>``; the token comes only from the environment
(``HOTLINE_SURVEYS_API_TOKEN`` or ``…_FILE``); without one the API answers 503.

    POST /surveys/closed   one event {"order_id", "phone", "category", "topic", "unit",
                           "closed_at", ["reported_at"]} or {"orders": [event, ...]} (≤ 500)
                           → 202 {"results": [{"order_id", "result"}]} (added | exists | ignored:… | invalid:…)
    GET  /surveys/orders/<order id>   the order's survey status and answers (number masked)

Stream: ``hotline:workorders:closed`` (configurable), one entry per event with the same
field names; read after a cursor (``<prefix>:surveys:cursor:closed``). Both are idempotent
per order id: a replayed event or a retried POST schedules nothing twice.
"""
from __future__ import annotations

import hmac
import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from ..httpjson import read_json
from ..masking import mask_number
from .campaign import SurveyCampaign
from .model import EventError, parse_closed_event

__all__ = ["SurveysResource", "closed_event_handler"]

log = Logger()
_MAX_BODY = 512 * 1024
_MAX_BATCH = 500
_VISIBLE = ("status", "category", "topic", "unit", "closed_at", "due_at", "call", "solved", "satisfaction",
            "solved_via", "satisfaction_via", "comment", "reopened", "finished_at")


async def _accept(campaign: SurveyCampaign, data: Any, source: str) -> dict[str, str]:
    order_id = str(data.get("order_id") or data.get("id") or "") if isinstance(data, dict) else ""
    try:
        if not isinstance(data, dict):
            raise EventError("an event must be an object")
        order = parse_closed_event(data, campaign.tz)
    except EventError as exc:
        campaign.metrics.ignored.labels(reason="invalid").inc()
        log.warn("survey trigger ({source}): invalid event {order}: {error}", source=source, order=order_id[:64],
                 error=str(exc))
        return {"order_id": order_id[:64], "result": f"invalid:{exc}"}
    return {"order_id": order.order_id, "result": await campaign.accept(order, source)}


def closed_event_handler(campaign: SurveyCampaign):
    """Handler for a :class:`gateway.callbacks.sources.StreamSource` on the closed-orders stream."""
    async def handle(entry_id: str, fields: dict[str, str]) -> object:
        return (await _accept(campaign, dict(fields), "stream"))["result"]

    return handle


class SurveysResource(resource.Resource):
    isLeaf = True

    def __init__(self, campaign: SurveyCampaign, token: str) -> None:
        super().__init__()
        self.campaign = campaign
        self._token = token.encode()

    def _authorised(self, request) -> bool:
        header = request.getHeader(b"authorization") or b""
        scheme, _, given = header.partition(b" ")
        return bool(self._token) and scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)

    def render(self, request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if not self._token:
            request.setResponseCode(503)
            return b'{"error": "survey API disabled (no token configured)"}'
        if not self._authorised(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="hotline"')
            return b'{"error": "unauthorised"}'
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method.decode()
        d = defer.Deferred.fromCoroutine(self._route(request, method, path))

        def respond(result):
            code, body = result
            request.setResponseCode(code)
            request.write(json.dumps(body, ensure_ascii=False).encode())
            request.finish()

        def failed(failure):
            log.warn("survey API {method} failed: {error}", method=method, error=failure.getErrorMessage())
            request.setResponseCode(503)
            request.write(b'{"error": "storage unavailable"}')
            request.finish()

        d.addCallbacks(respond, failed)
        return server.NOT_DONE_YET

    async def _route(self, request, method: str, path: list[str]) -> tuple[int, Any]:
        if method == "POST" and path == ["closed"]:
            code, data = read_json(request, _MAX_BODY)
            if code:
                return code, data
            events = data.get("orders") if isinstance(data, dict) and "orders" in data else [data]
            if not isinstance(events, list) or not 1 <= len(events) <= _MAX_BATCH:
                return 400, {"error": f"need one event or {{\"orders\": [...]}} with 1..{_MAX_BATCH} events"}
            results = [await _accept(self.campaign, event, "http") for event in events]
            return 202, {"results": results}
        if method == "GET" and len(path) == 2 and path[0] == "orders":
            order = await self.campaign._run(lambda: self.campaign.store.order(path[1]))
            if not order:
                return 404, {"error": "no such order"}
            view = {name: order.get(name, "") for name in _VISIBLE}
            view["order_id"] = path[1]
            view["phone"] = mask_number(order.get("dial", ""))
            return 200, view
        return 404, {"error": "not supported"}

