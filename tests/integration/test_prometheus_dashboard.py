"""A real Prometheus (Debian's 2.42) scrapes the lab gateway while a small mix of
lab calls runs (inbound over the carrier trunk and over Local, answered and
abandoned; outbound through the trunk, answered and busy); then every query of
every panel of the Grafana dashboard (docker/grafana/dashboards/hotline.json)
must return data from it, and the trunk alerts must fire once the lab carrier
is stopped. The gateway runs with the dialer and the satisfaction surveys on (callbacks
off), and one survey call is answered through the trunk, so the survey row has data.

Prometheus loads the repository's rules (prometheus/rules/). One rewrite, for
test time only: the two trunk alerts' ``for: 2m`` becomes ``for: 5s`` in the
copy this Prometheus loads (the repository's files are not changed; their
``for:`` durations are covered by promtool's unit tests).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.lab import CallRequest, Lab

from .test_inbound_calls import after_greeting
from .test_monitor_counts import wait_ready

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "hotline.json"
RULES = REPO / "prometheus" / "rules"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PORT = 9591
#: the trunk alerts, loaded with a short `for:` (see the module docstring)
TRUNK_ALERTS = ("HotlineTrunkUnregistered", "HotlineTrunkUnreachable")
#: Grafana's template variables, as a lab run substitutes them (the lab gateway sets no monitor.node: ast1)
VARIABLES = {"queue": "12345", "node": "ast1", "__rate_interval": "1m", "__interval": "1s", "__range": "5m"}


class Prometheus:
    """Prometheus's HTTP API, as Grafana would query it (instant queries)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"}

    def wait(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"Prometheus: {what} not within {timeout:.0f} s"
            time.sleep(1)


def _rules_for_test(target: Path) -> list[str]:
    """The repository's rule files, the trunk alerts' `for:` shortened to 5 s."""
    files = []
    for source in sorted(RULES.glob("*.yml")):
        document = yaml.safe_load(source.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") in TRUNK_ALERTS:
                    rule["for"] = "5s"
        out = target / source.name
        out.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
        files.append(str(out))
    return files


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def prometheus(lab: Lab, tmp_path_factory) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1:9591, own tmp dir, scraping the lab gateway every second."""
    if not os.path.exists(PROMETHEUS):
        pytest.fail("prometheus is not installed (scripts/bootstrap.sh installs Debian's `prometheus`)")
    assert _port_free(PORT), f"port {PORT} is taken: another Prometheus still running?"
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": _rules_for_test(work),
        "scrape_configs": [{
            "job_name": "hotline-gateway",
            "static_configs": [{"targets": [f"{lab.settings.http_host}:{lab.settings.http_port}"]}],
        }],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(work / "prometheus.log", "w")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{PORT}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    api = Prometheus(PORT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (work / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{api.base}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready within 30 s"
            time.sleep(0.3)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of every panel (rows included)."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", "?"), target["expr"]))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def substitute(expr: str) -> str:
    """Grafana's $var / ${var} / [[var]] with the lab's values; an unknown variable fails the test."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        assert name in VARIABLES, f"unknown dashboard variable ${name} in {expr!r}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def test_the_dashboard_has_queries_and_only_known_variables() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 40
    for _, expr in queries:
        assert "$" not in substitute(expr)


def _unknown_agi_script() -> None:
    """A FastAGI session for a script the gateway does not have (a misrouted dialplan):
    one real FastAGI error, so the errors-by-kind panel has a series."""
    with socket.create_connection(("127.0.0.1", 4573), timeout=5) as conn:
        conn.sendall(b"agi_network: yes\nagi_network_script: no-such-script\nagi_uniqueid: prom-probe\n"
                     b"agi_channel: Local/probe\n\n")
        conn.settimeout(5)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass  # the gateway may reset the connection after refusing the script


#: the gateway of this test: dialer and surveys on (callbacks off), windows always open, no delay
SURVEY_ENV = {
    "HOTLINE_DIALER_ENABLED": "1", "HOTLINE_DIALER_WINDOW_START": "00:00", "HOTLINE_DIALER_WINDOW_END": "24:00",
    "HOTLINE_DIALER_HOLIDAYS": "allow", "HOTLINE_DIALER_POLL_INTERVAL": "0.5", "HOTLINE_CALLBACKS_ENABLED": "0",
    "HOTLINE_SURVEYS_ENABLED": "1", "HOTLINE_SURVEYS_API_TOKEN": "lab-survey-token", "HOTLINE_SURVEYS_DELAY": "0",
    "HOTLINE_SURVEYS_INTERVAL": "0.5", "HOTLINE_SURVEYS_WINDOW_START": "00:00", "HOTLINE_SURVEYS_WINDOW_END": "24:00",
    "HOTLINE_SURVEYS_HOLIDAYS": "allow",
}


@pytest.fixture
def surveys_on(gateway_up: Lab) -> Iterator[Lab]:
    """The gateway restarted with SURVEY_ENV; afterwards stopped and the environment restored."""
    saved = dict(os.environ)
    gateway_up.gateway.stop(lambda _m: None)
    os.environ.update(SURVEY_ENV)
    gateway_up.gateway.start(lambda _m: None)
    yield gateway_up
    gateway_up.gateway.stop(lambda _m: None)
    os.environ.clear()
    os.environ.update(saved)


def _one_survey(lab: Lab) -> str:
    """A closed order → a survey call through the trunk: the citizen keys 2 (unsolved), 3 (dissatisfied),
    leaves a short comment; returns the order's final status."""
    import redis

    lab.set_carrier_behaviour("13900139103", "ring:1,answer,wait:19,dtmf:2,wait:5,dtmf:3,wait:9,talk:3,dtmf:#,wait:60")
    body = json.dumps({"order_id": "PROM-1", "phone": "13900139103", "category": "投诉", "topic": "路灯",
                       "unit": "市政局", "closed_at": time.time() - 60}).encode()
    request = urllib.request.Request(f"http://{lab.settings.http_host}:{lab.settings.http_port}/surveys/closed",
                                     data=body, method="POST",
                                     headers={"Authorization": "Bearer lab-survey-token"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
    client = redis.Redis.from_url(lab.settings.redis_url, decode_responses=True, socket_timeout=5)
    deadline = time.monotonic() + 110
    while (status := client.hget("hotline:surveys:order:PROM-1", "status")) in (None, "pending", "calling"):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return status or "missing"


def _drive_calls(lab: Lab) -> None:
    """Answered via the trunk and via Local, an abandon, outbound answered and busy, a survey — at once."""
    greet = after_greeting(lab)
    lab.set_carrier_behaviour("13900139101", "ring:1,answer,wait:1,dtmf:1,talk:3,hangup")
    lab.set_carrier_behaviour("13900139102", "busy")
    results: dict[str, object] = {}
    jobs = {
        "trunk answered": lambda: lab.call(CallRequest(via="trunk", hangup_after=14, timeout=60)),
        "local answered": lambda: lab.call(CallRequest(hangup_after=14, agent_talk=2, timeout=60)),
        "local abandoned": lambda: lab.call(CallRequest(hangup_after=greet + 6, agent_ring=20, timeout=60)),
        "outbound answered": lambda: lab.outbound("13900139101", listen=5, timeout=40),
        "outbound busy": lambda: lab.outbound("13900139102", listen=2, timeout=40),
        "survey": lambda: _one_survey(lab),
    }

    def run(name, job) -> None:
        results[name] = job()

    threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    _unknown_agi_script()
    for thread in threads:
        thread.join(120)
    for number in ("13900139101", "13900139102", "13900139103"):
        lab.set_carrier_behaviour(number, None)
    assert set(results) == set(jobs), f"calls still running: {set(jobs) - set(results)}"
    assert results["trunk answered"].agent_answered, results["trunk answered"].steps
    assert results["local answered"].agent_answered, results["local answered"].steps
    assert results["local abandoned"].abandoned, results["local abandoned"].steps
    assert results["outbound answered"].dial_status == "ANSWER"
    assert results["outbound busy"].dial_status == "BUSY"
    assert results["survey"] == "completed", results["survey"]


def _has_data(result: list[dict]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def test_every_panel_returns_data_and_the_trunk_alerts_fire(surveys_on: Lab, trunk_up: Lab,
                                                            prometheus: Prometheus) -> None:
    lab = surveys_on
    wait_ready(lab)
    prometheus.wait("a first scrape of the gateway", lambda: prometheus.query('up{job="hotline-gateway"} == 1'), 30)
    _drive_calls(lab)
    prometheus.wait(
        "the calls in the recording rules",
        lambda: _has_data(prometheus.query('queue:hotline_connection_rate:ratio_1h{queue="12345"}')),
        30,
    )

    # The carrier goes away: qualify fails within seconds; the registration when its
    # next refresh (lab: every ~20 s) times out.
    lab.carrier.stop(lambda _message: None)
    try:
        prometheus.wait("the trunk alerts firing", lambda: set(TRUNK_ALERTS) <= prometheus.firing(), 120)
    finally:
        lab.carrier.start(lambda _message: None)
    # ... and comes back: registered and reachable again (with a round-trip time).
    prometheus.wait(
        "the trunk back",
        lambda: _has_data(prometheus.query('hotline_trunk_registered{trunk="carrier"} == 1'))
        and _has_data(prometheus.query('hotline_trunk_reachable{trunk="carrier"} == 1'))
        and _has_data(prometheus.query('hotline_trunk_rtt_seconds{trunk="carrier"}')),
        60,
    )
    prometheus.wait("the trunk alerts resolved", lambda: not set(TRUNK_ALERTS) & prometheus.firing(), 30)

    empty = []
    for title, expr in dashboard_queries():
        if not _has_data(prometheus.query(substitute(expr))):
            empty.append(f"{title}: {expr}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)
