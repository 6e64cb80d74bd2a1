"""Resync after every (re)connect: snapshots, queue_log replay, nothing missed
and nothing counted twice — the AMI client, a scripted Asterisk and task.Clock."""
from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.ami.client import AmiClient
from gateway.ami.codec import AmiMessage
from gateway.ami.router import EventRouter
from gateway.monitor.events import AmiEventAdapter, subscription_table
from gateway.monitor.metrics import AmiMetrics
from gateway.monitor.model import HotlineState
from gateway.monitor.resync import Resync, channel_snapshot, queue_snapshots, registrations

from .ami_fakes import FakeEndpoint, event
from .test_monitor_model import CountingSink

Q = "12345"


def msg(**headers) -> AmiMessage:
    return AmiMessage(headers, tuple(headers.items()))


QUEUE_STATUS = [
    {"Event": "QueueParams", "Queue": Q, "Max": 200, "Strategy": "rrmemory", "Calls": 1, "ServiceLevel": 15},
    {"Event": "QueueMember", "Queue": Q, "Name": "agent1", "Location": "Local/agent1@lab-agent",
     "StateInterface": "Local/agent1@lab-agent", "Membership": "static", "InCall": 0, "Status": 1, "Paused": 0},
    {"Event": "QueueMember", "Queue": Q, "Name": "agent2", "Location": "Local/agent2@lab-agent",
     "StateInterface": "Local/agent2@lab-agent", "Membership": "static", "InCall": 1, "Status": 2, "Paused": 0},
]
REGISTRATIONS = [
    {"Event": "OutboundRegistrationDetail", "ObjectType": "registration", "ObjectName": "carrier",
     "ClientUri": "sip:02112345@sbc.example.net", "ServerUri": "sip:sbc.example.net", "Endpoint": "carrier",
     "Status": "Registered", "NextReg": 3500},
    {"Event": "AuthDetail", "ObjectName": "carrier"},
]


def test_parse_queue_status_reply():
    messages = [msg(**{k: str(v) for k, v in e.items()}) for e in QUEUE_STATUS] + [
        msg(Event="QueueEntry", Queue=Q, Position="1", Channel="PJSIP/carrier-1", Uniqueid="c9",
            CallerIDNum="13800138000", Wait="12", Priority="0"),
        msg(Event="QueueStatusComplete", EventList="Complete"),
    ]
    (snapshot,) = queue_snapshots(messages)
    assert snapshot.name == Q
    assert [(m.name, m.status, m.in_call) for m in snapshot.members] == [("agent1", 1, False), ("agent2", 2, True)]
    assert [(e.uniqueid, e.position, e.wait) for e in snapshot.entries] == [("c9", 1, 12.0)]


def test_parse_channels_and_registrations():
    assert channel_snapshot([msg(Event="CoreShowChannel", Channel="PJSIP/carrier-1", Uniqueid="u1"),
                             msg(Event="CoreShowChannelsComplete", EventList="Complete")]) == {"u1": "PJSIP/carrier-1"}
    (reg,) = registrations([msg(**{k: str(v) for k, v in e.items()}) for e in REGISTRATIONS])
    assert (reg.trunk, reg.registered, reg.server_uri) == ("carrier", True, "sip:sbc.example.net")


class Rig:
    """Client + model + resync against a scripted Asterisk."""

    def __init__(self, queue_log: list[str] | None = None, fail_replay: bool = False) -> None:
        self.clock = task.Clock()
        self.clock.advance(2000.0)
        self.endpoint = FakeEndpoint()
        self.endpoint.on_connect = self._script
        self.state = HotlineState(CountingSink(), trunks=["carrier"])
        self.registry = CollectorRegistry()
        self.metrics = AmiMetrics(self.registry, node="ast1")
        self.queue_log = queue_log if queue_log is not None else []
        self.replay_requests: list[float] = []
        self.fail_replay = fail_replay
        self.queue_entries: list[dict] = []
        self.channels: list[dict] = []
        self.resync = Resync(self.state, now=self.clock.seconds, read_queue_log=self._read, margin=2.0,
                             observer=self.metrics, clock=self.clock, refresh_interval=60.0)
        router = EventRouter(subscription_table(AmiEventAdapter(self.state, self.clock.seconds)))
        self.client = AmiClient(
            self.endpoint, "hotline-gateway", "s3cret", clock=self.clock, router=router, observer=self.metrics,
            jitter=lambda: 0.0, on_ready=[self.resync], on_lost=[self.resync.connection_lost],
        )

    def _script(self, peer) -> None:
        peer.lists["QueueStatus"] = QUEUE_STATUS + self.queue_entries
        peer.lists["CoreShowChannels"] = self.channels
        peer.lists["PJSIPShowRegistrationsOutbound"] = REGISTRATIONS

    def _read(self, since: float) -> defer.Deferred:
        self.replay_requests.append(since)
        if self.fail_replay:
            return defer.fail(OSError("queue_log: permission denied"))
        return defer.succeed([line for line in self.queue_log if float(line.split("|")[0]) >= since])

    def start(self) -> None:
        self.client.startService()
        self.endpoint.peer.pump()

    def reconnect(self) -> None:
        self.endpoint.peer.drop()
        self.clock.advance(1.0)
        self.endpoint.peer.pump()

    def live(self, data: bytes) -> None:
        self.endpoint.peer.send(data)

    def resyncs(self, outcome: str) -> float:
        return self.registry.get_sample_value("hotline_ami_resyncs_total", {"node": "ast1", "outcome": outcome})


def join(uid, t, position=1):
    return (event("Newchannel", Channel=f"PJSIP/carrier-{uid}", Uniqueid=uid, Timestamp=t - 1)
            + event("QueueCallerJoin", Uniqueid=uid, Queue=Q, Position=position, CallerIDNum="13800138000",
                    Timestamp=t))


def test_first_connection_takes_the_snapshots_and_replays_nothing():
    rig = Rig()
    rig.queue_entries = [{"Event": "QueueEntry", "Queue": Q, "Position": 1, "Uniqueid": "c9", "Wait": 12,
                          "Channel": "PJSIP/carrier-9"}]
    rig.channels = [{"Event": "CoreShowChannel", "Channel": "PJSIP/carrier-9", "Uniqueid": "c9"}]
    rig.start()
    assert rig.replay_requests == []
    assert rig.state.sink.counts == Counter(offered=1)
    view = rig.state.queue_views(now=rig.clock.seconds())[Q]
    assert (view.waiting, view.longest_wait, view.logged_in, view.in_call) == (1, 12.0, 2, 1)
    trunk = rig.state.trunk_views()["carrier"]
    assert trunk.registered is True and trunk.channels == 1
    assert rig.resyncs("ok") == 1


def test_calls_settled_while_ami_was_away_are_counted_once_from_queue_log():
    queue_log = [
        "1005|c2|12345|agent1|CONNECT|5|1005.7|1",       # c2 answered while away, still talking
        "1003|c3|12345|NONE|ENTERQUEUE||13800138000|3",  # c3 came and went while away
        "1008|c3|12345|NONE|ABANDON|2|3|5",
        "1009|c4|12345|NONE|ENTERQUEUE||13800138000|2",  # c4 still waiting
        "1010|c1|12345|NONE|ABANDON|1|1|10",             # c1 hung up while away
    ]
    rig = Rig(queue_log)
    rig.start()
    rig.live(join("c1", 1000.0) + join("c2", 1001.0, 2))
    rig.endpoint.peer.drop()
    # what Asterisk shows on reconnect
    rig.queue_entries = [{"Event": "QueueEntry", "Queue": Q, "Position": 1, "Uniqueid": "c4", "Wait": 6,
                          "Channel": "PJSIP/carrier-c4"}]
    rig.channels = [{"Event": "CoreShowChannel", "Channel": "PJSIP/carrier-c2", "Uniqueid": "c2"},
                    {"Event": "CoreShowChannel", "Channel": "PJSIP/carrier-c4", "Uniqueid": "c4"}]
    rig.clock.advance(1.0)
    rig.endpoint.peer.pump()
    assert rig.replay_requests == [1001.0 - 2.0]
    counts = rig.state.sink.counts
    assert counts["offered"] == 4 and counts["answered"] == 1 and counts["abandoned"] == 2
    assert counts["untracked"] == 0
    assert sorted(c.uniqueid for c in rig.state.abandoned_calls) == ["c1", "c3"]
    assert rig.state.waiting_calls() == ["c4"]
    # live again: c2 ends, c4 is answered; then another loss and the same queue_log replayed
    rig.live(event("Hangup", Uniqueid="c2", Timestamp=1020.0)
             + event("AgentConnect", Uniqueid="c4", Queue=Q, MemberName="agent2", HoldTime=12, Timestamp=1021.0))
    rig.reconnect()
    assert rig.replay_requests[-1] == 1021.0 - 2.0
    assert rig.state.sink.counts["offered"] == 4
    assert rig.state.sink.counts["answered"] == 2 and rig.state.sink.counts["abandoned"] == 2
    assert rig.registry.get_sample_value("hotline_ami_reconnects_total", {"node": "ast1"}) == 2


def test_call_gone_without_queue_log_trace_is_untracked_not_guessed():
    rig = Rig(queue_log=[])
    rig.start()
    rig.live(join("c1", 1000.0))
    rig.reconnect()
    assert rig.state.sink.counts == Counter(offered=1, untracked=1)
    assert rig.state.waiting_calls() == []


def test_abandon_reported_before_the_loss_is_an_abandon_when_the_channel_is_gone():
    rig = Rig(queue_log=[])
    rig.start()
    rig.live(join("c1", 1000.0) + event("QueueCallerAbandon", Uniqueid="c1", Queue=Q, Position=1,
                                        OriginalPosition=1, HoldTime=7, Timestamp=1007.0))
    rig.reconnect()
    assert rig.state.sink.counts == Counter(offered=1, abandoned=1)


def test_unreadable_queue_log_is_a_partial_resync_and_is_retried_next_time():
    rig = Rig(queue_log=["1004|c1|12345|NONE|ABANDON|1|1|4"], fail_replay=True)
    rig.start()
    rig.live(join("c1", 1000.0) + join("c2", 1001.0, 2))
    rig.queue_entries = [{"Event": "QueueEntry", "Queue": Q, "Position": 1, "Uniqueid": "c2", "Wait": 3}]
    rig.channels = [{"Event": "CoreShowChannel", "Channel": "PJSIP/carrier-c2", "Uniqueid": "c2"}]
    rig.reconnect()  # c1 hung up while away; its ABANDON is in the queue_log we cannot read yet
    assert rig.resyncs("partial") == 1
    assert rig.state.waiting_calls() == ["c2"], "the other steps still ran"
    assert rig.state.sink.counts == Counter(offered=2), "c1 is left open, not guessed"
    rig.fail_replay = False
    rig.reconnect()
    assert rig.replay_requests[-1] == 1001.0 - 2.0, "replay resumes from the first loss"
    assert rig.state.sink.counts == Counter(offered=2, abandoned=1, short=1)


def test_failing_actions_do_not_stop_the_resync():
    rig = Rig()
    rig.endpoint.on_connect = lambda peer: None  # Asterisk knows none of the list actions
    rig.start()
    assert rig.resyncs("failed") == 1
    assert rig.client.logged_in


def test_periodic_queue_refresh_drops_a_caller_whose_leave_event_was_lost_and_counts_nothing():
    rig = Rig()
    rig.start()
    rig.live(join("c1", 2000.0))
    assert rig.state.waiting_calls() == ["c1"]
    # Asterisk dropped the QueueCallerLeave/AgentConnect for c1 (slow consumer); a caller
    # unknown to us is listed (its join event still on the way): not counted by a refresh
    rig.queue_entries = [{"Event": "QueueEntry", "Queue": Q, "Position": 1, "Uniqueid": "c7", "Wait": 1}]
    rig.endpoint.peer.lists["QueueStatus"] = QUEUE_STATUS + rig.queue_entries
    rig.clock.advance(60.0)
    asked = [a.get("Action") for a in rig.endpoint.peer.pump()]
    assert "QueueStatus" in asked
    assert rig.state.waiting_calls() == []
    assert rig.state.sink.counts == Counter(offered=1)
    rig.endpoint.peer.drop()
    rig.clock.advance(0.5)  # before the reconnect: no refresh is scheduled on a dead session
    assert not rig.endpoint.peers[0].transport.value()


CONTACT = "carrier@@9681163320e65fd6a902bff36a1c946f"
TRUNK_VARIABLES = {
    "PJSIP_ENDPOINT(carrier,aors)": "carrier",
    "PJSIP_AOR(carrier,contact)": CONTACT,
    f"PJSIP_CONTACT({CONTACT},status)": "Reachable",
    f"PJSIP_CONTACT({CONTACT},uri)": "sip:127.0.0.2:5070",
    f"PJSIP_CONTACT({CONTACT},rtt)": "1243",
}


def test_resync_learns_trunk_reachability_and_rtt_without_a_contactstatus_event():
    """ContactStatus is only sent on a change: a gateway (re)connecting to a trunk that is
    already up reads its contacts with Getvar (PJSIP_ENDPOINT/AOR/CONTACT)."""
    rig = Rig()
    rig.endpoint.on_connect = lambda peer: (rig._script(peer), peer.variables.update(TRUNK_VARIABLES))
    rig.start()
    trunk = rig.state.trunk_views()["carrier"]
    assert trunk.reachable is True
    assert trunk.rtt == 0.001243
    assert rig.resyncs("ok") == 1


def test_resync_without_the_pjsip_functions_leaves_reachability_unknown_and_succeeds():
    """Getvar answers an error (func_pjsip_* not loaded): best effort, the resync is still ok."""
    rig = Rig()
    rig.start()
    assert rig.state.trunk_views()["carrier"].reachable is None
    assert rig.resyncs("ok") == 1


def test_periodic_refresh_closes_a_call_whose_hangup_asterisk_dropped_as_untracked_once():
    """Asterisk dropped c1's Hangup (slow reader, session kept): the refresh's CoreShowChannels
    closes it — after a second list confirms it, so a Hangup still in flight is not pre-empted."""
    rig = Rig()
    rig.channels = []
    rig.start()
    rig.live(join("c1", 2000.0) + join("c2", 2001.0, 2) + join("c3", 2002.0, 3))
    listed = [{"Event": "CoreShowChannel", "Channel": f"PJSIP/carrier-{uid}", "Uniqueid": uid} for uid in ("c2",)]
    rig.endpoint.peer.lists["QueueStatus"] = QUEUE_STATUS + [
        {"Event": "QueueEntry", "Queue": Q, "Position": 1, "Uniqueid": "c2", "Wait": 59}]
    rig.endpoint.peer.lists["CoreShowChannels"] = listed
    rig.clock.advance(60.0)
    assert "CoreShowChannels" in [a.get("Action") for a in rig.endpoint.peer.pump()]
    assert rig.state.trunk_views()["carrier"].channels == 1, "c1's and c3's channels are gone at once"
    assert rig.state.sink.counts == Counter(offered=3), "one list is not enough to close a call"
    # c3's Hangup was only late: it arrives between the two lists and counts as an abandon
    rig.live(event("Hangup", Uniqueid="c3", Timestamp=2062.0))
    rig.clock.advance(60.0)
    rig.endpoint.peer.pump()
    assert rig.state.sink.counts == Counter(offered=3, abandoned=1, untracked=1)
    assert rig.state.waiting_calls() == ["c2"]
    rig.clock.advance(60.0)
    rig.endpoint.peer.pump()
    assert rig.state.sink.counts == Counter(offered=3, abandoned=1, untracked=1), "closed once, counted once"
    rig.live(event("Hangup", Uniqueid="c1", Timestamp=2200.0))  # should it turn up after all
    assert rig.state.sink.counts["abandoned"] == 1


def test_an_event_about_a_call_between_two_lists_keeps_it_open():
    """Missing from two lists is not enough if the call was heard from in between."""
    rig = Rig()
    rig.start()
    rig.live(join("c1", 2000.0))
    rig.endpoint.peer.lists["CoreShowChannels"] = []
    rig.clock.advance(60.0)
    rig.endpoint.peer.pump()
    rig.live(event("QueueCallerJoin", Uniqueid="c1", Queue=Q, Position=1, Timestamp=2061.0))  # back in the queue
    rig.clock.advance(60.0)
    rig.endpoint.peer.pump()
    assert rig.state.sink.counts == Counter(offered=1)
    assert rig.state.open_calls == 1
    rig.live(event("Hangup", Uniqueid="c1", Timestamp=2130.0))
    assert rig.state.sink.counts == Counter(offered=1, abandoned=1)
    assert rig.state.open_calls == 0
