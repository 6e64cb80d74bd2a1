"""Prometheus rules: promtool accepts them, promtool's unit tests pass, every
alert has a firing and a not-firing case, every derived number has a value
test, and every metric a rule reads is one the gateway exports."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .promql_names import (
    BUILTIN,
    ROOT,
    RULES_DIR,
    alert_names,
    exported_metric_names,
    metric_names_in,
    recorded_names,
    rule_groups,
)

TEST_FILE = ROOT / "prometheus" / "tests" / "hotline-rules.test.yml"
#: every promtool test file (the surveys' rules have their own: prometheus/tests/hotline-surveys.test.yml)
TEST_FILES = sorted((ROOT / "prometheus" / "tests").glob("*.test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)


@needs_promtool
def test_promtool_check_rules():
    result = promtool("check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules():
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _tests() -> list[dict]:
    return [case for path in TEST_FILES for case in yaml.safe_load(path.read_text())["tests"]]


def test_every_alert_has_a_firing_and_a_not_firing_case():
    firing, quiet = set(), set()
    for case in _tests():
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alert_names() - firing == set(), "alerts never seen firing"
    assert alert_names() - quiet == set(), "alerts never checked quiet"


def test_every_derived_number_has_a_value_test():
    tested = {check["expr"] for case in _tests() for check in case.get("promql_expr_test", [])}
    derived = {name for name in recorded_names() if "increase" not in name}
    assert derived - tested == set()


def test_rules_read_only_metrics_the_gateway_exports():
    known = exported_metric_names() | recorded_names() | BUILTIN
    for group in rule_groups():
        for rule in group["rules"]:
            unknown = metric_names_in(rule["expr"]) - known
            assert not unknown, f"{rule.get('record') or rule.get('alert')}: unknown {unknown}"


#: the labels an aggregation may keep with ``by (...)``
ALLOWED_BY_LABELS = {"node", "queue", "trunk", "kind", "category", "le"}


def test_rule_labels_stay_low_cardinality():
    """Aggregations keep only node/queue/trunk/kind/category (and a histogram's bucket bound ``le``, for
    histogram_quantile); nothing by a number, channel or handling unit."""
    for group in rule_groups():
        for rule in group["rules"]:
            for labels in re.findall(r"by \(([^)]*)\)", rule["expr"]):
                assert {label.strip() for label in labels.split(",")} <= ALLOWED_BY_LABELS, rule


def _records() -> dict[str, str]:
    return {rule["record"]: " ".join(rule["expr"].split()) for group in rule_groups() for rule in group["rules"]
            if "record" in rule}


def test_cluster_counts_are_the_node_counts_summed_once():
    """Every per-node count (node_queue:…:increase<w>, by node and queue) has its cluster count, which sums
    exactly it by queue, and every per-node rate has its cluster rate (queue:…)."""
    records = _records()
    per_node = [name for name in records if name.startswith("node_queue:")]
    assert per_node
    for name in per_node:
        cluster = name.replace("node_queue:", "queue:", 1)
        assert cluster in records, f"{name} has no cluster series {cluster}"
        if "increase" in name:
            assert records[name].startswith("sum by (node, queue) (increase("), name
            assert records[cluster] == f"sum by (queue) ({name})", cluster


def test_metric_name_helper():
    assert metric_names_in('sum by (queue) (increase(hotline_x_total{outcome="a"}[5m])) / (b > 0)') == {
        "hotline_x_total", "b"}
    assert metric_names_in("up{job=\"hotline-gateway\"} == 0 and on(instance) 1e3 < x") == {"up", "x"}
