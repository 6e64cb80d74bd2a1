"""Following the primary through Sentinel in the reactor (gateway/storage/sentinel_endpoint.py and
RespClient's ROLE check / READONLY drop): every peer is a StringTransport, time is task.Clock."""
from __future__ import annotations

import pytest
from twisted.internet import defer, error, task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from gateway.storage.redis_url import RedisAddress, SentinelError, Sentinels
from gateway.storage.resp import RespClient, RespCommandError, RespConnectionLost, RespFactory, RespNotConnected
from gateway.storage.sentinel_endpoint import SentinelEndpoint

from ..reactor_helpers import outcome

S1, S2, S3 = ("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)
PRIMARY, REPLICA = ("10.0.1.1", 6379), ("10.0.1.2", 6379)
ASK = b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$7\r\nhotline\r\n"
NIL = b"*-1\r\n"
ROLE = b"*1\r\n$4\r\nROLE\r\n"
MASTER_ROLE = b"*3\r\n$6\r\nmaster\r\n:42\r\n*0\r\n"
REPLICA_ROLE = b"*5\r\n$5\r\nslave\r\n$8\r\n10.0.1.2\r\n:6379\r\n$9\r\nconnected\r\n:42\r\n"


def address_reply(host: str, port: int) -> bytes:
    return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(host), host.encode(), len(str(port)), str(port).encode())


class Network:
    """Fake TCP: each (host, port) refuses (default), accepts into a StringTransport, or never answers."""

    def __init__(self) -> None:
        self.behaviour: dict[tuple[str, int], str] = {}
        #: ((host, port), protocol, transport) per accepted connection, in order
        self.connections: list[tuple[tuple[str, int], object, StringTransport]] = []
        self.timeouts: list[float] = []

    def endpoint_factory(self, _reactor, address: RedisAddress, timeout: float):
        self.timeouts.append(timeout)
        return _Endpoint(self, (address.host, address.port))

    def last(self, peer: tuple[str, int]):
        """The newest connection to ``peer``: (RespProtocol, transport)."""
        for where, proto, transport in reversed(self.connections):
            if where == peer:
                return getattr(proto, "_protocol", proto), transport
        raise AssertionError(f"no connection to {peer}")

    def lose(self, peer: tuple[str, int]) -> None:
        """The newest connection to ``peer`` closes (what the reactor reports after an abort)."""
        [proxy] = [proto for where, proto, _ in self.connections if where == peer][-1:]
        proxy.connectionLost(Failure(error.ConnectionLost()))

    def attempts(self, peer: tuple[str, int]) -> int:
        return sum(where == peer for where, _, _ in self.connections)


class _Endpoint:
    def __init__(self, network: Network, peer: tuple[str, int]) -> None:
        self.network, self.peer = network, peer

    def connect(self, factory) -> defer.Deferred:
        mode = self.network.behaviour.get(self.peer, "refuse")
        if mode == "refuse":
            return defer.fail(error.ConnectionRefusedError())
        if mode == "hang":
            return defer.Deferred()  # a SYN into the void: only the caller's timeout ends it
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.network.connections.append((self.peer, proto, transport))
        return defer.succeed(proto)


class Server:
    """What a plain factory gets: any protocol, to see the endpoint hand the connection over."""


def endpoint(network: Network, *sentinels, password=None, timeout=0.3):
    clock = task.Clock()
    found = Sentinels(tuple(sentinels or (S1, S2, S3)), "hotline", password)
    return SentinelEndpoint(clock, found, timeout=timeout, connect_timeout=2.0,
                            endpoint_factory=network.endpoint_factory), clock


def test_the_primary_the_first_sentinel_names_is_connected_to():
    network = Network()
    network.behaviour.update({S1: "accept", PRIMARY: "accept"})
    ep, _ = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    proto, transport = network.last(S1)
    assert transport.value() == ASK and connected == []
    proto.dataReceived(address_reply(*PRIMARY))
    assert transport.disconnecting  # the sentinel's connection is closed once it answered
    assert network.attempts(PRIMARY) == 1 and connected == [network.last(PRIMARY)[0]]
    assert ep.primary == PRIMARY and network.timeouts == [0.3, 2.0]  # sentinel: short; primary: connect_timeout


def test_a_refused_sentinel_is_skipped_and_the_one_that_answered_is_asked_first_next_time():
    network = Network()
    network.behaviour.update({S2: "accept", PRIMARY: "accept"})
    ep, _ = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    network.last(S2)[0].dataReceived(address_reply(*PRIMARY))
    assert len(connected) == 1 and not isinstance(connected[0], Failure)
    assert ep.order == [S2, S1, S3]
    network.behaviour[S1] = "accept"
    again = outcome(ep.connect(RespFactory(None, None)))
    assert network.attempts(S1) == 0 and network.last(S2)[1].value() == ASK  # S2 first, S1 never needed
    network.last(S2)[0].dataReceived(address_reply(*PRIMARY))
    assert len(again) == 1 and network.attempts(PRIMARY) == 2


def test_a_sentinel_that_does_not_connect_in_time_is_given_up_on_the_clock():
    network = Network()
    network.behaviour.update({S1: "hang", S2: "accept", PRIMARY: "accept"})
    ep, clock = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    assert network.attempts(S2) == 0
    clock.advance(0.29)
    assert network.attempts(S2) == 0
    clock.advance(0.02)
    network.last(S2)[0].dataReceived(address_reply(*PRIMARY))
    assert len(connected) == 1 and ep.primary == PRIMARY


def test_a_sentinel_that_connects_but_never_answers_is_dropped_after_the_timeout():
    network = Network()
    network.behaviour.update({S1: "accept", S2: "accept", PRIMARY: "accept"})
    ep, clock = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    silent = network.last(S1)[1]
    clock.advance(0.31)
    assert silent.disconnecting or silent.disconnected
    network.last(S2)[0].dataReceived(address_reply(*PRIMARY))
    assert len(connected) == 1 and ep.primary == PRIMARY


def test_when_no_sentinel_answers_the_error_names_each_and_why():
    network = Network()
    network.behaviour.update({S2: "hang", S3: "accept"})
    ep, clock = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    clock.advance(0.31)  # S2's connect times out
    network.last(S3)[0].dataReceived(b"-ERR unknown command 'SENTINEL'\r\n")
    [failure] = connected
    assert failure.check(SentinelError)
    assert failure.getErrorMessage() == (
        "redis.sentinels: no sentinel of 10.0.0.1:26379, 10.0.0.2:26379, 10.0.0.3:26379 answered "
        "(10.0.0.1:26379: connection refused; 10.0.0.2:26379: timed out; "
        "10.0.0.3:26379: SENTINEL failed: ERR unknown command 'SENTINEL')"
    )


def test_sentinels_that_do_not_know_the_master_say_so():
    network = Network()
    network.behaviour.update({S1: "accept", S3: "accept"})
    ep, _ = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    network.last(S1)[0].dataReceived(NIL)
    network.last(S3)[0].dataReceived(NIL)
    assert connected[0].getErrorMessage() == (
        "redis.sentinels: the sentinels 10.0.0.1:26379, 10.0.0.3:26379 do not know master 'hotline' "
        "(check redis.sentinel_master); 10.0.0.2:26379: connection refused"
    )


def test_a_garbled_address_is_that_sentinels_failure_not_a_crash():
    network = Network()
    network.behaviour.update({S1: "accept", S2: "accept", PRIMARY: "accept"})
    ep, _ = endpoint(network)
    connected = outcome(ep.connect(RespFactory(None, None)))
    network.last(S1)[0].dataReceived(b"*2\r\n$8\r\n10.0.1.1\r\n$4\r\nport\r\n")
    network.last(S2)[0].dataReceived(address_reply(*PRIMARY))
    assert len(connected) == 1 and ep.primary == PRIMARY and ep.order[0] == S2


def test_the_sentinel_password_is_sent_first_when_set():
    network = Network()
    network.behaviour.update({S1: "accept", PRIMARY: "accept"})
    ep, _ = endpoint(network, S1, password="sp")
    connected = outcome(ep.connect(RespFactory(None, None)))
    proto, transport = network.last(S1)
    assert transport.value() == b"*2\r\n$4\r\nAUTH\r\n$2\r\nsp\r\n" + ASK
    proto.dataReceived(b"+OK\r\n" + address_reply(*PRIMARY))
    assert len(connected) == 1 and ep.primary == PRIMARY


def test_a_refused_sentinel_password_moves_on_and_is_reported():
    network = Network()
    network.behaviour.update({S1: "accept"})
    ep, _ = endpoint(network, S1, password="wrong")
    connected = outcome(ep.connect(RespFactory(None, None)))
    network.last(S1)[0].dataReceived(b"-WRONGPASS invalid password\r\n" + NIL)
    assert "10.0.0.1:26379: AUTH (command 1 of 2) failed: WRONGPASS" in connected[0].getErrorMessage()


# -- RespClient through the sentinels ------------------------------------------------
def sentinel_client(network: Network, url: str = "redis://:pw@ignored:1/2"):
    clock = task.Clock()
    client = RespClient(url, reactor=clock, sentinels=Sentinels((S1, S2), "hotline"), timeout=0.5,
                        connect_timeout=1.0, endpoint_factory=network.endpoint_factory,
                        reconnect_initial=1.0, reconnect_max=4.0, jitter=lambda: 0.0)
    return client, clock


def resolve_to(network: Network, peer: tuple[str, int]) -> None:
    network.last(S1)[0].dataReceived(address_reply(*peer))


def started_client(first: tuple[str, int]):
    """A client (db 0, no password) started against a network where S1 names ``first``."""
    network = Network()
    network.behaviour.update({S1: "accept", PRIMARY: "accept", REPLICA: "accept"})
    client, clock = sentinel_client(network, "redis://ignored/0")
    client.startService()
    resolve_to(network, first)
    return network, client, clock


def reconnects_through_the_sentinels_to(network: Network, client: RespClient, clock: task.Clock,
                                        peer: tuple[str, int]) -> bool:
    """After the backoff the client asks S1 again; it names ``peer``, which says ROLE master."""
    clock.advance(2.0)
    if network.attempts(S1) != 2:
        return False
    resolve_to(network, peer)
    network.last(peer)[0].dataReceived(MASTER_ROLE)
    return client.connected


def test_the_client_checks_role_after_auth_and_select_and_uses_only_a_master():
    network = Network()
    network.behaviour.update({S1: "accept", PRIMARY: "accept"})
    client, _ = sentinel_client(network)
    client.startService()
    resolve_to(network, PRIMARY)
    proto, transport = network.last(PRIMARY)
    assert transport.value() == (b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n" + ROLE)
    assert not client.connected
    proto.dataReceived(b"+OK\r\n+OK\r\n" + MASTER_ROLE)
    assert client.connected and "primary 10.0.1.1:6379" in client.target
    assert "pw" not in client.target and "pw" not in repr(client)


def test_a_replica_named_during_a_failover_is_refused_and_the_sentinels_asked_again():
    network, client, clock = started_client(REPLICA)
    proto, transport = network.last(REPLICA)
    assert transport.value() == ROLE  # db 0, no password: ROLE alone
    proto.dataReceived(REPLICA_ROLE)
    assert transport.disconnecting or transport.disconnected
    assert not client.connected
    network.lose(REPLICA)
    assert outcome(client.execute([("GET", "k")]))[0].check(RespNotConnected)
    assert reconnects_through_the_sentinels_to(network, client, clock, PRIMARY)


def test_a_readonly_reply_drops_the_connection_so_the_next_one_re_resolves():
    network, client, clock = started_client(PRIMARY)
    old, old_transport = network.last(PRIMARY)
    old.dataReceived(MASTER_ROLE)
    write = outcome(client.execute([("HSET", "k", "f", "v")]))
    behind = outcome(client.execute([("GET", "k")]))  # sent on the same connection, still pending
    old.dataReceived(b"-READONLY You can't write against a read only replica.\r\n")
    assert write[0].check(RespCommandError) and "READONLY" in write[0].getErrorMessage()
    assert behind[0].check(RespConnectionLost)
    assert old_transport.disconnecting or old_transport.disconnected
    assert not client.connected
    network.lose(PRIMARY)
    assert reconnects_through_the_sentinels_to(network, client, clock, REPLICA)  # the promoted one


def test_another_error_reply_keeps_the_connection():
    network, client, _ = started_client(PRIMARY)
    proto, transport = network.last(PRIMARY)
    proto.dataReceived(MASTER_ROLE)
    failed = outcome(client.execute([("HSET", "k")]))
    proto.dataReceived(b"-ERR wrong number of arguments for 'hset' command\r\n")
    assert failed[0].check(RespCommandError) and client.connected and not transport.disconnecting


def test_no_sentinel_answering_leaves_the_client_disconnected_and_retrying():
    network = Network()
    client, clock = sentinel_client(network)
    failed = outcome(client.when_connected(fail_after_failures=1))
    client.startService()
    assert failed[0].check(SentinelError)
    assert "no sentinel of 10.0.0.1:26379, 10.0.0.2:26379 answered" in failed[0].getErrorMessage()
    assert not client.connected
    network.behaviour.update({S1: "accept", PRIMARY: "accept"})
    clock.advance(2.0)
    resolve_to(network, PRIMARY)
    network.last(PRIMARY)[0].dataReceived(b"+OK\r\n+OK\r\n" + MASTER_ROLE)
    assert client.connected


def test_the_gateway_passes_the_sentinels_to_the_call_record_client():
    from gateway.app import build_gateway
    from gateway.config import load_config

    config = load_config(environ={"HOTLINE_REDIS_SENTINELS": "127.0.0.1:26470,127.0.0.1:26471",
                                  "HOTLINE_REDIS_SENTINEL_MASTER": "calls", "HOTLINE_REDIS_URL": "redis://x/3"})
    gateway = build_gateway(MemoryReactorClock(), config)
    [client] = [svc for svc in gateway.services if isinstance(svc, RespClient)]
    assert client.sentinels == Sentinels((("127.0.0.1", 26470), ("127.0.0.1", 26471)), "calls")
    assert client.address.db == 3


@pytest.mark.parametrize("reply", [b"*2\r\n$0\r\n\r\n$4\r\n6379\r\n", b"+OK\r\n", b"*1\r\n$1\r\nx\r\n"])
def test_replies_that_are_not_an_address_are_refused(reply):
    network = Network()
    network.behaviour.update({S1: "accept"})
    ep, _ = endpoint(network, S1)
    connected = outcome(ep.connect(RespFactory(None, None)))
    network.last(S1)[0].dataReceived(reply)
    assert connected[0].check(SentinelError) and "not an address" in connected[0].getErrorMessage()
