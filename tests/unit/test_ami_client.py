"""AMI client: login in prepareConnection, keepalive, reconnect backoff, hooks,
pending actions failing on disconnect — over StringTransport and task.Clock."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.ami.client import AmiClient, AmiNotConnected
from gateway.ami.codec import AmiMessage
from gateway.ami.protocol import AmiActionError, AmiActionTimeout, AmiConnectionLost, AmiProtocol
from gateway.ami.router import EventRouter
from gateway.monitor.metrics import AmiMetrics

from .ami_fakes import BANNER, CHALLENGE, FakeEndpoint, event, message


def make_client(**kwargs):
    clock = task.Clock()
    endpoint = FakeEndpoint()
    registry = CollectorRegistry()
    metrics = AmiMetrics(registry, node="ast1")
    seen = []
    router = kwargs.pop("router", None) or EventRouter({"Hangup": seen.append})
    kwargs.setdefault("jitter", lambda: 0.0)
    client = AmiClient(
        endpoint, "hotline-gateway", "s3cret", clock=clock, router=router, observer=metrics, **kwargs
    )
    return client, clock, endpoint, registry, seen


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"node": "ast1", **labels})


def started(**kwargs):
    client, clock, endpoint, registry, seen = make_client(**kwargs)
    client.startService()
    endpoint.peer.pump()
    return client, clock, endpoint, registry, seen


# -- login -----------------------------------------------------------------------


def test_login_answers_the_md5_challenge_with_the_event_class_mask():
    client, _clock, endpoint, registry, _ = started()
    login = next(a for a in endpoint.peer.actions if a.get("Action") == "Login")
    assert login.get("Key") == hashlib.md5((CHALLENGE + "s3cret").encode()).hexdigest()
    assert login.get("Events") == "call,agent,user,system"
    assert "Secret" not in login.headers
    assert client.logged_in
    assert value(registry, "hotline_ami_connected") == 1


def test_refused_login_closes_the_connection_and_backs_off_exponentially():
    client, clock, endpoint, registry, _ = make_client(reconnect_initial=0.5, reconnect_max=4.0)
    endpoint.on_connect = lambda peer: setattr(peer, "login_ok", False)
    client.startService()
    delays = []
    for _ in range(5):
        peer = endpoint.peer
        peer.pump()
        assert not peer.transport.connected, "a refused connection must be closed, not leaked"
        attempts = endpoint.attempts
        waited = 0.0
        while endpoint.attempts == attempts:
            clock.advance(0.25)
            waited += 0.25
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert not client.logged_in
    assert value(registry, "hotline_ami_login_failures_total") == 5
    assert value(registry, "hotline_ami_connected") in (None, 0)


def test_connection_lost_during_login_fails_cleanly_and_retries():
    client, clock, endpoint, _registry, _ = make_client()
    endpoint.on_connect = lambda peer: peer.hold.add("Login")
    client.startService()
    first = endpoint.peer
    first.pump()  # Challenge answered, Login held
    first.drop()
    assert not client.logged_in
    endpoint.on_connect = None
    clock.advance(1.0)
    assert len(endpoint.peers) == 2
    endpoint.peer.pump()
    assert client.logged_in


def test_login_that_never_completes_times_out_and_reconnects():
    client, clock, endpoint, registry, _ = make_client(login_timeout=3.0)
    endpoint.on_connect = lambda peer: peer.hold.add("Challenge")
    client.startService()
    endpoint.peer.pump()
    clock.advance(3.0)
    assert not endpoint.peers[0].transport.connected
    assert value(registry, "hotline_ami_login_failures_total") == 1


def test_peer_that_is_not_asterisk_is_dropped():
    client, _clock, endpoint, _registry, _ = make_client()
    endpoint.greet = False
    client.startService()
    endpoint.peer.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert not endpoint.peer.transport.connected
    assert not client.logged_in


def test_refused_tcp_connections_are_retried_with_backoff():
    client, clock, endpoint, _registry, _ = make_client(reconnect_initial=0.5, reconnect_max=30.0)
    endpoint.refuse = True
    client.startService()
    clock.advance(1.0)
    clock.advance(2.0)
    assert endpoint.attempts == 3
    endpoint.refuse = False
    clock.advance(4.0)
    endpoint.peer.pump()
    assert client.logged_in


def test_backoff_policy_is_jittered_and_capped():
    client, *_ = make_client(reconnect_initial=0.5, reconnect_max=30.0, jitter=lambda: 0.75)
    assert [client.retry_policy(n) for n in (1, 2, 3, 10)] == [1.75, 2.75, 4.75, 30.75]


# -- keepalive -----------------------------------------------------------------------


def test_keepalive_pings_every_interval():
    client, clock, endpoint, _registry, _ = started(keepalive_interval=15.0, keepalive_timeout=5.0)
    for _ in range(3):
        clock.advance(15.0)
        assert [a.get("Action") for a in endpoint.peer.pump()] == ["Ping"]
    assert client.logged_in


def test_unanswered_ping_drops_the_connection_and_a_new_session_is_made():
    client, clock, endpoint, registry, _ = started(keepalive_interval=15.0, keepalive_timeout=5.0)
    endpoint.peer.answer_pings = False
    clock.advance(15.0)
    endpoint.peer.pump()
    clock.advance(5.0)
    assert not endpoint.peers[0].transport.connected
    assert value(registry, "hotline_ami_keepalive_timeouts_total") == 1
    assert value(registry, "hotline_ami_connected") == 0
    clock.advance(1.0)
    endpoint.peer.pump()
    assert client.logged_in and len(endpoint.peers) == 2
    assert value(registry, "hotline_ami_reconnects_total") == 1
    assert value(registry, "hotline_ami_connected") == 1


# -- actions ----------------------------------------------------------------------------


def test_every_pending_action_fails_when_the_connection_goes():
    client, _clock, endpoint, _registry, _ = started()
    endpoint.peer.hold.update({"QueueStatus", "CoreShowChannels"})
    first = client.send_action("QueueStatus", event_list=True)
    second = client.send_action("CoreShowChannels", event_list=True)
    endpoint.peer.pump()
    endpoint.peer.drop()
    for d in (first, second):
        assert isinstance(d.result.value, AmiConnectionLost)
        d.addErrback(lambda _: None)


def test_action_without_a_session_fails_at_once():
    client, _clock, _endpoint, _registry, _ = make_client()
    d = client.send_action("Ping")
    assert isinstance(d.result.value, AmiNotConnected)
    d.addErrback(lambda _: None)


def test_action_that_gets_no_answer_times_out():
    client, clock, endpoint, _registry, _ = started(action_timeout=10.0)
    endpoint.peer.hold.add("QueueStatus")
    d = client.send_action("QueueStatus", event_list=True)
    endpoint.peer.pump()
    clock.advance(10.0)
    assert isinstance(d.result.value, AmiActionTimeout)
    d.addErrback(lambda _: None)
    assert client.logged_in, "one slow action does not cost the connection"


def test_replies_are_paired_by_action_id_not_by_order():
    """Asterisk may answer out of order: each Deferred gets the reply carrying its own ActionID."""
    client, _clock, endpoint, _registry, _ = started()
    endpoint.peer.hold.add("Getvar")
    first = client.send_action("Getvar", {"Variable": "PJSIP_ENDPOINT(carrier,aors)"})
    second = client.send_action("Getvar", {"Variable": "PJSIP_ENDPOINT(backup,aors)"})
    endpoint.peer.pump()
    held = {a.get("Variable"): a.action_id for a in endpoint.peer.held}
    assert len(set(held.values())) == 2
    endpoint.peer.send(message(Response="Success", ActionID=held["PJSIP_ENDPOINT(backup,aors)"], Value="backup"))
    assert not first.called, "a reply to the second action must not complete the first"
    assert second.result.get("Value") == "backup"
    endpoint.peer.send(message(Response="Success", ActionID=held["PJSIP_ENDPOINT(carrier,aors)"], Value="carrier"))
    assert first.result.get("Value") == "carrier"


def test_unrelated_event_inside_an_event_list_is_routed_not_collected():
    """A live event (no ActionID) arriving between a list's items goes to the router only."""
    client, _clock, endpoint, _registry, seen = started()
    endpoint.peer.hold.add("CoreShowChannels")
    d = client.send_action("CoreShowChannels", event_list=True)
    (action,) = [a for a in endpoint.peer.pump() if a.get("Action") == "CoreShowChannels"]
    action_id = action.action_id
    endpoint.peer.send(message(Response="Success", ActionID=action_id, EventList="start"))
    endpoint.peer.send(event("CoreShowChannel", ActionID=action_id, Channel="PJSIP/carrier-1", Uniqueid="1.1"))
    endpoint.peer.send(event("Hangup", Channel="PJSIP/carrier-9", Uniqueid="9.9", Cause="16"))
    endpoint.peer.send(event("CoreShowChannel", ActionID=action_id, Channel="PJSIP/carrier-2", Uniqueid="1.2"))
    assert not d.called
    endpoint.peer.send(event("CoreShowChannelsComplete", ActionID=action_id, EventList="Complete", ListItems=2))
    assert [(m.name, m.get("Uniqueid")) for m in d.result] == [
        ("Success", ""), ("CoreShowChannel", "1.1"), ("CoreShowChannel", "1.2"), ("CoreShowChannelsComplete", ""),
    ]
    assert [m.get("Uniqueid") for m in seen] == ["9.9"]


def test_event_list_action_collects_until_complete():
    client, _clock, endpoint, _registry, _ = started()
    endpoint.peer.lists["CoreShowChannels"] = [
        {"Event": "CoreShowChannel", "Channel": "PJSIP/carrier-00000001", "Uniqueid": "1.1"},
        {"Event": "CoreShowChannel", "Channel": "Local/12345@from-lab-00000000;2", "Uniqueid": "1.2"},
    ]
    d = client.send_action("CoreShowChannels", event_list=True)
    endpoint.peer.pump()
    names = [m.name for m in d.result]
    assert names == ["Success", "CoreShowChannel", "CoreShowChannel", "CoreShowChannelsComplete"]


# -- hooks and events ----------------------------------------------------------------------


def test_ready_hook_runs_after_every_login_and_lost_hook_after_every_loss():
    ready, lost = [], []
    client, clock, endpoint, _registry, _ = make_client(on_ready=[ready.append], on_lost=[lambda: lost.append(1)])
    client.startService()
    endpoint.peer.pump()
    assert len(ready) == 1 and isinstance(ready[0], AmiProtocol)
    endpoint.peer.drop()
    assert lost == [1]
    clock.advance(1.0)
    endpoint.peer.pump()
    assert len(ready) == 2 and ready[1] is not ready[0]


def test_failing_ready_hook_does_not_drop_the_session():
    def broken(ami):
        raise RuntimeError("resync bug")

    client, _clock, endpoint, _registry, _ = make_client(on_ready=[broken])
    client.startService()
    endpoint.peer.pump()
    assert client.logged_in


def test_events_go_to_their_handlers_and_a_handler_error_is_isolated():
    calls = []

    def broken(message):
        raise ValueError("bad handler")

    registry = CollectorRegistry()
    metrics = AmiMetrics(registry, node="ast1")
    router = EventRouter({"Hangup": [broken, calls.append]}, on_event=metrics.event_handled,
                         on_error=metrics.handler_error)
    client, _clock, endpoint, _, _ = started(router=router)
    endpoint.peer.send(event("Hangup", Uniqueid="1.1") + event("Newexten", Uniqueid="1.1"))
    endpoint.peer.send(event("Hangup", Uniqueid="1.2"))
    assert [m.get("Uniqueid") for m in calls] == ["1.1", "1.2"]
    assert value(registry, "hotline_ami_events_total") == 2
    assert value(registry, "hotline_ami_handler_errors_total") == 2
    assert client.logged_in


def test_stop_service_disconnects_and_stops_reconnecting():
    client, clock, endpoint, _registry, _ = started()
    d = client.stopService()
    assert not endpoint.peer.transport.connected
    assert d.called
    clock.advance(120.0)
    assert len(endpoint.peers) == 1 and not client.logged_in


def test_keepalive_timeout_must_be_shorter_than_the_interval():
    with pytest.raises(ValueError):
        make_client(keepalive_interval=5.0, keepalive_timeout=5.0)


# -- garbage ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_garbage_from_the_peer_never_raises_out_of_the_protocol(chunks):
    """Whatever bytes arrive after the banner, dataReceived neither raises nor hangs an action."""
    clock = task.Clock()
    proto = AmiProtocol(clock=clock, action_timeout=5.0)
    router = EventRouter({name: (lambda m: None) for name in ("Hangup", "QueueCallerJoin")})
    proto.on_event = router.dispatch
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(BANNER)
    pending = proto.send_action("Ping")
    outcome = []
    pending.addBoth(outcome.append)
    for chunk in chunks:
        proto.dataReceived(chunk)
    # before any disconnect: the Ping is still waiting with its timeout armed, or the
    # bytes happened to be its answer (an error reply or a reply) — never anything else
    if not outcome:
        assert proto.pending_actions == 1
        assert [call for call in clock.getDelayedCalls() if call.active()], "its timeout must still be armed"
        proto.connectionLost()
        assert len(outcome) == 1 and isinstance(outcome[0], Failure) and outcome[0].check(AmiConnectionLost)
    else:
        (result,) = outcome
        if isinstance(result, Failure):
            assert result.check(AmiActionError), result
        else:
            assert isinstance(result, AmiMessage)
        assert proto.pending_actions == 0 and not clock.getDelayedCalls()


def test_connection_lost_before_the_banner_fails_the_banner():
    proto = AmiProtocol()
    proto.makeConnection(StringTransport())
    proto.connectionLost()
    failures = []
    proto.banner.addErrback(failures.append)
    assert failures and failures[0].check(AmiConnectionLost)


def test_no_reads_once_the_protocol_is_closing():
    proto = AmiProtocol()
    transport = StringTransport()
    proto.makeConnection(transport)
    seen = []
    proto.on_event = seen.append
    proto.dataReceived(BANNER)
    transport.loseConnection()
    proto.dataReceived(event("Hangup", Uniqueid="1"))
    assert seen == []


def test_plain_reply_to_a_list_action_completes_it():
    proto = AmiProtocol()
    proto.makeConnection(StringTransport())
    proto.dataReceived(BANNER)
    d = proto.send_action("PJSIPShowRegistrationsOutbound", event_list=True)
    proto.dataReceived(b"Response: Success\r\nActionID: hl-1\r\nMessage: No objects\r\n\r\n")
    assert [m.get("Message") for m in d.result] == ["No objects"]

