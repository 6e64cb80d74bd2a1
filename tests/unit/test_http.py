"""The HTTP face: /healthz, /readyz (200 ready, 503 when AMI or Redis is down or a
check breaks) — rendered with twisted.web's DummyRequest, no sockets."""
from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from gateway.http import build_site, readiness_checks
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_store import RedisCallStore


def get(site, path: bytes) -> DummyRequest:
    """GET ``path`` through the site's resource tree, as twisted.web would."""
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.method = b"GET"
    result = site.getResourceFor(request).render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request


def body(request: DummyRequest) -> str:
    return b"".join(request.written).decode()


def code(request: DummyRequest) -> int:
    return request.responseCode or 200  # DummyRequest leaves it None unless set


class FakeRedis:
    """Stands for the call records' pipeline client (RespClient.execute): answers PING or fails fast."""

    def __init__(self, up: bool = True) -> None:
        self.up = up

    def execute(self, commands) -> defer.Deferred:
        if not self.up:
            return defer.fail(ConnectionError("PING: Redis at redis://127.0.0.1:6379 is not connected"))
        return defer.succeed([b"PONG" for _ in commands])


class Ami:
    logged_in = True


def gateway_site(redis: FakeRedis, ami: Ami):
    """The site with the same readiness checks as gateway/app.py: Redis's ping (through the
    call store and its pipeline client) and the AMI session's state."""
    registry = CollectorRegistry()
    store = RedisCallStore(redis.execute, task.Clock(), GatewayMetrics(registry))
    readiness = readiness_checks({"redis": store.ping, "ami": lambda: ami.logged_in})
    return build_site(registry, readiness)


def test_healthz_is_ok_whatever_the_dependencies():
    site = gateway_site(FakeRedis(up=False), Ami())
    request = get(site, b"/healthz")
    assert (code(request), body(request), request.finished) == (200, "ok\n", 1)


def test_readyz_is_200_when_redis_and_ami_are_up():
    site = gateway_site(FakeRedis(), Ami())
    request = get(site, b"/readyz")
    assert request.finished == 1
    assert (code(request), body(request)) == (200, "ami ok\nredis ok\n")


def test_readyz_is_503_while_ami_is_logged_out():
    ami = Ami()
    ami.logged_in = False
    site = gateway_site(FakeRedis(), ami)
    request = get(site, b"/readyz")
    assert (code(request), body(request)) == (503, "ami down\nredis ok\n")


def test_readyz_is_503_when_the_redis_ping_fails():
    site = gateway_site(FakeRedis(up=False), Ami())
    request = get(site, b"/readyz")
    assert (code(request), body(request)) == (503, "ami ok\nredis down\n")


def test_a_check_that_raises_is_reported_down_and_the_others_still_answer():
    def broken() -> bool:
        raise RuntimeError("monitor not wired")

    site = build_site(CollectorRegistry(), readiness_checks({"ami": broken, "redis": lambda: defer.succeed(True)}))
    request = get(site, b"/readyz")
    assert (code(request), body(request)) == (503, "ami down\nredis ok\n")


def test_readiness_function_that_raises_is_a_503_not_a_hung_request():
    async def readiness() -> dict[str, bool]:
        raise RuntimeError("readiness bug")

    request = get(build_site(CollectorRegistry(), readiness), b"/readyz")
    assert request.finished == 1
    assert (code(request), body(request)) == (503, "error readiness bug\n")


def test_readyz_waits_for_a_slow_check_and_skips_the_answer_if_the_prober_hung_up():
    pending: defer.Deferred = defer.Deferred()
    site = build_site(CollectorRegistry(), readiness_checks({"redis": lambda: pending}))
    request = get(site, b"/readyz")
    assert request.finished == 0
    request.processingFailed(Failure(ConnectionDone("prober timed out")))
    pending.callback(True)  # twisted.web would raise on finish() after the loss
    assert (request.finished, request.written) == (0, [])

