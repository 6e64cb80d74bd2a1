"""The FastAGI benchmark's bookkeeping over interleaved rounds
(bench/fastagi_bench.py): no lab, no timing assertions."""
from __future__ import annotations

from bench.fastagi_bench import RoundResult, RunResult, report, round_ratios


def _run(target: str, rounds: list[tuple[int, float, int, float | None]]) -> RunResult:
    result = RunResult(target, 200, 0, 0.0, 0, 0, None if rounds[0][3] is None else 0.0)
    for calls, wall, good, cpu in rounds:
        result.calls += calls
        result.wall += wall
        result.good += good
        result.failed += calls - good
        if cpu is not None:
            result.cpu += cpu
        result.rounds.append(RoundResult(calls, wall, good, cpu))
    return result


def test_round_ratios_pair_each_round_with_the_bare_servers_same_round() -> None:
    bare = _run("bare", [(100, 1.0, 100, 0.05), (100, 1.0, 100, 0.10)])
    gateway = _run("gateway", [(100, 1.0, 100, 0.06), (100, 1.0, 100, 0.11)])
    assert [round(x, 3) for x in round_ratios(gateway, bare)] == [1.2, 1.1]
    assert round_ratios(gateway, None) == []
    native = _run("native", [(100, 1.0, 100, None)])
    assert round_ratios(native, bare) == []


def test_report_gives_totals_over_rounds_and_the_per_round_spread() -> None:
    native = _run("native", [(100, 0.5, 100, None), (100, 0.5, 100, None)])
    bare = _run("bare", [(100, 1.0, 100, 0.05), (100, 1.0, 100, 0.10)])
    gateway = _run("gateway", [(100, 1.0, 99, 0.06), (100, 1.0, 100, 0.11)])
    rows = {line.split(" | ")[1]: line.split(" | ") for line in report([native, bare, gateway]).splitlines()[2:]}
    # calls, calls/s, × native, failed, CPU ms/call, × bare CPU, spread
    assert rows["gateway"][2:9] == ["200", "100.0", "0.50", "1", "0.85", "1.13", "1.10–1.20"]
    assert rows["bare"][6:9] == ["0.75", "1.00", "1.00–1.00"]
    assert rows["native"][6:9] == ["—", "—", "—"]
