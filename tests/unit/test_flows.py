"""Flow files: one test per kind of mistake, and the engine over a fake session."""
import textwrap
from pathlib import Path

import pytest
from twisted.internet import defer

from gateway.flows.engine import FlowRunner
from gateway.flows.loader import FlowError, load_flow, load_flows

REPO = Path(__file__).resolve().parents[2]

GOOD = """
flow: t
prompts:
  hi: 你好
start: a
nodes:
  a: {type: prompt, prompt: hi, next: b}
  b: {type: queue, queue: "12345"}
"""


def write(tmp_path, text, name="t.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    with pytest.raises(FlowError) as info:
        load_flow(write(tmp_path, text))
    return "\n".join(info.value.problems)


def test_shipped_flows_are_valid():
    flows = load_flows(REPO / "ivr_flows")
    assert "main" in flows


def test_good_flow_loads_with_content_version(tmp_path):
    flow = load_flow(write(tmp_path, GOOD))
    assert flow.start == "a" and len(flow.version) == 12


def test_not_yaml(tmp_path):
    assert "not valid YAML" in problems(tmp_path, "flow: [unclosed")


def test_unknown_node_type_names_file_and_node(tmp_path):
    text = problems(tmp_path, GOOD.replace("type: queue", "type: teleport"))
    assert "t.yaml: node b: unknown node type 'teleport'" in text


def test_missing_prompt_text(tmp_path):
    assert "prompt 'bye' has no text" in problems(tmp_path, GOOD.replace("prompt: hi", "prompt: bye"))


def test_unknown_next_node(tmp_path):
    assert "points to unknown node 'zz'" in problems(tmp_path, GOOD.replace("next: b", "next: zz"))


def test_unreachable_node(tmp_path):
    text = GOOD + "  c: {type: hangup}\n"
    assert "node c: unreachable" in problems(tmp_path, text)


def test_loop_without_input(tmp_path):
    text = """
    flow: t
    prompts: {hi: 你好}
    start: a
    nodes:
      a: {type: prompt, prompt: hi, next: b}
      b: {type: prompt, prompt: hi, next: a}
    """
    assert "loop with no caller input" in problems(tmp_path, text)


def test_bad_transfer_target(tmp_path):
    text = GOOD.replace('{type: queue, queue: "12345"}', "{type: transfer, target: '0085212345678'}")
    assert "transfer target '0085212345678' is not a dialplan target" in problems(tmp_path, text)


def test_unknown_queue(tmp_path):
    assert "queue '999' is not configured" in problems(tmp_path, GOOD.replace('"12345"', '"999"'))


def test_missing_start(tmp_path):
    assert "start node 'zz' does not exist" in problems(tmp_path, GOOD.replace("start: a", "start: zz"))


def test_unknown_field(tmp_path):
    assert "unknown field 'colour'" in problems(tmp_path, GOOD.replace("next: b}", "next: b, colour: red}"))


def test_duplicate_flow_names_across_files(tmp_path):
    write(tmp_path, GOOD, "one.yaml")
    write(tmp_path, GOOD, "two.yaml")
    with pytest.raises(FlowError) as info:
        load_flows(tmp_path)
    assert "already defined" in str(info.value)


class FakeSession:
    """The session API flows use, scripted: ``keys`` are what the caller presses, in order."""

    def __init__(self, keys=(), caller="13800138000", queue_state="0,2,1,0,120"):
        from gateway.agi.codec import AgiEnvironment

        self.path, self.handoff, self.actions, self.vars = [], None, [], {}
        self.keys = list(keys)
        self.caller = caller
        self.call_id = "1700000000.1"
        self.environment = AgiEnvironment({"agi_channel": "Local/12345@from-lab-1;2", "agi_request": "x"})
        self.queue_state = queue_state
        self.channel_vars = {}
        #: the timeout of every WAIT FOR DIGIT, in order
        self.waits = []

    def _key(self):
        return self.keys.pop(0) if self.keys else None

    def step(self, text):
        self.path.append(text)

    async def play(self, prompt, escape_digits=""):
        self.actions.append(("play", prompt))
        if self.keys and self.keys[0] and self.keys[0] in escape_digits:
            return self._key()
        return None

    async def wait_for_digit(self, timeout_ms):
        self.waits.append(timeout_ms)
        return self._key()

    async def get_digits(self, prompt, max_digits, timeout_ms=5000):
        self.actions.append(("get_digits", prompt))
        typed = self._key() or ""
        return typed, not typed

    async def record(self, path, fmt="wav", escape_digits="#", timeout_ms=0, silence_s=0, beep=True):
        from gateway.agi.session import RecordResult

        self.actions.append(("record", path))
        return RecordResult(path=path, ended_by="silence", digit=None, end_position=16000)

    async def set_variable(self, name, value):
        self.channel_vars[name] = str(value)

    async def get_variable(self, name):
        return None

    async def get_full_variable(self, expression):
        return self.queue_state

    async def say_digits(self, digits, escape_digits=""):
        self.actions.append(("say_digits", digits))

    async def hangup(self):
        from gateway.agi.session import Handoff

        self.actions.append(("hangup",))
        self.handoff = Handoff("hangup", "")

    async def queue(self, queue, priority=0):
        from gateway.agi.session import Handoff

        self.actions.append(("queue", queue, priority))
        self.handoff = Handoff("queue", queue, priority)

    async def transfer(self, target):
        from gateway.agi.session import Handoff

        self.actions.append(("transfer", target))
        self.handoff = Handoff("transfer", target)


def run(flow, session):
    return defer.Deferred.fromCoroutine(FlowRunner(flow).run(session))


def test_engine_runs_greeting_then_queue(tmp_path):
    session = FakeSession()
    run(load_flow(write(tmp_path, GOOD)), session)
    assert session.actions == [("play", "hi"), ("queue", "12345", 0)]
    assert session.path == ["flow:t", "prompt:hi"]


def test_reload_keeps_running_calls_on_their_version_and_refuses_broken_files(tmp_path):
    from gateway.flows.library import FlowLibrary

    write(tmp_path, GOOD)
    results = []
    library = FlowLibrary(str(tmp_path), on_load=results.append)
    first = library.flows["t"].version

    class SlowSession(FakeSession):
        def __init__(self):
            super().__init__()
            self.gate = defer.Deferred()

        async def play(self, prompt, escape_digits=""):
            self.actions.append(("play", prompt))
            await self.gate

    session = SlowSession()
    session.call_record = type("R", (), {"flow": "", "flow_version": ""})()
    defer.Deferred.fromCoroutine(library.handler("t")(session))
    write(tmp_path, GOOD.replace('queue: "12345"', 'queue: "12345", priority: 9'))
    assert library.reload() is True
    assert library.flows["t"].version != first
    session.gate.callback(None)
    assert session.call_record.flow_version == first, "the call in progress finished on its own version"
    assert session.actions[-1] == ("queue", "12345", 0)
    write(tmp_path, "flow: t\nnodes: {}\n")
    assert library.reload() is False
    assert library.flows["t"].nodes["b"].get("priority") == 9, "a broken file changes nothing"
    assert results == ["ok", "ok", "error"]


def test_reload_of_a_wrong_typed_field_is_refused_and_counted_as_an_error(tmp_path):
    from gateway.flows.library import FlowLibrary

    write(tmp_path, GOOD)
    results = []
    library = FlowLibrary(str(tmp_path), on_load=results.append)
    write(tmp_path, GOOD.replace('queue: "12345"', 'queue: "12345", priority: "high"'))
    assert library.reload() is False
    assert results == ["ok", "error"]
    assert library.flows["t"].nodes["b"].get("priority") is None, "the running version stays"


def test_reload_that_fails_unexpectedly_is_counted_and_keeps_the_running_version(tmp_path, monkeypatch):
    from gateway.flows import library as library_module

    write(tmp_path, GOOD)
    results = []
    library = library_module.FlowLibrary(str(tmp_path), on_load=results.append)
    running = library.flows

    def broken_loader(*args, **kwargs):
        raise RuntimeError("a bug in the loader")

    monkeypatch.setattr(library_module, "load_flows", broken_loader)
    assert library.reload() is False
    assert results == ["ok", "error"] and library.flows is running


def test_a_library_with_another_default_queue_accepts_it_and_queues_there(tmp_path):
    from gateway.flows.library import FlowLibrary

    write(tmp_path, GOOD.replace('queue: "12345"', 'queue: "20000"'), "named.yaml")
    write(tmp_path, GOOD.replace("flow: t", "flow: u").replace('{type: queue, queue: "12345"}', "{type: queue}"),
          "default.yaml")
    library = FlowLibrary(str(tmp_path), default_queue="20000")
    session = FakeSession()
    defer.Deferred.fromCoroutine(library.handler("u")(session))
    assert session.actions[-1] == ("queue", "20000", 0)


def test_a_library_refuses_a_queue_other_than_its_default_queue(tmp_path):
    from gateway.flows.library import FlowLibrary

    write(tmp_path, GOOD)
    with pytest.raises(FlowError, match="queue '12345' is not configured \\(20000\\)"):
        FlowLibrary(str(tmp_path), default_queue="20000")


def test_every_flow_run_sets_its_version_on_the_channel_first(tmp_path):
    class Session(FakeSession):
        async def play(self, prompt, escape_digits=""):
            self.at_prompts.append(dict(self.channel_vars))
            return await super().play(prompt, escape_digits)

    flow = load_flow(write(tmp_path, GOOD))
    session = Session()
    session.at_prompts = []
    run(flow, session)
    assert session.at_prompts[0] == {"HOTLINE_FLOW_VERSION": flow.version}, "set before the first prompt"
