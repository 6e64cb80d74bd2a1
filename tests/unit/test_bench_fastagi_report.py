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


def test_call_cost_harness_drives_both_servers_through_the_whole_script() -> None:
    """bench/fastagi_call_cost.py's synchronous call: 12 commands each, the call closed."""
    from bench import fastagi_call_cost
    from bench.baselines.bare_twisted import RTTS
    from bench.fastagi_cpu_bench import bare_factory
    from gateway.agi.registry import ScriptRegistry
    from gateway.scripts.bench import bench_script

    from .helpers import make_factory

    RTTS.clear()
    fastagi_call_cost.one_call(bare_factory(), 7)
    assert len(RTTS) == 12
    RTTS.clear()

    scripts = ScriptRegistry()
    scripts.register("bench", bench_script)
    factory, _clock, store, registry = make_factory(scripts)
    fastagi_call_cost.one_call(factory, 8)
    (record,) = store.ended
    assert record.outcome == "handoff_hangup" and record.call_id == "bcpu-8-b"
    assert registry.get_sample_value("hotline_fastagi_command_duration_seconds_count", {"command": "set"}) == 5


def test_flow_api_floor_measures_both_paths() -> None:
    from bench import fastagi_call_cost

    deferred, plain = fastagi_call_cost.flow_api_floor(commands=50, rounds=2)
    assert deferred > 0 and plain > 0
