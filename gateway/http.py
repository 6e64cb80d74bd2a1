"""The gateway's HTTP face: /metrics, /healthz, /readyz (twisted.web).

``/readyz`` answers 200 when every readiness check is up and 503 otherwise
(one ``name ok|down`` line per check); :func:`readiness_checks` builds the
readiness function from named checks (the composition root passes Redis's
ping and the AMI session's state).
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

__all__ = ["ReadinessCheck", "build_site", "readiness_checks"]

log = Logger()

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
#: one named check: True when up (may return an awaitable, e.g. a Deferred)
Check = Callable[[], "Awaitable[bool] | bool"]


def readiness_checks(checks: Mapping[str, Check]) -> ReadinessCheck:
    """A :data:`ReadinessCheck` from named checks; a check that raises or fails is reported down."""

    async def check_all() -> dict[str, bool]:
        results = {}
        for name, check in checks.items():
            try:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
            except Exception:  # one broken check must not hide the others' state
                log.failure("readiness check {name} failed", name=name)
                value = False
            results[name] = bool(value)
        return results

    return check_all


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
        gone = []
        # the prober may hang up before a slow check answers: then there is no one to answer
        request.notifyFinish().addErrback(gone.append)
        d = defer.Deferred.fromCoroutine(self._check())

        def answer(code: int, body: str) -> None:
            if gone:
                return
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(body.encode())
            request.finish()

        def respond(checks: dict[str, bool]) -> None:
            ready = all(checks.values())
            answer(200 if ready else 503,
                   "".join(f"{name} {'ok' if ok else 'down'}\n" for name, ok in sorted(checks.items())))

        def failed(failure) -> None:
            log.failure("readiness check failed", failure)
            answer(503, f"error {failure.getErrorMessage()}\n")

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
