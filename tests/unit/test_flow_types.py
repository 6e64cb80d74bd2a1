"""Wrong-typed fields in flow files: a clear FlowError naming file, node and problem at load — never a crash.

One case per kind of wrong type, then a property: whatever YAML-ish value lands in any field of any node,
the flow either loads (and then runs without an exception) or is refused with FlowError.
"""
import copy
import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from gateway.flows import loader
from gateway.flows.engine import FlowRunner
from gateway.flows.loader import CONDITION_TYPES, FIELD_TYPES, NODE_SCHEMAS, UNCHECKED, FlowError, build_flow

from .test_flow_engine import STATUS_PROMPTS, Services
from .test_flows import FakeSession

REPO = Path(__file__).resolve().parents[2]

#: one node of every inbound type, every optional field set, every branch condition used
EVERY_NODE = textwrap.dedent("""
    flow: typed
    version: "1"
    description: every node type
    settings: {top_menu: true}
    prompts: {hi: 你好, menu: 菜单, bad: 按键无效, enter: 请输入, beep: 请留言, thanks: 谢谢, ok: 已登记, unknown: 查无, err: 繁忙}
    start: who
    nodes:
      who: {type: caller_lookup, priority_list: elderly, priority: 10, next: greet}
      greet: {type: prompt, prompt: hi, keys: {"9": police}, next: mark}
      mark: {type: set, variables: {HOTLINE_SEGMENT: water, segment: water, priority: 3}, next: check}
      check:
        type: branch
        cases:
          - when: {queue_full: true}
            next: peak
          - when: {queue_wait_over: 120, queue_no_agents: false}
            next: peak
          - when: {var: {segment: water}, days: [mon, tue], time: "08:00-18:00", setting: top_menu, caller_in: vip,
                   var_set: segment}
            next: top
        default: jump
      jump: {type: goto, next: top}
      top:
        type: menu
        prompt: menu
        choice: top
        retries: 1
        timeout_ms: 3000
        invalid_prompt: bad
        timeout_prompt: bad
        options: {"1": number, "2": water, "3": agent}
      number:
        type: input
        prompt: enter
        variable: order
        min_digits: 6
        max_digits: 12
        terminator: "#"
        timeout_ms: 5000
        retries: 1
        invalid_prompt: bad
        next: status
      status: {type: order_status, variable: order, unknown_prompt: unknown, error_prompt: err, next: agent}
      peak: {type: menu, prompt: menu, options: {"1": callback, "2": message}}
      callback: {type: callback_request, queue: "12345", done_prompt: ok, next: bye}
      message: {type: record, prompt: beep, max_seconds: 60, silence_seconds: 4, done_prompt: thanks, error_prompt: err,
                next: bye}
      police: {type: transfer, target: police-110, announce: hi, reason: emergency}
      water: {type: transfer, target: water}
      agent: {type: queue, queue: "12345", priority: 5, announce: hi}
      bye: {type: hangup, prompt: thanks}
""")


def every_node():
    data = yaml.safe_load(EVERY_NODE)
    data["prompts"].update(STATUS_PROMPTS)
    return data


def survey_flow():
    return yaml.safe_load((REPO / "ivr_flows" / "survey.yaml").read_text(encoding="utf-8"))


def problems_of(data):
    with pytest.raises(FlowError) as info:
        build_flow(data, "t.yaml", "x")
    return info.value.problems


def test_the_flows_of_these_tests_load():
    build_flow(every_node(), "t.yaml", "x")
    build_flow(survey_flow(), "survey.yaml", "x")


def test_every_field_of_every_node_type_has_a_type():
    fields = {name for required, optional, _, _ in NODE_SCHEMAS.values() for name in required | optional}
    assert fields == set(FIELD_TYPES)


def _node(name, **changes):
    def change(data):
        data["nodes"][name].update(changes)

    return change


def _when(index, **changes):
    def change(data):
        data["nodes"]["check"]["cases"][index]["when"].update(changes)

    return change


def _top(**changes):
    def change(data):
        data.update(changes)

    return change


WRONG_TYPES = [
    # (what is wrong, the change, what the problem says)
    ("integer given as text", _node("number", max_digits="5"), "node number: 'max_digits' must be an integer, not text '5'"),
    ("integer given as true/false", _node("top", retries=True), "node top: 'retries' must be an integer, not true"),
    ("integer given as a number", _node("message", max_seconds=1.5), "node message: 'max_seconds' must be an integer"),
    ("priority given as text", _node("who", priority="high"), "node who: 'priority' must be an integer, not text 'high'"),
    ("text given as a list", _node("water", target=["water"]), "node water: 'target' must be text, not a list"),
    ("text given as a number", _node("agent", queue=12345), "node agent: 'queue' must be text, not an integer 12345 (put"),
    ("text given as null", _node("greet", next=None), "node greet: 'next' must be text, not null"),
    ("text given as a mapping", _node("number", terminator={"#": 1}), "node number: 'terminator' must be text"),
    ("prompt given as a list", _node("greet", prompt=["hi"]), "node greet: 'prompt' must be text, not a list"),
    ("node type given as a list", _node("greet", type=["prompt"]), "node greet: 'type' must be text, not a list"),
    ("mapping given as a list", _node("top", options=["number"]), "node top: 'options' must be a mapping, not a list"),
    ("mapping given as text", _node("mark", variables="segment=water"), "node mark: 'variables' must be a mapping"),
    ("list given as a mapping", _node("check", cases={"when": {}, "next": "top"}), "node check: 'cases' must be a list"),
    ("menu option leading to a list", _node("top", options={"1": ["number"]}),
     "node top: option key '1' must lead to a node name (text), not a list"),
    ("set value given as a mapping", _node("mark", variables={"segment": {"a": 1}}),
     "node mark: variables: 'segment' must be text, a number or true/false, not a mapping"),
    ("priority variable given as text", _node("mark", variables={"priority": "high"}),
     "node mark: variables: 'priority' must be an integer 0..100, not text 'high'"),
    ("engine variable overwritten", _node("mark", variables={"choices": "x"}), "variables: 'choices' is kept by the engine"),
    ("condition mapping given as text", _when(2, var="x"), "node check: case 3: 'var' must be a mapping, not text 'x'"),
    ("condition number given as text", _when(1, queue_wait_over="abc"),
     "node check: case 2: 'queue_wait_over' must be a number, not text 'abc'"),
    ("condition true/false given as text", _when(0, queue_full="yes"),
     "node check: case 1: 'queue_full' must be true or false, not text 'yes'"),
    ("condition text given as a list", _when(2, setting=["top_menu"]), "node check: case 3: 'setting' must be text"),
    ("weekday list of numbers", _when(2, days=[1, 2]), "node check: case 3: days must be workdays, holidays or [mon, ...]"),
    ("case next given as a list", lambda d: d["nodes"]["check"]["cases"][0].update(next=["peak"]),
     "node check: case 1: 'next' must be text, not a list"),
    ("node name given as a number", lambda d: d["nodes"].update({7: {"type": "goto", "next": "top"}}),
     "node 7: a node's name must be text, not an integer 7 (put it in quotes)"),
    ("start given as a list", _top(start=["who"]), "t.yaml: 'start' must be the name of a node, not a list"),
    ("flow name given as a mapping", _top(flow={"a": 1}), "t.yaml: 'flow' (the flow's name) must be text, not a mapping"),
    ("prompts given as a list", _top(prompts=["hi"]), "t.yaml: 'prompts' must map prompt names to their (non-empty) text"),
    ("prompt text given as a number", lambda d: d["prompts"].update(hi=5), "t.yaml: prompts: 'hi' must be (non-empty) text"),
    ("settings given as a list", _top(settings=["top_menu"]), "t.yaml: 'settings' must be a mapping, not a list"),
    # text that cannot travel as an AGI argument (SET VARIABLE, STREAM FILE) would fail mid-call
    ("set value over two lines", _node("mark", variables={"HOTLINE_SEGMENT": "water\ngas"}),
     "node mark: variables: 'HOTLINE_SEGMENT' must be one line of text"),
    ("choice over two lines", _node("top", choice="top\nmenu"), "node top: 'choice' must be one line of text"),
    ("node name over two lines", lambda d: d["nodes"].update({"a\nb": {"type": "goto", "next": "top"}}),
     "a node's name must be one line of text"),
    ("prompt name over two lines", lambda d: d["prompts"].update({"a\nb": "text"}),
     "t.yaml: prompts: a prompt name must be one line of text"),
]


@pytest.mark.parametrize("change,problem", [case[1:] for case in WRONG_TYPES], ids=[case[0] for case in WRONG_TYPES])
def test_a_wrong_type_is_a_clear_flow_error_naming_file_node_and_field(change, problem):
    data = every_node()
    change(data)
    problems = problems_of(data)
    assert any(problem in p for p in problems), problems
    assert all(p.startswith("t.yaml: ") for p in problems)


@pytest.mark.parametrize("field,value,problem", [
    ("speech", "yes", "node q_solved: 'speech' must be true or false, not text 'yes'"),
    ("question", ["solved"], "node q_solved: 'question' must be text, not a list"),
    ("answers", {"1": ["solved"]}, "node q_solved: answer key '1' must lead to an answer (text), not a list"),
    ("speech_seconds", "4", "node q_solved: 'speech_seconds' must be an integer, not text '4'"),
])
def test_a_wrong_type_in_a_survey_question_is_a_clear_flow_error(field, value, problem):
    data = survey_flow()
    data["nodes"]["q_solved"][field] = value
    problems = problems_of(data)
    assert any(problem in p for p in problems), problems


def test_a_check_that_fails_unexpectedly_still_names_file_and_node(monkeypatch):
    def broken_check(*args, **kwargs):
        raise TypeError("unexpected")

    monkeypatch.setattr(loader, "field_problems", broken_check)
    problems = problems_of(every_node())
    assert f"t.yaml: node who: {UNCHECKED}: TypeError: unexpected" in problems


def test_a_wrong_type_in_a_flow_file_fails_load_flows_with_flow_error(tmp_path):
    (tmp_path / "t.yaml").write_text(EVERY_NODE.replace("max_digits: 12", 'max_digits: "12"'), encoding="utf-8")
    with pytest.raises(FlowError, match=r"t\.yaml: node number: 'max_digits' must be an integer"):
        loader.load_flows(tmp_path)


# -- any value in any field ------------------------------------------------------------------------------------------

_NAMES = st.sampled_from(["agent", "top", "12345", "#", "*", "", "1", "water", "mon", "08:00-18:00", "priority",
                          "choices", "HOTLINE_X", "solved", "hi", "workdays", "order"])
_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-2, 200) | st.floats() | st.text(max_size=6)
            | _NAMES)
_KEYS = st.none() | st.booleans() | st.integers(-1, 12) | st.text(max_size=3) | _NAMES
YAMLISH = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=8,
)


def _values_in(value):
    """Every value a flow file holds (scalars, lists, mappings): right in one place, maybe wrong in another."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _values_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _values_in(item)


_BASES = {"inbound": every_node(), "survey": survey_flow()}
_IN_FLOWS = [v for base in _BASES.values() for v in _values_in(base["nodes"])]
_PLAUSIBLE = st.sampled_from(_IN_FLOWS)


def _by_name(value, found):
    """Values by the field or condition name they are given under anywhere in the flows."""
    if isinstance(value, dict):
        for name, item in value.items():
            found.setdefault(name, []).append(item)
            _by_name(item, found)
    elif isinstance(value, list):
        for item in value:
            _by_name(item, found)
    return found


_BY_NAME = _by_name([base["nodes"] for base in _BASES.values()], {})


def _right_type(draw, name, field_type):
    """A value of the type a field wants (so the checks of what it means, and the engine, get their turn)."""
    candidates = [v for v in _IN_FLOWS if field_type.accepts(v)]
    same_name = [v for v in _BY_NAME.get(name, ()) if field_type.accepts(v)] or candidates
    return copy.deepcopy(draw(st.one_of(st.sampled_from(same_name), st.sampled_from(candidates),
                                        YAMLISH.filter(field_type.accepts),
                                        st.integers(-5, 200).filter(field_type.accepts))))


@st.composite
def mutated_flows(draw):
    """A good flow with one YAML-ish value put somewhere: a field, a condition, a case, a node, a top-level key."""
    data = copy.deepcopy(_BASES[draw(st.sampled_from(sorted(_BASES)))])
    value = copy.deepcopy(draw(st.one_of(_PLAUSIBLE, YAMLISH)))
    where = draw(st.sampled_from(["field"] * 6 + ["condition"] * 3 + ["case", "node", "top", "type", "unknown"]))
    branches = sorted(node_id for node_id, node in data["nodes"].items() if node["type"] == "branch")
    node_id = draw(st.sampled_from(branches if where in ("condition", "case") else sorted(data["nodes"])))
    node = data["nodes"][node_id]
    required, optional, _, _ = NODE_SCHEMAS[node["type"]]
    right_type = draw(st.booleans())
    if where == "condition":
        case = draw(st.sampled_from(node["cases"]))
        key = draw(st.sampled_from(sorted(CONDITION_TYPES)))
        others = {k: v for k, v in case["when"].items() if k != key} if isinstance(case["when"], dict) else {}
        # first in its case, so that a run evaluates it
        case["when"] = {key: _right_type(draw, key, CONDITION_TYPES[key]) if right_type else value, **others}
    elif where == "case":
        node["cases"][draw(st.integers(0, len(node["cases"]) - 1))] = value
    elif where == "node":
        data["nodes"][node_id] = value
    elif where == "top":
        data[draw(st.sampled_from(["flow", "version", "description", "prompts", "start", "nodes", "settings"]))] = value
    elif where == "type":
        node["type"] = value
    elif where == "unknown":
        node[draw(_KEYS)] = value
    else:
        field = draw(st.sampled_from(sorted(required | optional)))
        node[field] = _right_type(draw, field, FIELD_TYPES[field]) if right_type else value
    return data


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_flows(), keys=st.lists(st.sampled_from(["1", "2", "3", "0", "*", "9", "123456", None]), max_size=4))
def test_any_value_in_any_field_loads_and_runs_or_is_a_clear_flow_error(data, keys):
    try:
        flow = build_flow(data, "t.yaml", "x")
    except FlowError as exc:
        assert exc.problems and all(p.startswith("t.yaml: ") for p in exc.problems), exc.problems
        assert not any(UNCHECKED in p for p in exc.problems), "a gap in the type checks: " + str(exc.problems)
        return
    for start in flow.nodes:  # every node gets run, whatever the path to it
        session = FakeSession(keys=keys)
        runner = FlowRunner(dataclasses.replace(flow, start=start), services=Services())
        failures = []
        defer.Deferred.fromCoroutine(runner.run(session)).addErrback(failures.append)
        assert not failures, failures[0].getTraceback()
        assert session.handoff is not None
