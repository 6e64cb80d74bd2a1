"""Static helpers: which metric names a PromQL expression reads, and which
names the gateway and the ASR workers export (declared against fresh registries, no server)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from asr.metrics import AsrMetrics
from gateway.callbacks.metrics import CallbackMetrics
from gateway.dialer.service import DialerMetrics
from gateway.metrics import GatewayMetrics
from gateway.monitor.metrics import MonitorMetrics
from gateway.monitor.model import HotlineState
from gateway.surveys.metrics import SurveyMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "prometheus" / "rules"

#: PromQL words that look like identifiers but are not metric names
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan", "atan2",
}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _strip(expr: str) -> str:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)       # string literals
    expr = re.sub(r"\{[^{}]*\}", "", expr)                   # label matchers
    expr = re.sub(r"\[[^\[\]]*\]", "", expr)                 # ranges, subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", expr)
    return expr


def metric_names_in(expr: str) -> set[str]:
    """Metric (and recording-rule) names read by ``expr``; functions, keywords, numbers excluded."""
    text = _strip(expr)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        before = text[: match.start()]
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # the tail of a number such as 1e3 or a duration like 5m
        after = text[match.end():].lstrip()
        if after.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def exported_metric_names() -> set[str]:
    """Every sample name Prometheus can scrape from us: the gateway (job ``hotline-gateway``: GatewayMetrics,
    monitor, dialer, callback and survey metrics, one registry as in ``gateway/app.py``) and the ASR
    workers (job ``hotline-asr``: AsrMetrics, a registry per process as in ``asr/service.py``)."""
    gateway = CollectorRegistry()
    GatewayMetrics(gateway)
    SurveyMetrics(gateway)
    DialerMetrics(gateway)
    CallbackMetrics(gateway)
    metrics = MonitorMetrics(gateway, node="ast1")
    state = HotlineState(metrics.sink, trunks=["carrier"], trunk_capacity={"carrier": 1})
    metrics.watch(state, lambda: 0.0)
    state.apply_registrations([])
    asr = CollectorRegistry()
    AsrMetrics(asr)
    names = set()
    for family in [*gateway.collect(), *asr.collect()]:
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def rule_groups() -> list[dict]:
    groups = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def recorded_names() -> set[str]:
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def alert_names() -> set[str]:
    return {rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule}


#: names Prometheus itself provides
BUILTIN = {"up"}
