"""Real calls through the real lab: Asterisk 22, the gateway over FastAGI, Redis.

One simulated citizen per test (a Local channel whose other leg keys DTMF,
plays speech and hangs up when told). Timings of DTMF are derived from the
real prompt files, so a key lands while the intended prompt is playing.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
import wave
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.lab import CallRequest, Lab

FLOW_FILE = "main.yaml"


# -- helpers -----------------------------------------------------------------------------
def prompt_seconds(lab: Lab, name: str) -> float:
    path = lab.chroot.path(f"/usr/share/asterisk/sounds/zh/hotline/{name}.wav")
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def redis_client(lab: Lab) -> redis.Redis:
    return redis.Redis.from_url(lab.settings.redis_url, decode_responses=True, socket_timeout=2)


def metric(lab: Lab, name: str, labels: dict[str, str] | None = None) -> float:
    url = f"http://{lab.settings.http_host}:{lab.settings.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


def flows_dir() -> Path:
    return Path(os.environ["HOTLINE_FLOWS_DIRECTORY"])


def write_flow(text: str, lab: Lab) -> None:
    """Edit the session's flow copy and SIGHUP the gateway; wait until it reloaded."""
    before = metric(lab, "hotline_flow_loads_total")
    (flows_dir() / FLOW_FILE).write_text(text)
    os.kill(lab.gateway.pid(), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while metric(lab, "hotline_flow_loads_total") <= before:
        assert time.monotonic() < deadline, "the gateway did not reload its flows"
        time.sleep(0.1)


def original_flow() -> str:
    return (Path(__file__).resolve().parents[2] / "ivr_flows" / FLOW_FILE).read_text()


@pytest.fixture
def gw(gateway_up: Lab):
    """Gateway up with the shipped flow (top menu off); flow restored afterwards."""
    if (flows_dir() / FLOW_FILE).read_text() != original_flow():
        write_flow(original_flow(), gateway_up)
    yield gateway_up
    if (flows_dir() / FLOW_FILE).read_text() != original_flow():
        write_flow(original_flow(), gateway_up)


@pytest.fixture
def menu_on(gw: Lab) -> Lab:
    write_flow(original_flow().replace("top_menu: false", "top_menu: true"), gw)
    return gw


def record_of(result) -> dict:
    assert result.gateway_record is not None, f"no gateway call record; steps: {result.steps}"
    return result.gateway_record


def gateway_log_has_no_traceback(lab: Lab) -> None:
    log = lab.gateway.log_file.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


# -- issue 2: the first real call -------------------------------------------------------
def test_call_reaches_the_queue_through_the_gateway(gw: Lab) -> None:
    """12345 → gateway flow (greeting) → queue 12345 → lab agent; call record in Redis."""
    result = gw.call(CallRequest(hangup_after=30))
    assert result.went_through and result.agi_status == "SUCCESS" and result.gateway_next == "queue"
    assert result.queue_joined and result.agent_answered
    record = record_of(result)
    assert record["flow"] == "main" and record["flow_version"].startswith("2+")
    assert record["outcome"] == "handoff_queue" and record["handoff"] == "queue:12345"
    assert "prompt:welcome" in record["path"]
    assert record["caller_masked"] == "138****8000"
    assert float(record["ended_at"]) >= float(record["started_at"])


def test_caller_hangs_up_during_the_greeting(gw: Lab) -> None:
    """The record is closed as caller_hangup; no queue, no traceback."""
    assert prompt_seconds(gw, "welcome") > 3
    result = gw.call(CallRequest(hangup_after=2))
    assert not result.queue_joined
    record = record_of(result)
    assert record["outcome"] == "caller_hangup"
    assert record["path"][-1] == "prompt:welcome"
    gateway_log_has_no_traceback(gw)


def test_gateway_stopped_call_still_reaches_the_queue(gateway_down: Lab) -> None:
    result = gateway_down.call(CallRequest(hangup_after=30))
    assert result.agi_status == "FAILURE"
    assert result.queue_joined and result.agent_answered


def test_redis_stopped_call_still_reaches_the_queue_and_the_record_arrives_later(gw: Lab) -> None:
    """Redis down mid-service: the call goes through, failures are counted, the record is replayed."""
    from gateway.lab.errors import LabError  # noqa: F401  (the lab raises it if Redis will not restart)

    port = redis_client(gw).connection_pool.connection_kwargs["port"]
    assert port != 6379, "the test session must use its own Redis"
    failures_before = metric(gw, "hotline_redis_failures_total")
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False, capture_output=True)
    try:
        result = gw.call(CallRequest(hangup_after=30))
        assert result.queue_joined and result.agent_answered
        assert result.gateway_next == "queue"
        assert metric(gw, "hotline_redis_failures_total") > failures_before
        assert metric(gw, "hotline_redis_backlog_records") >= 1
    finally:
        gw.redis.ensure(lambda _m: None)
    deadline = time.monotonic() + 20
    while gw.redis.read_call(result.call_id) is None:
        assert time.monotonic() < deadline, "the backlogged call record never reached Redis"
        time.sleep(0.5)
    assert gw.redis.read_call(result.call_id)["outcome"] == "handoff_queue"


# -- issue 3: one real call per branch ---------------------------------------------------
def after_greeting(lab: Lab) -> float:
    return prompt_seconds(lab, "welcome") + 1.0


def test_emergency_key_during_greeting_transfers_to_110(gw: Lab) -> None:
    result = gw.call(CallRequest(dtmf="9", dtmf_delay=1.5, hangup_after=40))
    # key 9 → emergency menu; nothing more keyed → retries → agent. Key 9 then 1:
    assert "key:9" in record_of(result)["path"]
    result = gw.call(CallRequest(dtmf="9WW1", dtmf_delay=1.5, hangup_after=40))
    record = record_of(result)
    assert record["handoff"] == "transfer:police-110"
    assert "reason:emergency-police" in record["path"]
    assert result.transfer == "police-110" or any("110" in step for step in result.steps), result.steps


def test_utility_transfer_is_announced(menu_on: Lab) -> None:
    result = menu_on.call(CallRequest(dtmf="2WW1", dtmf_delay=after_greeting(menu_on), hangup_after=40))
    record = record_of(result)
    assert record["handoff"] == "transfer:water"
    assert "prompt:to_water" in record["path"]
    assert any("utility" in step or "water" in step for step in result.steps), result.steps


def test_self_service_answer_then_zero_for_an_agent(menu_on: Lab) -> None:
    kb = prompt_seconds(menu_on, "kb_hours")
    dtmf = "3WW1" + "W" * int(kb + 2) + "0"
    result = menu_on.call(CallRequest(dtmf=dtmf, dtmf_delay=after_greeting(menu_on), hangup_after=60))
    record = record_of(result)
    assert "prompt:kb_hours" in record["path"] and "menu:kb_after:agent" in record["path"]
    assert result.queue_joined


def seed_orders(lab: Lab) -> None:
    client = redis_client(lab)
    client.hset("hotline:order:20261121001", mapping={"status": "processing", "unit": "朝阳区住建委"})
    client.hset("hotline:order:20261118007", mapping={"status": "dispatched"})
    client.zadd("hotline:caller:13700137000:orders", {"20261118007": 1})


def test_status_query_known_number(menu_on: Lab) -> None:
    seed_orders(menu_on)
    result = menu_on.call(CallRequest(dtmf="4WW20261121001#", dtmf_delay=after_greeting(menu_on), hangup_after=45))
    record = record_of(result)
    assert "order:processing" in record["path"] and "prompt:status_processing" in record["path"]
    assert result.queue_joined, "after the status the caller still reaches an agent"


def test_status_query_unknown_number(menu_on: Lab) -> None:
    seed_orders(menu_on)
    result = menu_on.call(CallRequest(dtmf="4WW99999999#", dtmf_delay=after_greeting(menu_on), hangup_after=45))
    record = record_of(result)
    assert "order:unknown" in record["path"] and "prompt:order_unknown" in record["path"]
    assert result.queue_joined


def test_priority_caller_joins_with_priority(gw: Lab) -> None:
    redis_client(gw).sadd("hotline:list:priority", "13900139000")
    result = gw.call(CallRequest(caller="13900139000", hangup_after=30))
    record = record_of(result)
    assert "caller:priority" in record["path"] and record["handoff"] == "queue:12345"
    joins = [e for e in result.events if e.get("Event") == "UserEvent" and e.get("Step") == "queue"]
    assert joins and joins[0].get("QueuePriority") == "10"


def test_repeat_caller_hears_open_order_status_first(gw: Lab) -> None:
    seed_orders(gw)
    result = gw.call(CallRequest(caller="13700137000", hangup_after=45))
    record = record_of(result)
    assert "caller:open-order" in record["path"] and "order:dispatched" in record["path"]
    assert result.queue_joined


def busy_queue(lab: Lab, busy: bool) -> None:
    """Pause every lab agent: no free agent, so the estimated wait exceeds the threshold."""
    for n in range(1, lab.settings.agents + 1):
        lab.cli(f"queue {'pause' if busy else 'unpause'} member Local/agent{n}@lab-agent queue 12345")


@pytest.fixture
def peak(gw: Lab):
    write_flow(original_flow().replace("queue_wait_over: 120", "queue_wait_over: 5"), gw)
    busy_queue(gw, True)
    yield gw
    busy_queue(gw, False)


def test_callback_request_at_a_busy_queue(peak: Lab) -> None:
    client = redis_client(peak)
    before = client.xlen("hotline:callback:requests")
    offer_at = after_greeting(peak)
    result = peak.call(CallRequest(dtmf="1", dtmf_delay=offer_at, hangup_after=40))
    record = record_of(result)
    assert "callback:stored" in record["path"] and record["handoff"] == "hangup:"
    entries = client.xrange("hotline:callback:requests", "-", "+")
    assert len(entries) == before + 1
    request = json.loads(entries[-1][1]["data"])
    assert request["call_id"] == result.call_id and request["queue"] == "12345" and request["position"] >= 1


def test_voice_message_is_recorded_and_queued_for_transcription(peak: Lab) -> None:
    client = redis_client(peak)
    speech = peak.speech_sound("我家楼下的路灯坏了一个星期了，地址是朝阳区建国路八十八号。")
    wait_for_beep = int(prompt_seconds(peak, "record_intro") + 2)
    result = peak.call(
        CallRequest(
            dtmf="2" + "W" * wait_for_beep,
            dtmf_delay=after_greeting(peak),
            speech=speech,
            dtmf_after="#",
            hangup_after=60,
        )
    )
    record = record_of(result)
    assert "voice_message:stored" in record["path"]
    job = json.loads(client.xrange("hotline:jobs:transcribe", "-", "+")[-1][1]["data"])
    assert job["call_id"] == result.call_id and job["caller"] == "13800138000"
    wav = peak.chroot.path(job["path"])
    assert wav.exists(), f"no recording at {wav}"
    stat = subprocess.run(["sox", str(wav), "-n", "stat"], capture_output=True, text=True).stderr
    rms = float(re.search(r"RMS\s+amplitude:\s+([\d.]+)", stat).group(1))
    assert rms > 0.01, f"the recording is silence (RMS {rms})"


def test_invalid_keys_then_the_queue(menu_on: Lab) -> None:
    menu = prompt_seconds(menu_on, "menu_top")
    gap = "W" * int(menu + 3)
    result = menu_on.call(CallRequest(dtmf=f"7{gap}8{gap}9", dtmf_delay=after_greeting(menu_on), hangup_after=90))
    record = record_of(result)
    assert record["path"].count("menu:top:invalid") == 3 and "menu:top:give-up" in record["path"]
    assert result.queue_joined


@pytest.mark.parametrize(
    "where, dtmf, extra",
    [
        ("menu", "", 2.0),  # hang up while the top menu plays
        ("input", "4", 2.0),  # while asked for the order number
        ("transfer-announce", "2WW1", 0.2),  # while the utility transfer is announced
    ],
)
def test_caller_hangs_up_in_every_kind_of_node(menu_on: Lab, where: str, dtmf: str, extra: float) -> None:
    delay = after_greeting(menu_on)
    result = menu_on.call(CallRequest(dtmf=dtmf or "", dtmf_delay=delay, hangup_after=delay + extra + (3 if dtmf else 0)))
    record = record_of(result)
    assert record["outcome"] == "caller_hangup", (where, record)
    gateway_log_has_no_traceback(menu_on)


def test_reload_during_a_call_does_not_disturb_it(menu_on: Lab) -> None:
    """A call in the menu keeps its flow version while the file changes under it."""
    import threading

    holder = {}
    delay = after_greeting(menu_on) + 4

    def place():
        holder["result"] = menu_on.call(CallRequest(dtmf="2WW1", dtmf_delay=delay, hangup_after=40))

    thread = threading.Thread(target=place)
    thread.start()
    time.sleep(after_greeting(menu_on))
    old = (flows_dir() / FLOW_FILE).read_text()
    write_flow(old.replace('version: "2"', 'version: "3"'), menu_on)
    thread.join(60)
    record = record_of(holder["result"])
    assert record["flow_version"].startswith("2+") and record["handoff"] == "transfer:water"
    after = menu_on.call(CallRequest(hangup_after=3))
    assert record_of(after)["flow_version"].startswith("3+")


def test_caller_hangs_up_while_recording_a_message(peak: Lab) -> None:
    """Hang-up in a record node: the partial message still becomes a job (nothing said is lost)."""
    speech = peak.speech_sound("我要反映噪音扰民的问题。")
    wait_for_beep = int(prompt_seconds(peak, "record_intro") + 2)
    delay = after_greeting(peak)
    result = peak.call(
        CallRequest(dtmf="2" + "W" * wait_for_beep, dtmf_delay=delay, speech=speech, hangup_after=delay + wait_for_beep + 5)
    )
    record = record_of(result)
    assert record["outcome"] == "caller_hangup"
    assert "record:hangup" in record["path"] and "voice_message:stored" in record["path"]
    job = json.loads(redis_client(peak).xrange("hotline:jobs:transcribe", "-", "+")[-1][1]["data"])
    assert job["call_id"] == result.call_id and job["ended_by"] == "hangup"
    gateway_log_has_no_traceback(peak)


def test_caller_hangs_up_while_the_order_status_is_spoken(menu_on: Lab) -> None:
    """Hang-up while the gateway speaks a work order's status: the record is closed as a hang-up, no traceback."""
    seed_orders(menu_on)
    delay = after_greeting(menu_on)
    # 4 (status) during the menu, order number keyed ~2 s later; the status is spoken ~5 s after the menu key
    result = menu_on.call(CallRequest(dtmf="4WW20261121001#", dtmf_delay=delay, hangup_after=delay + 7.5))
    record = record_of(result)
    assert record["outcome"] == "caller_hangup", record
    assert "order:processing" in record["path"] and not result.queue_joined, record
    gateway_log_has_no_traceback(menu_on)


def test_caller_hangs_up_right_after_asking_for_a_callback(peak: Lab) -> None:
    """Hang-up during the "we will call you back" confirmation: the request is stored all the same."""
    client = redis_client(peak)
    before = client.xlen("hotline:callback:requests")
    offer_at = after_greeting(peak)
    result = peak.call(CallRequest(dtmf="1", dtmf_delay=offer_at, hangup_after=offer_at + 2))
    record = record_of(result)
    assert record["outcome"] == "caller_hangup" and "callback:stored" in record["path"], record
    assert client.xlen("hotline:callback:requests") == before + 1
    assert json.loads(client.xrange("hotline:callback:requests", "-", "+")[-1][1]["data"])["call_id"] == result.call_id
    gateway_log_has_no_traceback(peak)
