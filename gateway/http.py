"""The gateway's HTTP face: /metrics, /healthz, /readyz (twisted.web)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer
from twisted.web import resource, server

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


class _Health(resource.Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok\n"


class _Ready(resource.Resource):
    isLeaf = True

    def __init__(self, check: ReadinessCheck) -> None:
        super().__init__()
        self._check = check

    def render_GET(self, request) -> int:
        d = defer.Deferred.fromCoroutine(self._check())

        def respond(checks: dict[str, bool]) -> None:
            ready = all(checks.values())
            request.setResponseCode(200 if ready else 503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            body = "".join(f"{name} {'ok' if ok else 'down'}\n" for name, ok in sorted(checks.items()))
            request.write(body.encode())
            request.finish()

        def failed(failure) -> None:
            request.setResponseCode(503)
            request.write(f"error {failure.getErrorMessage()}\n".encode())
            request.finish()

        d.addCallbacks(respond, failed)
        return server.NOT_DONE_YET


class _Samples(resource.Resource):
    """``GET /bench/rtt``: raw command round trips as JSON, then cleared (bench only)."""

    isLeaf = True

    def __init__(self, samples: list[float]) -> None:
        super().__init__()
        self._samples = samples

    def render_GET(self, request) -> bytes:
        import json

        body = json.dumps(self._samples).encode()
        self._samples.clear()
        request.setHeader(b"content-type", b"application/json")
        return body


def build_site(
    registry: CollectorRegistry, readiness: ReadinessCheck, rtt_samples: list[float] | None = None
) -> server.Site:
    root = resource.Resource()
    if rtt_samples is not None:
        bench = resource.Resource()
        bench.putChild(b"rtt", _Samples(rtt_samples))
        root.putChild(b"bench", bench)
    root.putChild(b"metrics", MetricsResource(registry=registry))
    root.putChild(b"healthz", _Health())
    root.putChild(b"readyz", _Ready(readiness))
    return server.Site(root)
