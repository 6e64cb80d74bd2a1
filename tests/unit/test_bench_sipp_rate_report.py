"""The SIPp rate benchmark's bookkeeping (bench/sipp_rate_bench.py): rates over the placement
window, CPU per completed call, the same-run ratios. No lab, no timing assertions."""
from __future__ import annotations

from bench.sipp_rate_bench import Row, report


def test_rates_are_over_the_window_the_calls_were_placed_in_and_cpu_is_per_completed_call() -> None:
    row = Row(4.0, "gateway", calls=61, successful=60, served=60, failed=1, window_s=15.0,
              gateway_cpu_s=0.6, asterisk_cpu_s=3.0)
    assert row.attempted_per_s == 4.0
    assert round(row.completed_per_s, 3) == round(4.0 * 60 / 61, 3)
    assert row.gateway_ms == 10.0 and row.asterisk_ms == 50.0
    assert Row(4.0, "native").gateway_ms is None and Row(4.0, "native").attempted_per_s == 0.0


def test_report_gives_the_ratios_of_the_same_run_and_the_highest_rate_without_failures() -> None:
    rows = {
        (2.0, "gateway"): Row(2.0, "gateway", 31, 31, 31, 0, 15.0, gateway_cpu_s=0.31, asterisk_cpu_s=1.55),
        (2.0, "native"): Row(2.0, "native", 31, 31, 31, 0, 15.0, gateway_cpu_s=0.1, asterisk_cpu_s=1.24),
        (8.0, "gateway"): Row(8.0, "gateway", 121, 118, 118, 3, 15.0, gateway_cpu_s=1.0, asterisk_cpu_s=6.0),
        (8.0, "native"): Row(8.0, "native", 121, 121, 121, 0, 15.0, gateway_cpu_s=0.3, asterisk_cpu_s=5.0),
    }
    text = report(rows, [2.0, 8.0], "header")
    assert "2/s: completed calls/s x1.00, Asterisk CPU/call x1.25, gateway CPU / Asterisk CPU 0.20" in text
    assert "failed 3 vs 0" in text
    assert "highest rate with 0 failed calls (both flows): 2/s" in text
