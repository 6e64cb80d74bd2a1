"""The reactor-native Redis pipeline client (gateway/storage/resp.py).

Protocol tests run over ``StringTransport`` with ``task.Clock``: the exact RESP
bytes, replies cut anywhere (hypothesis), FIFO pairing, error replies,
timeouts, lost connections, garbage. The client's AUTH/SELECT handshake and
fail-fast run against an in-memory endpoint. One test at the end uses a real,
private ``redis-server`` (killed and restarted mid-run).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from gateway.calls import CallRecord
from gateway.metrics import GatewayMetrics
from gateway.storage.redis_store import RedisCallStore
from gateway.storage.resp import (
    RespClient,
    RespCommandError,
    RespConnectionLost,
    RespNotConnected,
    RespProtocol,
    RespProtocolError,
    RespTimeout,
    endpoint_for,
    handshake_commands,
    parse_redis_url,
)

from ..reactor_helpers import outcome, private_reactor, run_until, wait  # noqa: F401 — private_reactor: a fixture


class CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def connected(timeout: float | None = 1.0):
    clock = task.Clock()
    proto = RespProtocol(clock=clock, timeout=timeout)
    transport = CountingTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


# -- encoding ---------------------------------------------------------------------
def test_a_pipeline_is_exactly_its_resp_bytes_in_one_write():
    proto, transport, _ = connected()
    proto.execute([("HSET", "hotline:call:c1", "caller", "138 0013 8000"), (b"EXPIRE", "hotline:call:c1", 60),
                   ("ZADD", "hotline:calls", 1001.5, "c1")])
    assert transport.writes == 1
    assert transport.value() == (
        b"*4\r\n$4\r\nHSET\r\n$15\r\nhotline:call:c1\r\n$6\r\ncaller\r\n$13\r\n138 0013 8000\r\n"
        b"*3\r\n$6\r\nEXPIRE\r\n$15\r\nhotline:call:c1\r\n$2\r\n60\r\n"
        b"*4\r\n$4\r\nZADD\r\n$13\r\nhotline:calls\r\n$6\r\n1001.5\r\n$2\r\nc1\r\n"
    )


def test_utf8_text_is_sent_as_its_bytes():
    proto, transport, _ = connected()
    proto.execute([("SET", "k", "市政局")])
    assert transport.value() == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\n" + "市政局".encode() + b"\r\n"


def test_an_argument_that_cannot_be_encoded_fails_the_request_not_the_caller():
    proto, transport, _ = connected()
    result = outcome(proto.execute([("SET", "k", None)]))
    assert result[0].check(ValueError) and "SET" in result[0].getErrorMessage()
    assert transport.value() == b"" and proto.pending_requests == 0


def test_an_empty_pipeline_fires_at_once_without_writing():
    proto, transport, _ = connected()
    assert outcome(proto.execute([])) == [[]]
    assert transport.writes == 0


# -- replies ----------------------------------------------------------------------
REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b":42\r\n", 42),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*2\r\n$1\r\na\r\n:7\r\n", [b"a", 7]),
    (b"*0\r\n", []),
    (b"$12\r\nline\r\nbreaks\r\n", b"line\r\nbreaks"),
]


@settings(max_examples=300, deadline=None)
@given(picks=st.lists(st.sampled_from(REPLIES), min_size=1, max_size=8), data=st.data())
def test_replies_cut_at_any_byte_boundary_complete_the_request(picks, data):
    proto, _, _ = connected()
    result = outcome(proto.execute([("PING",)] * len(picks)))
    stream = b"".join(wire for wire, _ in picks)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12)) if len(stream) > 1 else [])
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    for piece in pieces[:-1]:
        proto.dataReceived(piece)
        assert result == []  # nothing fires before the last reply is complete
    proto.dataReceived(pieces[-1])
    assert result == [[value for _, value in picks]]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(min_size=1, max_size=64), chunk=st.integers(1, 16))
def test_garbage_from_the_server_never_raises_out_of_data_received(garbage, chunk):
    """Whatever arrives: the request stays pending, completes, or fails with a clear error; no exception escapes."""
    proto, transport, _ = connected()
    result = outcome(proto.execute([("GET", "k")]))
    for start in range(0, len(garbage), chunk):
        proto.dataReceived(garbage[start:start + chunk])  # must not raise
    if result and isinstance(result[0], Failure):
        assert result[0].check(RespProtocolError, RespCommandError)
        if result[0].check(RespProtocolError):
            assert transport.disconnected and not proto.ready
            assert "GET: unreadable reply" in result[0].getErrorMessage() or "no request" in result[0].getErrorMessage()


def test_garbage_fails_every_pending_request_and_aborts():
    proto, transport, _ = connected()
    first, second = outcome(proto.execute([("GET", "a")])), outcome(proto.execute([("GET", "b")]))
    proto.dataReceived(b"?what\r\n")
    assert first[0].check(RespProtocolError) and second[0].check(RespProtocolError)
    assert "GET: unreadable reply from Redis" in first[0].getErrorMessage()
    assert transport.disconnected
    proto.dataReceived(b"+OK\r\n")  # ignored once dropping
    assert outcome(proto.execute([("GET", "c")]))[0].check(RespNotConnected)


def test_a_map_keyed_by_an_array_is_a_protocol_error_not_a_type_error():
    """hiredis raises TypeError (unhashable key) for this RESP3 shape: still a clear protocol error."""
    proto, transport, _ = connected()
    result = outcome(proto.execute([("GET", "a")]))
    proto.dataReceived(b"%1\r\n*1\r\n:1\r\n:2\r\n")
    assert result[0].check(RespProtocolError) and "TypeError" in result[0].getErrorMessage()
    assert transport.disconnected


def test_a_reply_nobody_asked_for_drops_the_connection():
    proto, transport, _ = connected()
    proto.dataReceived(b"+OK\r\n")
    assert transport.disconnected and not proto.ready


def test_two_requests_pair_with_their_replies_in_order():
    proto, _, _ = connected()
    first = outcome(proto.execute([("INCR", "a"), ("INCR", "a")]))
    second = outcome(proto.execute([("GET", "b")]))
    proto.dataReceived(b":1\r\n")
    assert first == [] and second == []
    proto.dataReceived(b":2\r\n$3\r\nxyz\r\n")
    assert first == [[1, 2]] and second == [[b"xyz"]]
    assert proto.pending_requests == 0


def test_an_error_reply_fails_its_request_naming_the_command_and_later_ones_still_pair():
    proto, transport, _ = connected()
    first = outcome(proto.execute([("HSET", "k", "f", "v"), ("EXPIRE", "k", 60), ("ZADD", "i", 1, "c")]))
    second = outcome(proto.execute([("GET", "x")]))
    proto.dataReceived(b":1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:1\r\n$1\r\ny\r\n")
    error = first[0].value
    assert isinstance(error, RespCommandError)
    assert error.command == "EXPIRE" and error.index == 1
    assert str(error) == ("EXPIRE (command 2 of 3) failed: "
                          "WRONGTYPE Operation against a key holding the wrong kind of value")
    assert error.replies[0] == 1 and isinstance(error.replies[1], hiredis.ReplyError) and error.replies[2] == 1
    assert second == [[b"y"]]
    assert proto.ready and not transport.disconnected  # an error reply is not a broken stream


def test_error_messages_never_carry_arguments():
    proto, _, _ = connected()
    result = outcome(proto.execute([("AUTH", "hotline", "s3cret-pw")]))
    proto.dataReceived(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    message = result[0].getErrorMessage()
    assert message.startswith("AUTH failed: WRONGPASS") and "s3cret-pw" not in message


def test_a_timeout_fails_the_request_and_drops_the_connection():
    proto, transport, clock = connected(timeout=0.5)
    first = outcome(proto.execute([("GET", "a")]))
    clock.advance(0.3)
    second = outcome(proto.execute([("GET", "b")]))
    clock.advance(0.2)
    assert first[0].check(RespTimeout) and first[0].getErrorMessage() == "GET: no reply within 0.5s"
    assert second[0].check(RespConnectionLost)  # its reply could no longer be paired
    assert transport.disconnected and not proto.ready
    proto.dataReceived(b"$1\r\na\r\n")  # the late reply is ignored
    assert outcome(proto.execute([("GET", "c")]))[0].check(RespNotConnected)


def test_an_answered_request_leaves_no_timer_behind():
    proto, _, clock = connected(timeout=0.5)
    done = outcome(proto.execute([("GET", "a")]))
    proto.dataReceived(b"$-1\r\n")
    assert done == [[None]] and clock.getDelayedCalls() == []


def test_connection_lost_fails_every_pending_request():
    proto, _, clock = connected()
    first, second = outcome(proto.execute([("GET", "a")])), outcome(proto.execute([("GET", "b"), ("GET", "c")]))
    proto.connectionLost(Failure(ConnectionLost("reset by peer")))
    assert first[0].check(RespConnectionLost) and second[0].check(RespConnectionLost)
    assert isinstance(first[0].value, ConnectionError)
    assert "pipeline of 2 (GET): connection lost" in second[0].getErrorMessage()
    assert clock.getDelayedCalls() == [] and proto.lost.called
    assert outcome(proto.execute([("GET", "d")]))[0].check(RespNotConnected)


def test_when_idle_fires_once_the_last_reply_is_in():
    proto, _, _ = connected()
    assert outcome(proto.when_idle()) == [None]
    proto.execute([("GET", "a")])
    idle = outcome(proto.when_idle())
    assert idle == []
    proto.dataReceived(b"$-1\r\n")
    assert idle == [None]


# -- URLs -------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6379/0", {"scheme": "redis", "host": "127.0.0.1", "port": 6379, "db": 0}),
    ("redis://redis.local", {"host": "redis.local", "port": 6379, "db": None, "password": None}),
    ("redis://:pw@10.0.0.5:6380/3", {"host": "10.0.0.5", "port": 6380, "db": 3, "username": None, "password": "pw"}),
    ("redis://app:p%40ss@h/2", {"username": "app", "password": "p@ss", "db": 2}),
    ("redis://h?db=4", {"db": 4}),
    ("redis://[::1]:7000", {"host": "::1", "port": 7000}),
    ("rediss://cache.example.org:6380/1", {"scheme": "rediss", "host": "cache.example.org", "port": 6380, "db": 1}),
    ("unix:///run/redis/redis.sock?db=5", {"scheme": "unix", "path": "/run/redis/redis.sock", "db": 5}),
    ("unix://:pw@/run/redis.sock", {"path": "/run/redis.sock", "password": "pw", "db": None}),
])
def test_urls_parse(url, expected):
    address = parse_redis_url(url)
    assert {key: getattr(address, key) for key in expected} == expected


@pytest.mark.parametrize("url, message", [
    ("http://localhost:6379", "scheme must be redis://, rediss:// or unix://"),
    ("localhost:6379", "scheme must be"),
    ("redis+sentinel://h/0", "scheme must be"),
    ("redis://h:notaport/0", "bad port"),
    ("redis://h:70000/0", "bad port"),
    ("redis:///0", "no host"),
    ("redis://h/zero", "must be a number"),
    ("redis://h/0/1", "only name the database"),
    ("redis://h/1?db=2", "given twice"),
    ("redis://h/0?socket_timeout=3", "unsupported parameter(s) socket_timeout"),
    ("unix://", "no socket path"),
    ("unix://host/path.sock", "names no host"),
])
def test_bad_urls_are_refused_with_a_clear_message(url, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_redis_url(url)


def test_a_password_never_shows_in_reprs_logs_or_errors():
    address = parse_redis_url("redis://app:Sup3rSecret@10.0.0.5:6380/2")
    assert "Sup3rSecret" not in repr(address) and "Sup3rSecret" not in str(address)
    assert str(address) == "redis://app:***@10.0.0.5:6380/2"
    client = RespClient("redis://app:Sup3rSecret@10.0.0.5:6380/2", reactor=MemoryReactorClock())
    assert "Sup3rSecret" not in repr(client)
    for bad in ("redis://app:Sup3rSecret@h:port/0", "redis://:Sup3rSecret@h/0?password=Sup3rSecret",
                "ftp://u:Sup3rSecret@h"):
        with pytest.raises(ValueError) as info:
            parse_redis_url(bad)
        assert "Sup3rSecret" not in str(info.value)


def test_a_bad_url_fails_when_the_client_is_built():
    with pytest.raises(ValueError, match="scheme must be"):
        RespClient("memcached://127.0.0.1:11211", reactor=MemoryReactorClock())


def test_endpoints_for_each_scheme():
    reactor = MemoryReactorClock()
    endpoint_for(reactor, parse_redis_url("redis://127.0.0.1:6390/0"), 2).connect(object())
    endpoint_for(reactor, parse_redis_url("rediss://127.0.0.1:6391/0"), 2).connect(object())
    endpoint_for(reactor, parse_redis_url("unix:///run/redis.sock"), 2).connect(object())
    (host, port, plain, timeout, _), (_, tls_port, tls_factory, _, _) = reactor.tcpClients
    assert (host, port, timeout, tls_port) == ("127.0.0.1", 6390, 2, 6391)
    # endpoints._WrappingFactory around what each endpoint connects with: TLS for rediss:// only
    assert not isinstance(plain._wrappedFactory, TLSMemoryBIOFactory)
    assert isinstance(tls_factory._wrappedFactory, TLSMemoryBIOFactory)
    assert reactor.unixClients[0][0] == "/run/redis.sock"


def test_the_handshake_is_auth_then_select_as_the_url_asks():
    assert handshake_commands(parse_redis_url("redis://h/0")) == []
    assert handshake_commands(parse_redis_url("redis://:pw@h")) == [("AUTH", "pw")]
    assert handshake_commands(parse_redis_url("redis://app:pw@h/3")) == [("AUTH", "app", "pw"), ("SELECT", 3)]
    assert handshake_commands(parse_redis_url("unix:///s?db=2")) == [("SELECT", 2)]


# -- client -----------------------------------------------------------------------
class FakeEndpoint:
    """Connects at once to a StringTransport (or refuses while ``refuse`` is set)."""

    def __init__(self) -> None:
        self.refuse = False
        self.connections: list[tuple[object, StringTransport]] = []

    def connect(self, factory):
        if self.refuse:
            return defer.fail(ConnectionRefusedError("refused"))
        proxy = factory.buildProtocol(None)
        transport = StringTransport()
        proxy.makeConnection(transport)
        self.connections.append((proxy, transport))
        return defer.succeed(proxy)

    @property
    def protocol(self) -> RespProtocol:
        return self.connections[-1][0]._protocol

    @property
    def transport(self) -> StringTransport:
        return self.connections[-1][1]


def client_for(url: str, endpoint: FakeEndpoint):
    clock = task.Clock()
    client = RespClient(url, reactor=clock, timeout=1.0, endpoint_factory=lambda reactor, address, timeout: endpoint,
                        reconnect_initial=1.0, reconnect_max=4.0, jitter=lambda: 0.0)
    return client, clock


def test_the_client_authenticates_and_selects_before_handing_the_connection_out():
    endpoint = FakeEndpoint()
    client, _ = client_for("redis://app:pw@redis.local:6379/2", endpoint)
    client.startService()
    assert endpoint.transport.value() == (
        b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
    )
    assert not client.connected
    assert outcome(client.execute([("PING",)]))[0].check(RespNotConnected)  # not during the handshake
    ready = outcome(client.when_connected())
    endpoint.protocol.dataReceived(b"+OK\r\n+OK\r\n")
    assert client.connected and ready == [None]
    endpoint.transport.clear()
    pong = outcome(client.ping())
    assert endpoint.transport.value() == b"*1\r\n$4\r\nPING\r\n"
    endpoint.protocol.dataReceived(b"+PONG\r\n")
    assert pong == [True]


def test_a_refused_password_drops_the_connection_and_retries_later():
    endpoint = FakeEndpoint()
    client, clock = client_for("redis://:wrong@h/0", endpoint)
    client.startService()
    endpoint.protocol.dataReceived(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    assert endpoint.transport.disconnected and not client.connected
    endpoint.connections[-1][0].connectionLost(Failure(ConnectionDone()))  # must not upset ClientService
    clock.advance(2.0)
    assert len(endpoint.connections) == 2  # retried with the backoff


def test_execute_fails_fast_without_a_connection():
    endpoint = FakeEndpoint()
    endpoint.refuse = True
    client, clock = client_for("redis://127.0.0.1:6379/0", endpoint)
    never_started = outcome(client.execute([("HSET", "k", "f", "v")]))
    assert never_started[0].check(RespNotConnected) and isinstance(never_started[0].value, ConnectionError)
    assert never_started[0].getErrorMessage() == "HSET: Redis at redis://127.0.0.1:6379/0 is not connected"
    client.startService()
    assert outcome(client.execute([("GET", "k")]))[0].check(RespNotConnected)
    assert outcome(client.ping()) == [False]
    endpoint.refuse = False
    clock.advance(10)
    assert client.connected  # no handshake for db 0 without a password
    proxy, _ = endpoint.connections[-1]
    proxy.connectionLost(Failure(ConnectionLost("reset")))
    assert not client.connected
    assert outcome(client.execute([("GET", "k")]))[0].check(RespNotConnected)
    clock.advance(10)
    assert client.connected and len(endpoint.connections) == 2  # reconnected


def test_stop_lets_requests_in_flight_finish_then_disconnects():
    endpoint = FakeEndpoint()
    client, _ = client_for("redis://127.0.0.1/0", endpoint)
    client.startService()
    written = outcome(client.execute([("SET", "k", "v")]))
    stopped = outcome(client.stopService())
    assert stopped == [] and not endpoint.transport.disconnecting
    endpoint.protocol.dataReceived(b"+OK\r\n")
    assert written == [[b"OK"]] and endpoint.transport.disconnecting
    endpoint.connections[-1][0].connectionLost(Failure(ConnectionDone()))
    assert stopped and not isinstance(stopped[0], Failure)


def test_the_client_is_a_service_of_the_gateway():
    from gateway.app import build_gateway
    from gateway.config import load_config

    gateway = build_gateway(MemoryReactorClock(), load_config(environ={"HOTLINE_REDIS_URL": "redis://127.0.0.1:6399/1"}))
    clients = [svc for svc in gateway.services if isinstance(svc, RespClient)]
    assert len(clients) == 1 and str(clients[0].address) == "redis://127.0.0.1:6399/1"
    assert clients[0].timeout == 0.5
    names = [type(svc).__name__ for svc in gateway.services]
    assert names.index("RespClient") < names.index("_Pool")  # stopped after the store's last batch


# -- a real redis-server -------------------------------------------------------------
class PrivateRedis:
    """A throw-away redis-server on a free port (no persistence) that a test may kill and restart."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (needed for the real-Redis round trip)")
    server = PrivateRedis(binary)
    server.start()
    yield server
    server.kill()


def test_records_reach_a_real_redis_and_survive_a_restart(private_redis, private_reactor):
    """Complete hashes with TTL and index entry, each batch one EVAL; a killed server backlogs writes;
    once it is back (same port) the client reconnects and the backlog is replayed in order.
    The expected hashes are spelled out: they are what the store wrote before batches became one EVAL."""
    import redis as blocking

    reactor = private_reactor
    registry = CollectorRegistry()
    client = RespClient(f"redis://127.0.0.1:{private_redis.port}/3", reactor=reactor, timeout=2.0,
                        reconnect_initial=0.05, reconnect_max=0.2, jitter=lambda: 0.0)
    sent: list = []

    def execute(commands):
        sent.append([command[0] for command in commands])
        return client.execute(commands)

    store = RedisCallStore(execute, reactor, GatewayMetrics(registry), ttl=600, retry_interval=0.2,
                           ping=client.ping)
    client.startService()
    try:
        wait(reactor, client.when_connected())
        assert wait(reactor, store.ping()) is True
        check = blocking.Redis(port=private_redis.port, db=3, decode_responses=True)
        first = CallRecord(call_id="r1", channel="PJSIP/carrier-1", caller="13800138000", script="main",
                           started_at=1700000000.25)
        assert wait(reactor, store.call_started(first)) is True
        start_hash = {
            "call_id": "r1", "channel": "PJSIP/carrier-1", "caller": "13800138000", "caller_masked": "138****8000",
            "script": "main", "flow": "", "flow_version": "", "started_at": "1700000000.250",
            "outcome": "in_progress", "handoff": "", "path": "[]",
        }
        assert check.hgetall("hotline:call:r1") == start_hash
        assert 595 < check.ttl("hotline:call:r1") <= 600
        assert check.zrange("hotline:calls", 0, -1, withscores=True) == [("r1", 1700000000.25)]

        first.flow, first.flow_version, first.path = "main", "3", ["menu", "1", '市政局 "x"']
        first.outcome, first.ended_at, first.handoff = "handoff_queue", 1700000042.5, "queue:12345"
        assert wait(reactor, store.call_ended(first)) is True
        assert check.hgetall("hotline:call:r1") == {
            **start_hash, "flow": "main", "flow_version": "3", "path": '["menu", "1", "市政局 \\"x\\""]',
            "outcome": "handoff_queue", "ended_at": "1700000042.500", "handoff": "queue:12345",
        }
        assert 595 < check.ttl("hotline:call:r1") <= 600
        assert check.zrange("hotline:calls", 0, -1, withscores=True) == [("r1", 1700000000.25)]

        many = [CallRecord(call_id=f"m{n}", channel="Local/x", caller="", script="main", started_at=1700000200.0 + n)
                for n in range(150)]
        writes = [store.call_started(rec) for rec in many]
        assert [wait(reactor, d) for d in writes] == [True] * 150
        assert sent == [["EVAL"]] * 3  # start, end, then the 150 starts in one batch: one EVAL each
        assert check.hgetall("hotline:call:m149")["started_at"] == "1700000349.000"
        assert check.zcard("hotline:calls") == 151 and check.zscore("hotline:calls", "m149") == 1700000349.0

        private_redis.kill()
        run_until(reactor, lambda: not client.connected)
        second = CallRecord(call_id="r2", channel="PJSIP/carrier-2", caller="13900139000", script="main",
                            started_at=1700000100.0)
        assert wait(reactor, store.call_started(second)) is False
        second.outcome, second.ended_at = "caller_hangup", 1700000110.0
        assert wait(reactor, store.call_ended(second)) is False
        third = CallRecord(call_id="r3", channel="PJSIP/carrier-3", caller="10086", script="survey",
                           started_at=1700000105.5, flow="survey", flow_version="2", path=["q1"])
        third.outcome, third.ended_at = "completed", 1700000120.125
        assert wait(reactor, store.call_ended(third)) is False  # its start never reached this Redis
        assert store.backlog_length == 3
        assert registry.get_sample_value("hotline_redis_backlog_records") == 3
        assert registry.get_sample_value("hotline_redis_failures_total", {"operation": "call_start"}) == 1
        assert wait(reactor, store.ping()) is False

        private_redis.start()
        run_until(reactor, lambda: store.backlog_length == 0)
        assert registry.get_sample_value("hotline_redis_backlog_records") == 0
        assert sent[-1] == ["EVAL"]
        check = blocking.Redis(port=private_redis.port, db=3, decode_responses=True)
        assert check.hgetall("hotline:call:r2") == {
            "call_id": "r2", "channel": "PJSIP/carrier-2", "caller": "13900139000", "caller_masked": "139****9000",
            "script": "main", "flow": "", "flow_version": "", "started_at": "1700000100.000",
            "outcome": "caller_hangup", "handoff": "", "path": "[]", "ended_at": "1700000110.000",
        }
        assert check.hgetall("hotline:call:r3") == {  # the whole record from the end write alone
            "call_id": "r3", "channel": "PJSIP/carrier-3", "caller": "10086", "caller_masked": third.caller_masked,
            "script": "survey", "flow": "survey", "flow_version": "2", "started_at": "1700000105.500",
            "outcome": "completed", "handoff": "", "path": '["q1"]', "ended_at": "1700000120.125",
        }
        for key in ("hotline:call:r2", "hotline:call:r3"):
            assert 595 < check.ttl(key) <= 600
        # the server came back empty (no persistence); an end write adds no index entry (as before)
        assert check.zrange("hotline:calls", 0, -1, withscores=True) == [("r2", 1700000100.0)]
        assert check.exists("hotline:call:r1") == 0
    finally:
        store.stop()
        stopping = client.stopService()
        run_until(reactor, lambda: stopping.called)


def test_a_batch_redis_refuses_is_kept_and_replayed(private_redis, private_reactor):
    """An error inside the script (a key of the wrong type) fails the batch's EVAL: every record of the
    batch is backlogged and counted, and replayed once the cause is gone."""
    import redis as blocking

    reactor = private_reactor
    registry = CollectorRegistry()
    client = RespClient(f"redis://127.0.0.1:{private_redis.port}/0", reactor=reactor, timeout=2.0)
    store = RedisCallStore(client.execute, reactor, GatewayMetrics(registry), ttl=600, retry_interval=0.2)
    check = blocking.Redis(port=private_redis.port, decode_responses=True)
    check.set("hotline:call:bad", "not a hash")
    client.startService()
    try:
        wait(reactor, client.when_connected())
        good = CallRecord(call_id="good", channel="Local/x", caller="1", script="main", started_at=1.0)
        bad = CallRecord(call_id="bad", channel="Local/x", caller="2", script="main", started_at=2.0)
        writes = [store.call_started(good), store.call_started(bad)]
        assert [wait(reactor, d) for d in writes] == [False, False]
        assert registry.get_sample_value("hotline_redis_failures_total", {"operation": "call_start"}) == 2
        assert store.backlog_length == 2
        flush_failures = lambda: registry.get_sample_value(  # noqa: E731
            "hotline_redis_failures_total", {"operation": "backlog_flush"}) or 0
        run_until(reactor, lambda: flush_failures() >= 1)  # retried, and refused again while the cause stays
        assert store.backlog_length == 2
        check.delete("hotline:call:bad")
        run_until(reactor, lambda: store.backlog_length == 0)
        assert check.hget("hotline:call:bad", "caller") == "2" and check.hget("hotline:call:good", "caller") == "1"
        assert check.zrange("hotline:calls", 0, -1, withscores=True) == [("good", 1.0), ("bad", 2.0)]
    finally:
        store.stop()
        stopping = client.stopService()
        run_until(reactor, lambda: stopping.called)
