"""Callbacks (漏话回拨) end to end with the real components: Asterisk 22 (the hotline),
the lab carrier (a second Asterisk on the far end of the PJSIP trunk, answering as
scripted per number in AstDB ``carrier/<number>``), the test session's Redis, and
the gateway process with its dialer switched on.

Each test starts the gateway with its own dialer settings (environment) and stops
it afterwards, so the rest of the suite gets a gateway with the dialer off.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.dialer.jobs import Job, JobStore
from gateway.lab import CallRequest, Lab
from gateway.lab.settings import LAB_DIALER_ENV

pytestmark = pytest.mark.integration

TOKEN = "lab-callback-token"
#: a citizen who answers, presses 1 after 2 s and stays on the line
PRESS_1 = "ring:1,answer,wait:2,dtmf:1,talk:25,hangup"

BASE_ENV = {
    **LAB_DIALER_ENV,
    "HOTLINE_DIALER_CALLS_PER_SECOND": "2",
    "HOTLINE_DIALER_MAX_OUTBOUND": "4",
    # the lab agents talk LAB_AGENT_TALK (3) s before hanging up
    "HOTLINE_CALLBACKS_MIN_TALK": "2",
    "HOTLINE_CALLBACKS_POLL_INTERVAL": "0.5",
    "HOTLINE_CALLBACKS_API_TOKEN": TOKEN,
}


# -- helpers -----------------------------------------------------------------------------------
def client(lab: Lab) -> redis.Redis:
    return redis.Redis.from_url(lab.settings.redis_url, decode_responses=True, socket_timeout=5)


def store(lab: Lab) -> JobStore:
    return JobStore(client(lab), key_prefix="hotline", owner="test-reader")


def api(lab: Lab, method: str = "GET", path: str = "", body: dict | None = None) -> tuple[int, dict]:
    url = f"http://{lab.settings.http_host}:{lab.settings.http_port}/callbacks{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def metric(lab: Lab, name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{lab.settings.http_host}:{lab.settings.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()))


def add_callback(lab: Lab, number: str) -> str:
    code, body = api(lab, "POST", body={"number": number, "note": "integration test"})
    assert code == 201, body
    return body["id"]


def wait_done(lab: Lab, ids: list[str], timeout: float) -> dict[str, Job]:
    reader = store(lab)
    deadline = time.monotonic() + timeout
    while True:
        try:
            jobs = {job_id: reader.get(job_id) for job_id in ids}
            if all(job is not None and job.state == "done" for job in jobs.values()):
                return jobs
        except redis.RedisError:
            pass  # Redis restarting
        if time.monotonic() > deadline:
            states = {i: (j.state, j.attempts, j.outcome) if j else None for i, j in jobs.items()}
            pytest.fail(f"callbacks not finished within {timeout:.0f} s: {states}\n{lab.gateway.log_tail()}")
        time.sleep(0.5)


def wait_trunk(lab: Lab, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = lab.trunk_status()
        if status["registration"] == "Registered" and (status["contact"] or "").startswith("Avail"):
            return
        assert time.monotonic() < deadline, f"trunk not back: {status}"
        time.sleep(0.5)


def attempts(history: list[dict]) -> list[dict]:
    return [entry for entry in history if entry.get("event") == "attempt"]


def assert_one_outcome_and_no_overlapping_dials(reader: JobStore, job_id: str) -> list[dict]:
    """One final entry; every dial is concluded before the next one starts; no attempt id twice."""
    history = reader.history(job_id)
    finals = [e for e in history if e.get("event") == "final"]
    assert len(finals) == 1, history
    open_attempt = None
    seen = set()
    for entry in history:
        if entry.get("event") == "dialing":
            assert open_attempt is None, f"{job_id}: dialled again while {open_attempt} was in progress: {history}"
            assert entry["attempt_id"] not in seen
            seen.add(entry["attempt_id"])
            open_attempt = entry["attempt_id"]
        elif entry.get("event") == "attempt":
            assert entry["attempt_id"] == open_attempt, history
            open_attempt = None
    assert open_attempt is None, history
    return history


@pytest.fixture
def numbers(trunk_up: Lab) -> Iterator[dict[str, str]]:
    """Carrier behaviours by number (removed afterwards)."""
    scripted: dict[str, str] = {}

    def script(number: str, behaviour: str) -> str:
        trunk_up.set_carrier_behaviour(number, behaviour)
        scripted[number] = behaviour
        return number

    yield script  # type: ignore[misc]
    for number in scripted:
        trunk_up.set_carrier_behaviour(number, None)


@pytest.fixture
def dialer_gateway(trunk_up: Lab) -> Iterator:
    """start(**env) runs the gateway with the dialer on; stopped (and the environment restored) afterwards."""
    saved = dict(os.environ)
    client(trunk_up).flushdb()

    def start(**extra: str) -> Lab:
        trunk_up.gateway.stop(lambda _m: None)
        os.environ.update(BASE_ENV)
        os.environ.update(extra)
        trunk_up.gateway.start(lambda _m: None)
        return trunk_up

    yield start
    trunk_up.gateway.stop(lambda _m: None)
    os.environ.clear()
    os.environ.update(saved)


# -- tests ---------------------------------------------------------------------------------------
def test_carrier_answers_press_1_silent_busy_and_no_answer_each_get_their_outcome(dialer_gateway, numbers) -> None:
    """One attempt each: pressed 1 and talked → connected; answered silently → unconfirmed;
    busy → busy; ringing out → no_answer. Each callback ends with exactly one outcome."""
    lab = dialer_gateway(HOTLINE_DIALER_MAX_ATTEMPTS="1")
    before = metric(lab, "hotline_callbacks_connected_total")
    before_api = metric(lab, "hotline_callbacks_connected_by_source_total", {"source": "api"})
    cases = {
        numbers("13900131001", PRESS_1): ("connected", "answered"),
        numbers("13900131002", "ring:1,answer,wait:40"): ("exhausted", "unconfirmed"),
        numbers("13900131003", "busy"): ("exhausted", "busy"),
        numbers("13900131004", "noanswer"): ("exhausted", "no_answer"),
    }
    ids = {add_callback(lab, number): expected for number, expected in cases.items()}
    jobs = wait_done(lab, list(ids), timeout=150)
    reader = store(lab)
    for job_id, (final, attempt_outcome) in ids.items():
        history = assert_one_outcome_and_no_overlapping_dials(reader, job_id)
        assert jobs[job_id].outcome == final, history
        assert [a["outcome"] for a in attempts(history)] == [attempt_outcome], history
    connected = [j for j in ids if ids[j][0] == "connected"][0]
    [answered] = attempts(reader.history(connected))
    assert answered["pressed"] and answered["talk"] >= 2
    # callbacks added by the API never abandoned a queue call: they are connected callbacks, but do not
    # count toward 广义接通率 (whose numerator must stay within the calls offered)
    assert metric(lab, "hotline_callbacks_connected_by_source_total", {"source": "api"}) == before_api + 1
    assert metric(lab, "hotline_callbacks_connected_total") == before
    assert metric(lab, "hotline_callbacks_finished_total", {"outcome": "connected"}) == 1


def test_abandoned_calls_in_the_lab_queue_become_callbacks_that_connect(dialer_gateway, numbers) -> None:
    """A citizen hangs up while the agents ring on; the monitor (and the safety net) record it; the dialer
    calls the citizen back through the trunk, they press 1, an agent answers: one connected callback."""
    lab = dialer_gateway()
    citizen = numbers("13900132001", PRESS_1)
    connected_before = metric(lab, "hotline_callbacks_connected_total")
    result = lab.call(CallRequest(caller=citizen, hangup_after=12, agent_ring=60, timeout=60))
    assert result.queue_joined and not result.agent_answered
    reader = store(lab)
    deadline = time.monotonic() + 30
    while not (listed := reader.list("callback")):
        assert time.monotonic() < deadline, f"no callback scheduled for the abandon:\n{lab.gateway.log_tail()}"
        time.sleep(0.5)
    assert len(listed) == 1  # the monitor's abandon and the safety net's record are one callback
    job = listed[0]
    assert job.payload["source"] in ("abandon", "safety-net") and job.number == citizen
    [done] = wait_done(lab, [job.id], timeout=120).values()
    assert done.outcome == "connected", reader.history(job.id)
    assert_one_outcome_and_no_overlapping_dials(reader, job.id)
    assert metric(lab, "hotline_callback_latency_seconds_count") == 1
    # an abandoned queue call whose callback connected: the numerator of 广义接通率
    assert metric(lab, "hotline_callbacks_connected_total") == connected_before + 1


def _restart_redis_with_aof(lab: Lab, directory: Path, while_down=lambda: None) -> None:
    """Kill the lab's Redis hard, run ``while_down()``, start Redis again from its append-only file
    (same port, same pid file)."""
    c = client(lab)
    port = c.connection_pool.connection_kwargs["port"]
    pid = int(lab.redis.pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab.redis.ping():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2)  # the gateway sees Redis away
    while_down()
    subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "yes",
                    "--appendfsync", "always", "--dir", str(directory), "--daemonize", "yes",
                    "--pidfile", str(lab.redis.pid_file)], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not lab.redis.ping():
        assert time.monotonic() < deadline, "redis did not come back"
        time.sleep(0.1)


def test_every_callback_ends_once_through_gateway_asterisk_and_redis_restarts(dialer_gateway, numbers,
                                                                               request) -> None:
    """A campaign of 6 callbacks survives a gateway crash (SIGKILL), an Asterisk restart and a Redis crash
    (with AOF): every callback ends with exactly one outcome, none is lost, no attempt is dialled while
    another attempt of the same callback is in progress, and all connect in the end. While Redis is
    away a citizen calling in still reaches an agent."""
    lab = dialer_gateway(
        HOTLINE_DIALER_MAX_OUTBOUND="2", HOTLINE_DIALER_CALLS_PER_SECOND="1", HOTLINE_DIALER_LEASE="8",
        HOTLINE_DIALER_MAX_ATTEMPTS="6", HOTLINE_REDIS_RETRY_INTERVAL="1",
        HOTLINE_DIALER_BACKOFF="no_answer=3,busy=3,congestion=3,failed=3,unconfirmed=3",
    )
    c = client(lab)
    aof_dir = Path(c.config_get("dir")["dir"])  # `dir` is protected: keep the running server's
    aof_files = aof_dir / c.config_get("appenddirname").get("appenddirname", "appendonlydir")
    had_aof = aof_files.exists()
    c.config_set("appendfsync", "always")
    c.config_set("appendonly", "yes")
    if not had_aof:
        request.addfinalizer(lambda: shutil.rmtree(aof_files, ignore_errors=True))
    lab.clear_carrier_steps()
    called = [numbers(f"139001330{i:02d}", PRESS_1) for i in range(6)]
    ids = [add_callback(lab, number) for number in called]
    reader = store(lab)

    def dialling() -> int:
        return sum(1 for job_id in ids if (job := reader.get(job_id)) and job.phase == "dialing")

    deadline = time.monotonic() + 30
    while dialling() == 0:
        assert time.monotonic() < deadline, lab.gateway.log_tail()
        time.sleep(0.2)
    time.sleep(3)  # calls ringing / answered
    os.kill(lab.gateway.pid(), signal.SIGKILL)  # crash: no clean shutdown
    time.sleep(2)
    lab.gateway.start(lambda _m: None)

    deadline = time.monotonic() + 90
    while sum(1 for job_id in ids if reader.get(job_id).state == "done") < 2:
        assert time.monotonic() < deadline, lab.gateway.log_tail()
        time.sleep(0.5)
    lab.asterisk.stop(lambda _m: None)
    lab.asterisk.start(lambda _m: None)
    wait_trunk(lab)

    deadline = time.monotonic() + 90
    while sum(1 for job_id in ids if reader.get(job_id).state == "done") < 4:
        assert time.monotonic() < deadline, lab.gateway.log_tail()
        time.sleep(0.5)
    inbound = []

    def citizen_calls_in() -> None:
        """With Redis away the dialer pauses; a citizen calling in still reaches an agent."""
        inbound.append(lab.call(CallRequest(caller="13700137001", hangup_after=12, timeout=40)))

    _restart_redis_with_aof(lab, aof_dir, citizen_calls_in)
    assert inbound[0].agent_answered, inbound[0].steps

    jobs = wait_done(lab, ids, timeout=240)
    reader = store(lab)
    for job_id in ids:
        history = assert_one_outcome_and_no_overlapping_dials(reader, job_id)
        assert jobs[job_id].outcome == "connected", history
    recovered = sum(1 for job_id in ids for e in reader.history(job_id) if e.get("event") == "lease-recovered")
    print(f"leases recovered after the crash: {recovered}; attempts: "
          f"{[len(attempts(reader.history(j))) for j in ids]}")
    # seen from the citizens' side (the carrier): each one pressed 1 — took the callback and was put
    # through — exactly once, so nobody who had been served was called again (calls cut by the crash or
    # the restart before the key are retried, and that is right: those show as a second answer)
    steps = lab.carrier_steps()
    assert {number: steps.get(number, {}).get("dtmf", 0) for number in called} == dict.fromkeys(called, 1), steps


def test_agent_first_reserves_an_agent_then_calls_the_citizen_who_presses_1(dialer_gateway, numbers) -> None:
    """agent-first: the queue gives an agent first ([hotline-callback-agent]); then the citizen is
    dialled, hears the prompt, presses 1 and is bridged to the waiting agent: connected."""
    lab = dialer_gateway(HOTLINE_CALLBACKS_MODE="agent-first", HOTLINE_DIALER_MAX_ATTEMPTS="1")
    lab.cli("dialplan set global LAB_AGENT_TALK 25")  # the agent waits on the line for the citizen
    try:
        number = numbers("13900134001", "ring:1,answer,wait:2,dtmf:1,talk:8,hangup")
        job_id = add_callback(lab, number)
        [job] = wait_done(lab, [job_id], timeout=120).values()
    finally:
        lab.cli("dialplan set global LAB_AGENT_TALK 3")
    history = assert_one_outcome_and_no_overlapping_dials(store(lab), job_id)
    assert job.mode == "agent-first"
    assert job.outcome == "connected", history
    [attempt] = attempts(history)
    assert attempt["pressed"] and attempt["talk"] >= 2
