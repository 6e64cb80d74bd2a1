"""The work in flight on the single-node lab, placed and counted: callbacks and surveys through the
gateway's HTTP API, citizens through the lab carrier, and what became of them read from the job
store, the survey records and outbox, and the carrier's per-number step counts (used by
:mod:`.faults_single`)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable

import redis

from .errors import LabError
from .faultcount import FaultRow, doubled_dials, wait_until
from .faults import DIALER_ENV, PRESS_1
from .lab import Lab

API_TOKEN = DIALER_ENV["HOTLINE_CALLBACKS_API_TOKEN"]


def start_gateway(lab: Lab, report, **extra: str) -> None:
    """(Re)start the gateway with the dialer and callbacks on (plus ``extra``)."""
    lab.gateway.stop(report)
    lab.gateway.start(report, environment={**DIALER_ENV, **extra})


def client(lab: Lab) -> redis.Redis:
    return lab.redis.client(timeout=5)


def jobs_of(lab: Lab, numbers: Iterable[str]) -> dict[str, list]:
    """The callback jobs in the store for each number (every state)."""
    from ..callbacks.service import CALLBACK_CAMPAIGN
    from ..dialer.jobs import JobStore

    wanted, out = set(numbers), {}
    store = JobStore(client(lab), owner="lab-faults")
    for job in store.list(CALLBACK_CAMPAIGN, None, 1000):
        if job.number in wanted:
            out.setdefault(job.number, []).append(job)
    return out


def add_callback(lab: Lab, number: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"http://{lab.settings.http_host}:{lab.settings.http_port}/callbacks", method="POST",
        data=json.dumps({"number": number, "note": "lab fault run"}).encode(),
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["id"]


def count_callbacks(lab: Lab, row: FaultRow, numbers: list[str], timeout: float) -> None:
    """Wait for every number's callbacks to finish; lost = a number without exactly one connected
    callback, doubled = extra callback jobs + dials that should not have happened + citizens who
    pressed 1 (took the callback) more than once at the carrier."""
    from ..dialer.jobs import JobStore

    def finished() -> bool:
        try:
            jobs = jobs_of(lab, numbers)
        except redis.RedisError:
            return False
        return len(jobs) == len(numbers) and all(j.state == "done" for js in jobs.values() for j in js)

    try:
        wait_until(finished, timeout, "the callbacks to finish", step=0.5)
    except LabError as exc:
        row.notes.append(str(exc))
    jobs = jobs_of(lab, numbers)
    store = JobStore(client(lab), owner="lab-faults")
    steps = lab.carrier_steps()
    pressed = {n: steps.get(n, {}).get("dtmf", 0) for n in numbers}
    connected = {n: sum(1 for j in jobs.get(n, []) if j.outcome == "connected") for n in numbers}
    row.lost += sum(1 for n in numbers if connected[n] == 0)
    row.doubled += sum(max(0, len(jobs.get(n, [])) - 1) for n in numbers)
    row.doubled += sum(doubled_dials(store.history(j.id)) for js in jobs.values() for j in js)
    row.doubled += sum(max(0, p - 1) for p in pressed.values())
    sources = Counter(j.payload.get("source", "?") for js in jobs.values() for j in js)
    row.notes.append(f"callbacks connected {sum(1 for c in connected.values() if c)}/{len(numbers)} "
                     f"(sources {dict(sources)}), pressed 1 at the carrier {sum(pressed.values())}x")


def pause_agents(lab: Lab, paused: bool) -> None:
    for n in range(1, lab.settings.agents + 1):
        lab.cli(f"queue {'pause' if paused else 'unpause'} member Local/agent{n}@lab-agent queue 12345")


def carrier_citizens(lab: Lab) -> int:
    output = lab.carrier_cli("core show channels concise")
    return sum(1 for line in output.splitlines() if line.split("!")[1:2] == ["carrier-citizen"])


def script_numbers(lab: Lab, numbers: Iterable[str], behaviour: str = PRESS_1) -> None:
    for number in numbers:
        lab.set_carrier_behaviour(number, behaviour)


SURVEY_TOKEN = "lab-faults-survey-token"
SURVEY_ENV = {
    "HOTLINE_SURVEYS_ENABLED": "1", "HOTLINE_SURVEYS_API_TOKEN": SURVEY_TOKEN, "HOTLINE_SURVEYS_DELAY": "0",
    "HOTLINE_SURVEYS_SPACING": "0", "HOTLINE_SURVEYS_INTERVAL": "0.5", "HOTLINE_SURVEYS_WINDOW_START": "00:00",
    "HOTLINE_SURVEYS_WINDOW_END": "24:00", "HOTLINE_SURVEYS_HOLIDAYS": "allow", "HOTLINE_SURVEYS_MAX_ATTEMPTS": "3",
    "HOTLINE_SURVEYS_BACKOFF": "no_answer=3,busy=3,congestion=3,failed=3,unconfirmed=3",
}
#: a survey citizen: answers, keys 1 (solved) ~19 s later inside Q1, 1 (satisfied) 5 s after; the hotline hangs up
SURVEY_CITIZEN = "ring:1,answer,wait:19,dtmf:1,wait:5,dtmf:1,wait:60"


def post_closed_orders(lab: Lab, orders: dict[str, str]) -> None:
    import urllib.request

    events = [{"order_id": order_id, "phone": phone, "category": "投诉", "topic": "路灯", "unit": "市政局",
               "closed_at": time.time() - 60} for order_id, phone in orders.items()]
    request = urllib.request.Request(
        f"http://{lab.settings.http_host}:{lab.settings.http_port}/surveys/closed", method="POST",
        data=json.dumps({"orders": events}).encode(),
        headers={"Authorization": f"Bearer {SURVEY_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def count_surveys(lab: Lab, row: FaultRow, orders: dict[str, str], timeout: float) -> None:
    """lost = an order without both answers stored (completed) or without its result in the outbox;
    doubled = a second result for an order in the outbox."""
    final = ("completed", "partial", "refused", "no_answer", "do_not_call", "rejected", "cancelled")

    def status(order_id: str) -> dict[str, str]:
        return client(lab).hgetall(f"hotline:surveys:order:{order_id}")

    def finished() -> bool:
        try:
            return all(status(o).get("status") in final for o in orders)
        except redis.RedisError:
            return False

    try:
        wait_until(finished, timeout, "the surveys to finish", step=0.5)
    except LabError as exc:
        row.notes.append(str(exc))
    got = {o: status(o) for o in orders}
    results = Counter(json.loads(f["data"]).get("order_id") for _, f in client(lab).xrange("hotline:surveys:outbox")
                      if f.get("kind", "result") == "result")
    kept = [o for o, g in got.items() if g.get("status") == "completed" and g.get("solved") and g.get("satisfaction")]
    row.lost += sum(1 for o in orders if o not in kept or results[o] == 0)
    row.doubled += sum(max(0, results[o] - 1) for o in orders)
    steps = lab.carrier_steps()
    row.notes.append(f"surveys completed with both answers {len(kept)}/{len(orders)}, results posted "
                     f"{sum(results[o] for o in orders)}, survey calls answered "
                     f"{sum(steps.get(p, {}).get('answer', 0) for p in orders.values())}")


def metric(lab: Lab, name: str, **labels: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{lab.settings.http_host}:{lab.settings.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
