"""The FastAGI benchmark harness itself, on a few calls through the real lab:
every server under test completes every call (no timing is asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.lab import Lab

REPO = Path(__file__).resolve().parents[2]


def test_bench_harness_runs_every_target_without_failed_calls(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, str(REPO / "bench/fastagi_bench.py"), "--no-lab", "--calls", "20", "--concurrency", "5",
         "--targets", "native,bare,gateway", "--json", str(out)],
        cwd=REPO,
        check=True,
        timeout=300,
    )
    results = {row["target"]: row for row in json.loads(out.read_text())}
    assert set(results) == {"native", "bare", "gateway"}
    for target, row in results.items():
        assert row["failed"] == 0, (target, row)
        assert row["calls_per_s"] > 0
    assert results["gateway"]["cpu_ms_per_call"] > 0 and results["gateway"]["rtt_p50_ms"] is not None
