"""The AMI benchmarks' helpers (bench/ami_stream.py, the parse targets, the
lag probe, the flooding fake Asterisk): no sockets, no timing assertions,
task.Clock and StringTransport only."""
from __future__ import annotations

import gc
import hashlib
from collections import Counter

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from bench import ami_parse_bench, ami_stream
from bench.ami_flood_bench import LagProbe
from bench.fake_ami_server import CHALLENGE, FakeFactory
from gateway.ami import codec


@pytest.fixture(scope="module")
def one_round():
    return ami_stream.round_events(ami_stream.recorded_sessions(), "all")


def test_stream_holds_exactly_the_asked_events_at_the_recorded_offsets(one_round):
    stream = ami_stream.build_stream(len(one_round) * 2 + 7, "all")
    assert stream.events == len(one_round) * 2 + 7
    assert stream.offsets[0] == 0 and stream.offsets[-1] == len(stream.data)
    messages, rest = codec.parse_messages(stream.data)
    assert rest == b"" and len(messages) == stream.events
    assert all(m.kind == "event" for m in messages)
    second, _ = codec.parse_messages(stream.slice(1, 2))
    assert second == [messages[1]]


def test_each_round_gets_new_call_identities_and_later_timestamps(one_round):
    stream = ami_stream.build_stream(len(one_round) * 2, "all")
    i = next(i for i, event in enumerate(one_round) if event.startswith(b"Event: Newchannel"))
    (a,), _ = codec.parse_messages(stream.slice(i, i + 1))
    (b,), _ = codec.parse_messages(stream.slice(len(one_round) + i, len(one_round) + i + 1))
    assert a.name == b.name and a.get("Channel") == b.get("Channel")
    assert a.get("Uniqueid").endswith(".r0") and b.get("Uniqueid").endswith(".r1")
    assert float(b.get("Timestamp")) - float(a.get("Timestamp")) == pytest.approx(ami_stream.ROUND_PERIOD)


def test_subscribed_stream_is_what_the_gateway_event_filter_lets_through():
    stream = ami_stream.build_stream(500, "subscribed")
    messages, _ = codec.parse_messages(stream.data)
    names = Counter(m.name for m in messages)
    assert "VarSet" not in names and "Newexten" not in names and names["QueueCallerJoin"] > 0
    assert {m.get("UserEvent") for m in messages if m.name == "UserEvent"} == {"HotlinePath"}


@pytest.mark.filterwarnings("ignore:isSet:DeprecationWarning")  # pyst2 0.5.1 on Python 3.11
def test_every_in_process_parse_target_counts_every_event():
    stream = ami_stream.build_stream(1200, "all")
    data = ami_stream.BANNER + stream.data
    reads = ami_stream.chunks(data, 4096)
    assert ami_parse_bench.run_codec(reads) == 1200
    assert ami_parse_bench.run_codec(ami_stream.chunks(data, 65536)) == 1200
    assert ami_parse_bench.run_pyst2_parse(data) == 1200
    check: dict = {}
    assert ami_parse_bench.run_client(reads, check) == 1200
    gc.collect()  # pyst2's Manager.__del__ runs here, under this test's warning filter


def test_panoramisk_target_counts_every_event():
    pytest.importorskip("panoramisk")  # a bench-only extra: `.venv/bin/pip install panoramisk`
    stream = ami_stream.build_stream(700, "all")
    assert ami_parse_bench.run_panoramisk(ami_stream.chunks(ami_stream.BANNER + stream.data, 4096)) == 700


def test_client_path_counts_each_repeated_round_as_new_calls(one_round):
    """Two rounds of the three recorded calls: six calls offered, not three."""
    stream = ami_stream.build_stream(len(one_round) * 2, "all")
    check: dict = {}
    ami_parse_bench.run_client(ami_stream.chunks(ami_stream.BANNER + stream.data, 4096), check)
    assert check["offered"] == 6


def test_lag_probe_reports_how_late_each_tick_ran_against_its_due_time():
    clock = task.Clock()
    probe = LagProbe(clock, interval=0.01)
    probe.start()
    clock.advance(0.01)  # on time
    clock.advance(0.035)  # due at 0.02, runs at 0.045
    clock.advance(0.005)  # next due at 0.05: on time
    lags = [round(lag, 6) for _, lag in probe.samples]
    assert lags == [0.0, 0.025, 0.0]
    assert probe.lags(0.015, 0.03) == [pytest.approx(0.025)]
    probe.stop()


def _login(proto, transport, secret="s"):
    key = hashlib.md5((CHALLENGE + secret).encode()).hexdigest()
    proto.dataReceived(codec.format_action("Challenge", {"ActionID": "1", "AuthType": "MD5"}))
    proto.dataReceived(codec.format_action("Login", {"ActionID": "2", "Username": "u", "Key": key}))
    replies, rest = codec.parse_messages(transport.value(), expect_banner=True)
    transport.clear()
    assert [m.get("Response") for m in replies[1:]] == ["Success", "Success"] and rest == b""


def _fake(stream_events=300):
    clock = task.Clock()
    streams = {"subscribed": ami_stream.build_stream(stream_events, "subscribed")}
    lost = []
    factory = FakeFactory(clock, streams, "s", on_lost=lambda: lost.append(True))
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    _login(proto, transport)
    return clock, proto, transport, streams["subscribed"]


def test_fake_asterisk_floods_whole_events_then_replies_with_the_count():
    _clock, proto, transport, stream = _fake()
    proto.dataReceived(codec.format_action("BenchFlood", {"ActionID": "9", "Stream": "subscribed", "Events": 250, "Rate": 0}))
    while transport.producer is not None:  # the transport asks for more each time its buffer drains
        transport.producer.resumeProducing()
    messages, rest = codec.parse_messages(transport.value())
    assert rest == b"" and len(messages) == 251
    assert transport.value().startswith(stream.slice(0, 250))
    reply = messages[-1]
    assert (reply.action_id, reply.get("Events"), reply.get("Reason")) == ("9", "250", "done")


def test_fake_asterisk_paced_flood_stops_at_its_time_limit():
    clock, proto, transport, _ = _fake()
    proto.dataReceived(
        codec.format_action("BenchFlood", {"ActionID": "9", "Stream": "subscribed", "Events": 300, "Rate": 100, "Limit": 1})
    )
    for _ in range(40):
        clock.advance(0.05)
    messages, rest = codec.parse_messages(transport.value())
    reply = messages[-1]
    assert reply.get("Reason") == "time limit" and 90 <= int(reply.get("Events")) <= 101
    assert len(messages) == int(reply.get("Events")) + 1 and rest == b""
