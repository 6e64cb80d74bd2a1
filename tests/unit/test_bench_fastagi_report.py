"""The FastAGI benchmark's bookkeeping over interleaved rounds
(bench/fastagi_bench.py): no lab, no timing assertions."""
from __future__ import annotations

import pytest

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


def test_machine_usage_is_the_difference_of_two_snapshots() -> None:
    from bench import machine_cpu

    before = machine_cpu.Snapshot(busy=1000, total=4000, groups={"asterisk": 10.0, "redis": 1.0}, driver=2.0)
    after = machine_cpu.Snapshot(busy=1000 + 150, total=4000 + 200, groups={"asterisk": 10.9, "redis": 1.1}, driver=2.3)
    used = machine_cpu.usage(before, after)
    assert used.machine == 150 / machine_cpu.CLK_TCK
    assert used.busy_fraction == 0.75
    assert round(used.groups["asterisk"], 6) == 0.9 and round(used.groups["redis"], 6) == 0.1
    assert round(used.driver, 6) == 0.3


def test_a_snapshot_of_this_machine_sees_this_process_and_a_sane_cpu_line() -> None:
    from bench import machine_cpu

    first = machine_cpu.snapshot()
    sum(range(200_000))  # some CPU of our own
    second = machine_cpu.snapshot()
    assert 0 <= first.busy <= first.total and second.total >= first.total
    assert second.driver >= first.driver > 0
    assert set(first.groups) == {"asterisk", "redis"}


def test_machine_report_splits_each_calls_cpu_and_gives_the_budget_of_0_9x_native() -> None:
    from bench import machine_cpu
    from bench.fastagi_bench import machine_report

    def used(machine: float, asterisk: float, driver: float) -> machine_cpu.Usage:
        return machine_cpu.Usage(machine=machine, busy_fraction=0.95, groups={"asterisk": asterisk, "redis": 0.01},
                                 driver=driver)

    native = _run("native", [(100, 1.0, 100, None)])
    native.rounds[0].machine = used(0.36, 0.30, 0.05)
    gateway = _run("gateway", [(100, 1.0, 100, 0.06)])
    gateway.rounds[0].machine = used(0.46, 0.33, 0.05)
    rows = {line.split(" | ")[1]: line.split(" | ") for line in machine_report([native, gateway]).splitlines()[2:]}
    # busy, machine ms/call, Asterisk, Redis, driver, server, rest, 0.9× native allows
    assert rows["gateway"][2:10] == ["95 %", "4.60", "3.30", "0.10", "0.50", "0.60", "0.10", "4.00 |"]
    assert rows["native"][2:10] == ["95 %", "3.60", "3.00", "0.10", "0.50", "0.00", "0.00", "4.00 |"]


def test_instruction_bench_reads_the_total_of_a_callgrind_dump(tmp_path) -> None:
    from bench.fastagi_instr_bench import dumped_instructions, report

    dump = tmp_path / "cg-gateway.out.1"
    dump.write_text("# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\nevents: Ir\n"
                    "fn=(1) main\n0 1200\n\nsummary: 1203000\ntotals: 1203000\n")
    assert dumped_instructions(dump) == 1203000
    (tmp_path / "empty").write_text("events: Ir\n")
    with pytest.raises(ValueError):
        dumped_instructions(tmp_path / "empty")
    table = report({"bare": {"calls": 300, "good": 300, "per_call": 435_000.0},
                    "gateway": {"calls": 300, "good": 299, "per_call": 1_203_000.0}})
    assert "| gateway | 300 | 1 | 1.203 | 2.77 |" in table.splitlines()
