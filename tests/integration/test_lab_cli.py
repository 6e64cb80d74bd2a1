"""`hotline-lab call --json` against the session's lab (real Asterisk, Redis
and, where the test asks for it, the real gateway)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.lab import Lab

pytestmark = pytest.mark.integration


def _cli(*args: str, timeout: float = 120) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout)


def test_call_json_without_the_gateway(gateway_down: Lab) -> None:
    code, summary = _cli("call", "--json", "--hangup-after", "15", "--caller", "13912345678")
    assert code == 0
    assert summary["agi_status"] == "FAILURE"
    assert summary["queue_joined"] and summary["agent_answered"] and not summary["abandoned"]
    assert summary["gateway_record"] is None
    assert summary["caller_masked"] == "139****5678"
    assert "13912345678" not in json.dumps(summary)


def test_call_json_through_the_gateway(gateway_up: Lab) -> None:
    """The whole path: 12345 → gateway flow (FastAGI) → queue → agent, record in Redis."""
    code, summary = _cli("call", "--json", "--hangup-after", "30")
    assert code == 0
    assert summary["agi_status"] == "SUCCESS"
    assert summary["gateway_next"] == "queue"
    assert summary["agent_answered"]
    record = summary["gateway_record"]
    assert record is not None and record["call_id"] == summary["call_id"]
    assert "caller" not in record and record["caller_masked"] == "138****8000"
    assert any(step.startswith("gateway flow main") for step in summary["steps"])


def test_status_json_reports_what_runs(lab: Lab) -> None:
    code, status = _cli("status", "--json")
    assert code == 0
    assert status["asterisk"]["running"] and status["chroot"]["mounted"]
    assert status["redis"]["ping"]
