"""``hotline-gateway check-flows`` and start-up: a broken flow is named (file, node, problem) and stops the start."""
import shutil
import textwrap
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from gateway.app import build_gateway, main
from gateway.config import load_config
from gateway.flows.loader import FlowError

REPO = Path(__file__).resolve().parents[2]

GOOD = """
flow: t
prompts: {hi: 你好, enter: 请输入}
start: a
nodes:
  a: {type: prompt, prompt: hi, next: number}
  number: {type: input, prompt: enter, variable: order, max_digits: 12, next: b}
  b: {type: queue, queue: "12345"}
"""
#: what the operator must read for the broken flow below
PROBLEM = "t.yaml: node number: 'max_digits' must be an integer, not text '12'"


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch):
    monkeypatch.delenv("HOTLINE_CONFIG", raising=False)
    for name in ("HOTLINE_FLOWS_DIRECTORY", "HOTLINE_FLOWS_DEFAULT_QUEUE"):
        monkeypatch.delenv(name, raising=False)


def flow_dir(tmp_path, text=GOOD):
    directory = tmp_path / "flows"
    directory.mkdir(parents=True)
    (directory / "t.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def broken_dir(tmp_path):
    return flow_dir(tmp_path, GOOD.replace("max_digits: 12", 'max_digits: "12"'))


def test_check_flows_of_a_good_directory_exits_0_and_lists_the_flows(tmp_path, capsys):
    assert main(["check-flows", str(flow_dir(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok t ") and "(3 nodes)" in out


def test_check_flows_of_the_shipped_flows_exits_0(capsys):
    assert main(["check-flows", str(REPO / "ivr_flows")]) == 0
    assert "ok main " in capsys.readouterr().out


def test_check_flows_of_a_broken_directory_exits_2_naming_file_node_and_problem(tmp_path, capsys):
    assert main(["check-flows", str(broken_dir(tmp_path))]) == 2
    captured = capsys.readouterr()
    assert "hotline-gateway: flow errors:" in captured.err and PROBLEM in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_check_flows_reports_every_problem_of_every_file(tmp_path, capsys):
    directory = broken_dir(tmp_path)
    (directory / "u.yaml").write_text(GOOD.replace("flow: t", "flow: u").replace("next: b", "next: zz"),
                                      encoding="utf-8")
    assert main(["check-flows", str(directory)]) == 2
    err = capsys.readouterr().err
    assert PROBLEM in err and "u.yaml: node number: points to unknown node 'zz'" in err


def test_check_flows_without_a_directory_checks_the_configured_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOTLINE_FLOWS_DIRECTORY", str(broken_dir(tmp_path)))
    assert main(["check-flows"]) == 2
    assert PROBLEM in capsys.readouterr().err


def test_check_flows_accepts_the_configured_default_queue_and_no_other(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOTLINE_FLOWS_DEFAULT_QUEUE", "20000")
    assert main(["check-flows", str(flow_dir(tmp_path / "a", GOOD.replace('"12345"', '"20000"')))]) == 0
    assert main(["check-flows", str(flow_dir(tmp_path / "b"))]) == 2
    assert "t.yaml: node b: queue '12345' is not configured (20000)" in capsys.readouterr().err


def test_building_the_gateway_with_a_broken_flow_refuses_with_the_problem(tmp_path):
    config = load_config(environ={"HOTLINE_FLOWS_DIRECTORY": str(broken_dir(tmp_path))})
    with pytest.raises(FlowError) as info:
        build_gateway(MemoryReactorClock(), config)
    assert any(p.endswith(PROBLEM) for p in info.value.problems), info.value.problems


def test_run_with_a_broken_flow_refuses_to_start_before_listening(tmp_path, capsys, monkeypatch):
    from twisted.internet import reactor

    import gateway.logs

    def must_not_happen(*args, **kwargs):
        raise AssertionError("the gateway started although a flow is broken")

    monkeypatch.setattr(gateway.logs, "start_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr(reactor, "run", must_not_happen)
    monkeypatch.setattr(reactor, "listenTCP", must_not_happen)
    monkeypatch.setenv("HOTLINE_FLOWS_DIRECTORY", str(broken_dir(tmp_path)))
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "hotline-gateway: flow errors:" in err and PROBLEM in err


def test_the_shipped_flows_copied_elsewhere_build_a_gateway(tmp_path):
    """The counterpart of the refusal: good flows build (no ports bound: a memory reactor)."""
    shutil.copytree(REPO / "ivr_flows", tmp_path / "flows")
    config = load_config(environ={"HOTLINE_FLOWS_DIRECTORY": str(tmp_path / "flows")})
    gateway = build_gateway(MemoryReactorClock(), config)
    assert "main" in gateway.factory.registry and gateway.flows.names() == ["callback", "main", "survey"]
