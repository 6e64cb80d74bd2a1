"""Citizens as real SIP user agents (issue 15): SIPp calls 12345 over the carrier trunk identity.

SIPp (Debian sip-tester) binds to the lab carrier's address 127.0.0.2 (on its own port; the
carrier Asterisk keeps 5070), so the hotline's ``identify`` (match = 127.0.0.2) takes its
INVITE for the carrier trunk and the call lands in ``[from-carrier]``. Voice is G.711 A-law
RTP (sip-tester's ``g711a.pcap``), keys are RFC 4733 telephone-events (its
``dtmf_2833_<d>.pcap``) or SIP INFO. Each call is followed on the hotline's AMI
(HotlinePath user events, queue events) and by the gateway's call record
(gateway.lab.sippcalls); SIPp's own verdict and the SIP statuses it received are checked too.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from gateway.dialer.jobs import JobStore
from gateway.lab import Lab
from gateway.lab.settings import LAB_DIALER_ENV
from gateway.lab.sipp import SippRun, run_sipp, scenario_keys, scenario_path
from gateway.lab.sippcalls import SippCall, follow_sipp_call, message_log_args, received_statuses
from gateway.masking import mask_number

pytestmark = pytest.mark.integration

FLOW_FILE = "main.yaml"
TOKEN = "lab-sipp-token"
#: SIP and RTP ports of the SIPp runs: each run its own (the carrier Asterisk has 127.0.0.2:5070)
_PORTS = itertools.count(5100)
_MEDIA = itertools.count(42000, 400)


# -- helpers ------------------------------------------------------------------------------------
def prompt_seconds(lab: Lab, name: str) -> float:
    with wave.open(str(lab.chroot.path(f"/usr/share/asterisk/sounds/zh/hotline/{name}.wav"))) as handle:
        return handle.getnframes() / handle.getframerate()


def http_get(lab: Lab, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{lab.settings.http_host}:{lab.settings.http_port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric(lab: Lab, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    _, body = http_get(lab, "/metrics")
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == name)


def flows_dir() -> Path:
    return Path(os.environ["HOTLINE_FLOWS_DIRECTORY"])


def original_flow() -> str:
    return (Path(__file__).resolve().parents[2] / "ivr_flows" / FLOW_FILE).read_text()


def write_flow(text: str, lab: Lab) -> None:
    """Edit the session's flow copy and SIGHUP the gateway; wait until it reloaded."""
    before = metric(lab, "hotline_flow_loads_total")
    (flows_dir() / FLOW_FILE).write_text(text)
    os.kill(lab.gateway.pid(), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while metric(lab, "hotline_flow_loads_total") <= before:
        assert time.monotonic() < deadline, "the gateway did not reload its flows"
        time.sleep(0.1)


def sipp_run(name: str, caller: str, digit: str | None = None, calls: int = 1, rate: float = 1.0,
             local_ip: str = "127.0.0.2", **keys: object) -> SippRun:
    return SippRun(scenario_path(name), "127.0.0.1:5060", scenario_keys(name, digit, caller=caller, **keys),
                   local_ip=local_ip, local_port=next(_PORTS), media_port=next(_MEDIA), calls=calls, rate=rate,
                   timeout_s=30)


def citizen(lab: Lab, tmp_path: Path, name: str, caller: str, digit: str | None = None,
            follow_s: float = 120.0, **keys: object) -> SippCall:
    """One SIPp citizen, followed on the hotline until all its channels are gone."""
    with lab.ami() as ami:
        return follow_sipp_call(ami, sipp_run(name, caller, digit, **keys), tmp_path / f"{name}-{caller}",
                                caller, read_record=lab.redis.read_call, follow_s=follow_s)


def record(call: SippCall) -> dict:
    assert call.call is not None and call.call.gateway_record is not None, call.describe()
    return call.call.gateway_record


def answered_and_served(call: SippCall) -> None:
    """SIPp: one successful call, answered 200; hotline: the call ran the gateway's main flow (AGISTATUS
    SUCCESS when the flow handed the call on, HANGUP when the citizen hung up during it)."""
    assert call.sipp.ok and call.sipp.answered == 1 and call.statuses == {200: 1}, call.describe()
    assert call.call is not None and call.call.answered, call.describe()
    assert call.call.agi_status in ("SUCCESS", "HANGUP") and record(call)["flow"] == "main", call.describe()


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def gw(gateway_up: Lab) -> Iterator[Lab]:
    """The gateway with the shipped flow (top menu off); the flow restored afterwards."""
    if (flows_dir() / FLOW_FILE).read_text() != original_flow():
        write_flow(original_flow(), gateway_up)
    yield gateway_up
    if (flows_dir() / FLOW_FILE).read_text() != original_flow():
        write_flow(original_flow(), gateway_up)


@pytest.fixture
def menu_on(gw: Lab) -> Lab:
    write_flow(original_flow().replace("top_menu: false", "top_menu: true"), gw)
    return gw


@pytest.fixture
def no_free_agent(gw: Lab) -> Iterator[Lab]:
    """The lab agents ring for a minute before answering: a queued citizen waits unserved."""
    gw.cli("dialplan set global LAB_AGENT_RING 60")
    yield gw
    gw.cli("dialplan set global LAB_AGENT_RING 1")


@pytest.fixture
def callbacks_on(no_free_agent: Lab) -> Iterator[Lab]:
    """The gateway restarted with callbacks recorded (dialer on, but no outbound call placed)."""
    lab = no_free_agent
    saved = dict(os.environ)
    lab.gateway.stop(lambda _m: None)
    os.environ.update({**LAB_DIALER_ENV, "HOTLINE_DIALER_MAX_OUTBOUND": "0",
                       "HOTLINE_CALLBACKS_POLL_INTERVAL": "0.5", "HOTLINE_CALLBACKS_API_TOKEN": TOKEN})
    lab.gateway.start(lambda _m: None)
    yield lab
    lab.gateway.stop(lambda _m: None)
    os.environ.clear()
    os.environ.update(saved)
    lab.gateway.start(lambda _m: None)


# -- the citizens -------------------------------------------------------------------------------
def test_a_top_menu_choice_keyed_as_rfc4733_takes_its_branch(menu_on: Lab, tmp_path: Path) -> None:
    """Top menu on: after the greeting the citizen keys 2 (utilities) as RFC 4733 events and
    hangs up while the utilities menu plays."""
    delay = prompt_seconds(menu_on, "welcome") + 2.0
    call = citizen(menu_on, tmp_path, "citizen_key", "13800151001", digit="2",
                   dtmf_delay_ms=int(delay * 1000), talk_ms=3000)
    answered_and_served(call)
    path = record(call)["path"]
    assert "menu:top=2" in path and "prompt:menu_utility" in path[path.index("menu:top=2"):], call.describe()
    assert record(call)["outcome"] == "caller_hangup" and not call.call.queue_joined, call.describe()
    assert call.sipp.far_end_hangups == 0


def test_the_emergency_key_9_during_the_greeting_reaches_the_emergency_menu(gw: Lab, tmp_path: Path) -> None:
    """Shipped flow: 9 keyed (RFC 4733) while the greeting says "press 9" → the emergency menu."""
    call = citizen(gw, tmp_path, "citizen_key", "13800151002", digit="9", dtmf_delay_ms=6500, talk_ms=3000)
    answered_and_served(call)
    path = record(call)["path"]
    assert "key:9" in path and "prompt:menu_emergency" in path, call.describe()
    assert path.index("key:9") < path.index("prompt:menu_emergency")
    assert not call.call.queue_joined and call.sipp.far_end_hangups == 0, call.describe()


def test_hanging_up_while_queued_leaves_a_callback_with_the_number_masked(callbacks_on: Lab,
                                                                          tmp_path: Path) -> None:
    """No free agent: the citizen waits in the queue after the greeting, then hangs up (our BYE).
    The abandoned call becomes one callback job for that number, listed masked by the API."""
    lab = callbacks_on
    caller = "13800151003"
    abandon_ms = int((prompt_seconds(lab, "welcome") + 5.0) * 1000)
    call = citizen(lab, tmp_path, "citizen_abandon", caller, abandon_ms=abandon_ms)
    answered_and_served(call)
    assert call.sipp.far_end_hangups == 0  # the hotline never hung up on the waiting citizen
    assert call.call.queue_joined and call.call.abandoned and not call.call.agent_answered, call.describe()
    assert record(call)["outcome"] == "handoff_queue"
    store = JobStore(redis.Redis.from_url(lab.settings.redis_url, decode_responses=True, socket_timeout=5),
                     key_prefix="hotline", owner="test-reader")
    deadline = time.monotonic() + 30
    while not (jobs := [job for job in store.list("callback") if job.number == caller]):
        assert time.monotonic() < deadline, f"no callback for the abandon:\n{lab.gateway.log_tail()}"
        time.sleep(0.5)
    time.sleep(2.0)  # the safety net's record arrives too: it must merge, not add a second job
    jobs = [job for job in store.list("callback") if job.number == caller]
    assert len(jobs) == 1 and jobs[0].payload["source"] in ("abandon", "safety-net"), jobs
    status, body = http_get(lab, f"/callbacks/{jobs[0].id}", TOKEN)
    assert status == 200, body
    assert json.loads(body)["callback"]["number"] == mask_number(caller) == "138****1003"
    assert caller not in body.decode()


def test_a_silent_citizen_hears_the_timeouts_then_reaches_an_agent(menu_on: Lab, tmp_path: Path) -> None:
    """Top menu on, no key at all: the menu times out (no_input, retried), gives up, and the citizen
    is queued and answered by an agent; the hotline hangs up only after the agent did."""
    call = citizen(menu_on, tmp_path, "citizen_silent", "13800151004", stay_ms=90000)
    answered_and_served(call)
    path = record(call)["path"]
    assert path.count("menu:top:timeout") == 3 and "menu:top:give-up" in path, call.describe()
    assert record(call)["outcome"] == "handoff_queue" and record(call)["handoff"] == "queue:12345"
    assert call.call.queue_joined and call.call.agent_answered, call.describe()
    # the agent hung up first; then the hotline sent its BYE (counter 1), never before an agent
    assert call.sipp.far_end_hangups == 1 and call.call.hangup_by == "agent", call.describe()


def test_sip_info_dtmf_is_a_key_too_and_no_dtmf_at_all_goes_to_the_queue(gw: Lab, tmp_path: Path) -> None:
    """The trunk endpoint says dtmf_mode = rfc4733, yet Asterisk 22's res_pjsip_dtmf_info (loaded)
    takes a SIP INFO (application/dtmf-relay, Signal=9) whatever the endpoint's dtmf_mode: it is
    answered 200 OK and the flow gets the 9 like an RFC 4733 key (the emergency menu). A citizen
    who sends no DTMF at all hears the greeting and is queued and answered by an agent."""
    info = citizen(gw, tmp_path, "citizen_info_dtmf", "13800151005", digit="9", dtmf_delay_ms=6500,
                   talk_ms=3000)
    answered_and_served(info)
    path = record(info)["path"]
    assert "key:9" in path and "prompt:menu_emergency" in path, info.describe()
    assert not info.call.queue_joined, info.describe()

    silent = citizen(gw, tmp_path, "citizen_queue", "13800151006", talk_ms=15000)
    answered_and_served(silent)
    assert not any(step.startswith("key:") for step in record(silent)["path"]), silent.describe()
    assert record(silent)["handoff"] == "queue:12345" and silent.call.agent_answered, silent.describe()
    assert silent.sipp.far_end_hangups == 1 and silent.call.hangup_by == "agent", silent.describe()


# -- bad input ----------------------------------------------------------------------------------
def test_malformed_sdp_and_an_unsupported_codec_are_refused_before_any_call(gw: Lab, tmp_path: Path) -> None:
    """A malformed SDP offer gets 400 Bad Request, a G.729-only offer 488 Not Acceptable Here:
    no channel is created on the hotline, the gateway sees no call."""
    bad_sdp = citizen(gw, tmp_path, "citizen_bad_sdp", "13800151007", follow_s=10)
    assert bad_sdp.sipp.ok and bad_sdp.statuses == {400: 1} and bad_sdp.call is None, bad_sdp.describe()
    bad_codec = citizen(gw, tmp_path, "citizen_bad_codec", "13800151008", follow_s=10)
    assert bad_codec.sipp.ok and bad_codec.statuses == {488: 1} and bad_codec.call is None, bad_codec.describe()
    assert http_get(gw, "/healthz")[0] == 200


def test_an_invite_flood_is_refused_while_a_citizen_gets_through(gw: Lab, tmp_path: Path) -> None:
    """200 INVITEs in ~2 s from the trunk address (offering only G.729) all get 488 from Asterisk;
    meanwhile a normal citizen is answered, runs the gateway flow and reaches an agent, and the
    gateway answers /healthz throughout."""
    workdir = tmp_path / "flood"
    run = sipp_run("citizen_bad_codec", "13800151009", calls=200, rate=100)
    run = replace(run, concurrency=200, extra_args=message_log_args(workdir / "messages.log"))
    flood: dict[str, object] = {}

    def flood_it() -> None:
        flood["result"] = run_sipp(run, workdir)

    health: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            health.append(http_get(gw, "/healthz")[0])
            time.sleep(0.2)

    threads = [threading.Thread(target=flood_it), threading.Thread(target=probe)]
    for thread in threads:
        thread.start()
    try:
        call = citizen(gw, tmp_path, "citizen_queue", "13800151010", talk_ms=15000)
    finally:
        threads[0].join(120)
        stop.set()
        threads[1].join(10)
    result = flood["result"]
    statuses = received_statuses((workdir / "messages.log").read_text(errors="replace"))
    assert result.calls_created == 200 and result.refused == 200 and result.ok, result.summary()
    assert statuses == {488: 200}, statuses
    answered_and_served(call)
    assert call.call.agent_answered and record(call)["handoff"] == "queue:12345", call.describe()
    assert health and set(health) == {200}, health
