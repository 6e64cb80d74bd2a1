"""The gateway's AMI monitor against the real lab: a scripted mix of calls gives
exactly the expected counter values, and killing the AMI connection mid-run
loses no abandoned call and double-counts none."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.lab import CallRequest, Lab

from .test_inbound_calls import after_greeting

COUNTERS = (
    "hotline_queue_calls_offered_total",
    "hotline_queue_calls_answered_total",
    "hotline_queue_calls_answered_within_sl_total",
    "hotline_queue_calls_abandoned_total",
    "hotline_queue_calls_short_abandoned_total",
)


def scrape(lab: Lab) -> dict[str, float]:
    url = f"http://{lab.settings.http_host}:{lab.settings.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in values and sample.labels.get("queue") == "12345":
                values[sample.name] = sample.value
    return values


def ready(lab: Lab) -> bool:
    url = f"http://{lab.settings.http_host}:{lab.settings.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_ready(lab: Lab, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready(lab):
        assert time.monotonic() < deadline, "the gateway never became ready (AMI logged in, Redis up)"
        time.sleep(0.5)


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name.replace("hotline_queue_calls_", "").replace("_total", ""): after[name] - before[name] for name in COUNTERS}


def settle(lab: Lab, before: dict[str, float], expected: dict[str, float], timeout: float = 15) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = delta(before, scrape(lab))
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def kill_gateway_ami_socket(lab: Lab) -> None:
    """Destroy the gateway's own TCP connection to AMI (ss -K), leaving the lab's tracker session alone."""
    pid = lab.gateway.pid()
    listing = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :5038 )"],
                             capture_output=True, text=True, check=True).stdout
    ports = [line.split()[2].rsplit(":", 1)[1] for line in listing.splitlines() if f"pid={pid}," in line]
    assert ports, f"no AMI connection of the gateway (pid {pid}) found:\n{listing}"
    for port in ports:
        subprocess.run(["ss", "-K", "-tn", "state", "established", f"( sport = :{port} )"],
                       capture_output=True, check=True)
    listing = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :5038 )"],
                             capture_output=True, text=True, check=True).stdout
    if any(f"pid={pid}," in line and line.split()[2].endswith(f":{p}") for line in listing.splitlines() for p in ports):
        pytest.skip("this kernel cannot destroy sockets (ss -K needs CONFIG_INET_DIAG_DESTROY)")


def pause_agents(lab: Lab, paused: bool) -> None:
    for n in range(1, lab.settings.agents + 1):
        lab.cli(f"queue {'pause' if paused else 'unpause'} member Local/agent{n}@lab-agent queue 12345")


def test_scripted_mix_gives_exact_counts(gateway_up: Lab) -> None:
    lab = gateway_up
    wait_ready(lab)
    greet = after_greeting(lab)
    before = scrape(lab)
    # answered fast (agent rings 1 s)
    fast = lab.call(CallRequest(hangup_after=40, agent_talk=2))
    assert fast.agent_answered
    # abandoned after ~8 s in the queue (agents ring for 20 s)
    abandoned = lab.call(CallRequest(hangup_after=greet + 8, agent_ring=20))
    assert abandoned.abandoned
    # short abandon (秒挂): gone ~1.5 s after joining
    short = lab.call(CallRequest(hangup_after=greet + 1.5, agent_ring=20))
    assert short.abandoned
    # answered late: every agent paused for 20 s after the call joins
    pause_agents(lab, True)
    timer = threading.Timer(greet + 20, pause_agents, (lab, False))
    timer.start()
    try:
        late = lab.call(CallRequest(hangup_after=70, agent_talk=2, timeout=120))
    finally:
        timer.join()
        pause_agents(lab, False)
    assert late.agent_answered and late.answer_after and late.answer_after > 15
    expected = {"offered": 4, "answered": 2, "answered_within_sl": 1, "abandoned": 2, "short_abandoned": 1}
    assert settle(lab, before, expected) == expected


def test_ami_connection_killed_mid_run_loses_and_doubles_nothing(gateway_up: Lab) -> None:
    """Abandons that happen while the gateway's AMI session is down are recovered once (queue_log)."""
    lab = gateway_up
    wait_ready(lab)
    greet = after_greeting(lab)
    before = scrape(lab)
    holder: dict = {}

    def call():
        holder["result"] = lab.call(CallRequest(hangup_after=greet + 8, agent_ring=20))

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(greet + 2)  # the citizen is waiting in the queue
    # Freeze the gateway and destroy its AMI connection: the abandon happens
    # while it can receive nothing; after it resumes it must reconnect, resync
    # and recover the abandon from queue_log — exactly once.
    pid = lab.gateway.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        kill_gateway_ami_socket(lab)
        thread.join(90)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert holder["result"].abandoned
    wait_ready(lab, timeout=60)
    expected = {"offered": 1, "answered": 0, "answered_within_sl": 0, "abandoned": 1, "short_abandoned": 0}
    assert settle(lab, before, expected, timeout=30) == expected


def untracked(lab: Lab) -> float:
    url = f"http://{lab.settings.http_host}:{lab.settings.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "hotline_queue_calls_untracked_total")


def test_asterisk_stopped_and_restarted_mid_run_loses_and_doubles_nothing(gateway_up: Lab) -> None:
    """Calls before and after an Asterisk restart are counted once each: the gateway's AMI session goes
    (not ready), comes back by itself, resyncs and replays queue_log without counting the first abandon again."""
    lab = gateway_up
    wait_ready(lab)
    greet = after_greeting(lab)
    before, untracked_before = scrape(lab), untracked(lab)
    first = lab.call(CallRequest(hangup_after=greet + 8, agent_ring=20))
    assert first.abandoned
    assert settle(lab, before, {"offered": 1, "answered": 0, "answered_within_sl": 0, "abandoned": 1,
                                "short_abandoned": 0})["abandoned"] == 1
    lab.asterisk.stop(lambda _m: None)
    deadline = time.monotonic() + 30
    while ready(lab):  # /readyz follows the AMI session
        assert time.monotonic() < deadline, "the gateway stayed ready with Asterisk stopped"
        time.sleep(0.5)
    lab.asterisk.start(lambda _m: None)
    wait_ready(lab, timeout=90)  # reconnected with backoff, logged in, resynced
    second = lab.call(CallRequest(hangup_after=greet + 8, agent_ring=20))
    answered = lab.call(CallRequest(hangup_after=40, agent_talk=2))
    assert second.abandoned and answered.agent_answered
    expected = {"offered": 3, "answered": 1, "answered_within_sl": 1, "abandoned": 2, "short_abandoned": 0}
    assert settle(lab, before, expected, timeout=30) == expected
    assert untracked(lab) == untracked_before


def test_abandon_while_the_gateway_is_stopped_is_counted_once_after_it_restarts(gateway_up: Lab) -> None:
    """A citizen waits in the queue, the gateway is stopped (a deploy), the citizen gives up while it is
    down: the restarted gateway recovers the abandon from its checkpoint and queue_log — once, without
    counting the call as offered a second time (the stopped process had counted that)."""
    lab = gateway_up
    wait_ready(lab)
    greet = after_greeting(lab)
    holder: dict = {}

    def call():
        holder["result"] = lab.call(CallRequest(hangup_after=greet + 10, agent_ring=30))

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(greet + 3)  # the citizen is waiting in the queue, counted as offered by this process
    lab.gateway.stop(lambda _m: None)
    thread.join(90)
    assert holder["result"].abandoned
    lab.gateway.start(lambda _m: None)
    wait_ready(lab, timeout=60)
    zero = dict.fromkeys(COUNTERS, 0.0)  # a new process: its counters start at 0
    expected = {"offered": 0, "answered": 0, "answered_within_sl": 0, "abandoned": 1, "short_abandoned": 0}
    assert settle(lab, zero, expected, timeout=30) == expected
    assert untracked(lab) == 0
