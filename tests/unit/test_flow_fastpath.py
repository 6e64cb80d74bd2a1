"""The default flow's fast path: AGI commands counted on the transport (StringTransport, task.Clock)."""
import re
from pathlib import Path

import pytest
from twisted.internet import task

from gateway.agi.registry import ScriptRegistry
from gateway.flows.fastpath import FastPathRefused, compile_fast_path, handover_expression
from gateway.flows.library import FlowLibrary
from gateway.flows.loader import load_flows
from gateway.flows.model import Flow, Node
from gateway.flows.services import NullServices, OrderStatus

from .helpers import connect, env, make_factory, sent_lines

REPO = Path(__file__).resolve().parents[2]
SET_VALUE = re.compile(r"\$\{SET\([A-Z_]+=([^)]*)\)\}\|")
CALM = "0,2,1,0,0"  # nobody waiting, a free agent
PEAK = "5,2,0,0,120"  # 5 waiting, no free agent: (5+1)*120/2 = 360 s > 120 s


class Services(NullServices):
    def __init__(self, priority=(), orders=None):
        super().__init__(task.Clock())
        self.priority = set(priority)
        self.orders = orders or {}

    async def caller_in(self, list_name, number):
        return number in self.priority

    async def open_order_for(self, caller):
        return self.orders.get(caller)


def flows_dir(tmp_path, edit=None):
    target = tmp_path / "flows"
    target.mkdir()
    text = (REPO / "ivr_flows" / "main.yaml").read_text()
    (target / "main.yaml").write_text(edit(text) if edit else text)
    return target


class Call:
    """One call of the main flow through the real factory, session and library."""

    def __init__(self, tmp_path, services=None, edit=None, fast_path=True, caller=b"13800138000",
                 prompt_dir="hotline"):
        self.counted = []
        library = FlowLibrary(str(flows_dir(tmp_path, edit)), "12345", services=services or Services(),
                              fast_path=fast_path, on_fast_path=self.counted.append, prompt_dir=prompt_dir)
        scripts = ScriptRegistry()
        scripts.register("main", library.handler("main"))
        self.factory, self.clock, self.store, _ = make_factory(scripts, prompt_dir=prompt_dir)
        self.proto, self.transport = connect(self.factory)
        self.proto.dataReceived(env("main").replace(b"13800138000", caller))

    @property
    def lines(self):
        return sent_lines(self.transport)

    def reply(self, text):
        self.proto.dataReceived(text.encode() + b"\n")

    def answer_handover(self, state=CALM, values=None):
        line = self.lines[-1]
        assert line.startswith('GET FULL VARIABLE "${SET(')
        got = values if values is not None else "".join(v + "|" for v in SET_VALUE.findall(line))
        self.reply(f"200 result=1 ({got}{state})")

    @property
    def record(self):
        (record,) = self.store.ended
        return record

    @property
    def ended(self):
        return self.transport.disconnecting


def test_the_default_call_costs_two_agi_round_trips(tmp_path):
    call = Call(tmp_path)
    assert len(call.lines) == 1
    first = call.lines[0]
    assert "${SET(HOTLINE_FLOW_VERSION=2+" in first and "${SET(HOTLINE_QUEUE=12345)}" in first
    assert "${SET(HOTLINE_PRIORITY=0)}" in first and "${SET(HOTLINE_NEXT=queue)}" in first
    assert "${QUEUE_WAITING_COUNT(12345)}" in first
    call.answer_handover(CALM)
    assert call.lines[1] == 'STREAM FILE "hotline/welcome" "9"'
    call.reply("200 result=0 endpos=48000")
    assert call.ended and len(call.lines) == 2
    record = call.record
    assert record.outcome == "handoff_queue" and record.handoff == "queue:12345"
    assert record.path == ["flow:main", "prompt:welcome", "branch:repeat_check:default",
                           "branch:menu_switch:default", "branch:peak_check:default", "queue:12345"]
    assert call.counted == ["fast"]


def test_a_priority_caller_gets_priority_and_screen_pop_in_the_same_exchange(tmp_path):
    call = Call(tmp_path, Services(priority={"13800138000"}))
    first = call.lines[0]
    assert "${SET(HOTLINE_PRIORITY=10)}" in first and "${SET(HOTLINE_PRIORITY_CALLER=1)}" in first
    call.answer_handover()
    call.reply("200 result=0 endpos=48000")
    assert len(call.lines) == 2 and call.record.handoff == "queue:12345"
    assert "caller:priority" in call.record.path


def test_key_9_during_the_greeting_reaches_the_emergency_menu_from_the_flow(tmp_path):
    call = Call(tmp_path)
    call.answer_handover()
    call.reply("200 result=57 endpos=1000")  # '9'
    assert call.lines[2].startswith('STREAM FILE "hotline/menu_emergency"')
    call.reply("200 result=49 endpos=100")  # '1' police
    call.reply("200 result=0 endpos=100")  # the announcement
    for _ in range(3):  # HOTLINE_CHOICES, HOTLINE_TRANSFER, HOTLINE_NEXT
        call.reply("200 result=1")
    assert call.lines[-3:] == ['SET VARIABLE "HOTLINE_CHOICES" "emergency=1"',
                               'SET VARIABLE "HOTLINE_TRANSFER" "police-110"', 'SET VARIABLE "HOTLINE_NEXT" "transfer"']
    assert call.ended
    assert call.record.handoff == "transfer:police-110" and "key:9" in call.record.path
    assert "branch:peak_check:default" not in call.record.path
    assert call.counted == ["key"]


def test_a_peak_call_falls_back_to_the_engine_with_the_queue_state_already_known(tmp_path):
    call = Call(tmp_path)
    call.answer_handover(PEAK)
    call.reply("200 result=0 endpos=48000")
    assert call.lines[2].startswith('STREAM FILE "hotline/peak_offer"')  # no second GET FULL VARIABLE
    call.reply("200 result=51 endpos=10")  # '3' keep waiting
    for _ in range(4):  # HOTLINE_CHOICES, HOTLINE_QUEUE, HOTLINE_PRIORITY, HOTLINE_NEXT
        call.reply("200 result=1")
    assert call.ended and call.record.handoff == "queue:12345"
    assert "branch:peak_check:2" in call.record.path and "menu:peak_offer=3" in call.record.path
    assert sum("GET FULL VARIABLE" in line for line in call.lines) == 1
    assert call.counted == ["peak"]


def test_a_repeat_caller_with_an_open_order_runs_the_full_engine(tmp_path):
    services = Services(orders={"13800138000": OrderStatus("20261118007", "dispatched")})
    call = Call(tmp_path, services)
    assert call.lines[0].startswith('SET VARIABLE "HOTLINE_FLOW_VERSION"')
    call.reply("200 result=1")
    assert call.lines[1] == 'STREAM FILE "hotline/welcome" "9"'
    assert call.counted == ["engine"]


def test_with_the_top_menu_on_every_call_runs_the_full_engine(tmp_path):
    call = Call(tmp_path, edit=lambda text: text.replace("top_menu: false", "top_menu: true"))
    assert call.lines[0].startswith('SET VARIABLE "HOTLINE_FLOW_VERSION"')
    call.reply("200 result=1")
    call.reply("200 result=0 endpos=1")
    assert call.lines[2].startswith('STREAM FILE "hotline/menu_top"')
    assert call.counted == ["engine"]


def test_fast_path_off_in_the_config_or_the_flow(tmp_path):
    call = Call(tmp_path, fast_path=False)
    assert call.lines[0].startswith('SET VARIABLE "HOTLINE_FLOW_VERSION"')
    (tmp_path / "off").mkdir()
    flows = load_flows(flows_dir(tmp_path / "off",
                                 lambda t: t.replace("  top_menu: false", "  top_menu: false\n  fast_path: false")))
    plan, why = compile_fast_path(flows["main"])
    assert plan is None and "fast_path off" in why


def test_a_caller_hanging_up_during_the_greeting_is_recorded_as_such(tmp_path):
    call = Call(tmp_path)
    call.answer_handover()
    call.reply("200 result=-1 endpos=100")
    assert call.record.outcome == "caller_hangup" and call.record.path[-1] == "prompt:welcome"
    assert call.record.handoff == ""


def test_variables_not_set_by_asterisk_send_the_call_through_the_engine(tmp_path):
    call = Call(tmp_path)
    call.answer_handover(CALM, values="|||")
    assert call.lines[1].startswith('SET VARIABLE "HOTLINE_FLOW_VERSION"')
    call.reply("200 result=1")
    assert call.lines[2] == 'STREAM FILE "hotline/welcome" "9"'
    call.reply("200 result=-1 endpos=1")
    assert "fastpath:refused" in call.record.path and call.counted == ["engine"]


def test_an_unknown_queue_state_is_asked_again_after_the_greeting_as_the_engine_does(tmp_path):
    call = Call(tmp_path)
    call.answer_handover("nonsense")
    call.reply("200 result=0 endpos=48000")
    assert call.lines[2].startswith('GET FULL VARIABLE "${QUEUE_VARIABLES(12345)}')


# -- what may be handed to the dialplan -------------------------------------------------
@pytest.mark.parametrize("value", ["12,345", "a)b", "x}y", "${SHELL(id)}", 'q"q', "a\nb", "a b", "a\\b", "a|b", "(",
                                   "é"])
def test_values_with_dialplan_syntax_are_refused(value):
    with pytest.raises(FastPathRefused):
        handover_expression([("HOTLINE_QUEUE", value)])
    with pytest.raises(FastPathRefused):
        handover_expression([("HOTLINE_QUEUE", "12345")], queue_state_of=value)


@pytest.mark.parametrize("name", ["hotline", "A=B", "A,B", "A)", "A B", ""])
def test_bad_variable_names_are_refused(name):
    with pytest.raises(FastPathRefused):
        handover_expression([(name, "1")])


def test_a_clean_handover_expression():
    assert handover_expression([("HOTLINE_QUEUE", "12345"), ("HOTLINE_FLOW_VERSION", "2+ab12")]) == \
        "${SET(HOTLINE_QUEUE=12345)}|${SET(HOTLINE_FLOW_VERSION=2+ab12)}|"


def main_flow(**changes):
    flow = load_flows(REPO / "ivr_flows")["main"]
    nodes = dict(flow.nodes)
    for node_id, fields in changes.items():
        nodes[node_id] = Node(node_id, nodes[node_id].type, {**nodes[node_id].fields, **fields})
    return Flow(flow.name, changes.pop("version", flow.version), flow.source, flow.start, nodes, flow.prompts,
                flow.settings)


@pytest.mark.parametrize("changes", [
    {"greeting": {"prompt": "wel,come"}},
    {"greeting": {"prompt": "wel(come)"}},
    {"greeting": {"prompt": 'wel"come'}},
    {"greeting": {"prompt": "wel\ncome"}},
    {"agent": {"queue": "123,45"}},
    {"agent": {"queue": "12345)}${SHELL(x"}},
    {"agent": {"queue": "12345\n"}},
    {"greeting": {"keys": {"9#": "emergency"}}},
])
def test_flow_data_that_cannot_be_handed_over_leaves_the_flow_on_the_engine(changes):
    plan, why = compile_fast_path(main_flow(**changes))
    assert plan is None, why


def test_the_shipped_main_flow_compiles():
    plan, why = compile_fast_path(main_flow())
    assert plan is not None and plan.prompt.id == "greeting" and plan.needs_queue_state, why


def test_an_open_order_number_with_dialplan_syntax_is_not_handed_over(tmp_path):
    # a flow where a repeat caller also takes the default path: the order number goes in the screen pop
    services = Services(orders={"13800138000": OrderStatus("1)},${SHELL(x)}", "dispatched")})
    call = Call(tmp_path, services, edit=lambda text: text.replace("{var_set: open_order}", "{var_set: no_such_var}"))
    assert call.lines[0].startswith('SET VARIABLE "HOTLINE_FLOW_VERSION"')
    assert "SHELL" not in call.lines[0]
    assert call.counted == ["engine"]


def test_an_order_number_that_is_clean_goes_in_the_same_exchange(tmp_path):
    services = Services(orders={"13800138000": OrderStatus("20261118007", "dispatched")})
    call = Call(tmp_path, services, edit=lambda text: text.replace("{var_set: open_order}", "{var_set: no_such_var}"))
    assert "${SET(HOTLINE_OPEN_ORDER=20261118007)}" in call.lines[0]
    assert "${SET(HOTLINE_REPEAT_CALLER=1)}" in call.lines[0]
    call.answer_handover()
    call.reply("200 result=0 endpos=1")
    assert len(call.lines) == 2 and call.record.handoff == "queue:12345"


def test_the_bench_bare_server_sends_exactly_the_gateway_fast_path_commands(tmp_path):
    from bench.fastagi_flow_bench import PROMPT_DIR, bare_script

    call = Call(tmp_path, prompt_dir=PROMPT_DIR)
    call.answer_handover()
    call.reply("200 result=0 endpos=800")
    assert call.counted == ["fast"]
    (tmp_path / "bare").mkdir()
    assert bare_script(tmp_path / "bare").read_text().splitlines() == call.lines
    # the one-round-trip variant (bare1): the same first exchange, the greeting left to the dialplan
    assert (tmp_path / "bare" / "bare1-flow-script.agi").read_text().splitlines() == call.lines[:1]


# -- the look-up as one pipeline on the reactor (gateway/storage/caller_lookup.py) --------
class FakeRedis:
    """``execute(commands)`` of the RESP client over a dict (bytes replies, as hiredis gives them)."""

    def __init__(self, lists=None, orders=None, statuses=None, down=False):
        self.lists, self.orders, self.statuses, self.down = lists or {}, orders or {}, statuses or {}, down
        self.requests = []

    def execute(self, commands):
        from twisted.internet import defer

        self.requests.append([c[0] for c in commands])
        if self.down:
            return defer.fail(ConnectionError("not connected"))
        replies = []
        for name, key, *args in commands:
            if name == "SISMEMBER":
                replies.append(int(args[0] in self.lists.get(key, ())))
            elif name == "ZREVRANGE":
                replies.append([n.encode() for n in self.orders.get(key, [])])
            elif name == "HGET":
                status = self.statuses.get(key)
                replies.append(status.encode() if status else None)
        return defer.succeed(replies)


def lookup_call(tmp_path, redis, edit=None):
    from gateway.storage.caller_lookup import ReactorCallerLookup

    call = Call.__new__(Call)
    call.counted = []
    library = FlowLibrary(str(flows_dir(tmp_path, edit)), "12345", services=Services(), fast_path=True,
                          on_fast_path=call.counted.append, caller_lookup=ReactorCallerLookup(redis.execute))
    scripts = ScriptRegistry()
    scripts.register("main", library.handler("main"))
    call.factory, call.clock, call.store, _ = make_factory(scripts)
    call.proto, call.transport = connect(call.factory)
    call.proto.dataReceived(env("main"))
    return call


def test_the_reactor_lookup_finds_a_priority_caller_in_one_pipeline(tmp_path):
    redis = FakeRedis(lists={"hotline:list:priority": {"13800138000"}})
    call = lookup_call(tmp_path, redis)
    assert redis.requests == [["SISMEMBER", "ZREVRANGE"]]
    assert "${SET(HOTLINE_PRIORITY=10)}" in call.lines[0] and "${SET(HOTLINE_PRIORITY_CALLER=1)}" in call.lines[0]
    call.answer_handover()
    call.reply("200 result=0 endpos=1")
    assert len(call.lines) == 2 and "caller:priority" in call.record.path


def test_the_reactor_lookup_sends_a_repeat_caller_to_the_engine(tmp_path):
    redis = FakeRedis(orders={"hotline:caller:13800138000:orders": ["20261121001", "20261118007"]},
                      statuses={"hotline:order:20261121001": "closed", "hotline:order:20261118007": "dispatched"})
    call = lookup_call(tmp_path, redis)
    assert redis.requests == [["SISMEMBER", "ZREVRANGE"], ["HGET", "HGET"]]
    assert call.lines[0].startswith('SET VARIABLE "HOTLINE_FLOW_VERSION"')
    assert call.counted == ["engine"]


def test_redis_away_the_reactor_lookup_still_takes_the_fast_path_to_an_agent(tmp_path):
    call = lookup_call(tmp_path, FakeRedis(down=True))
    call.answer_handover()
    call.reply("200 result=0 endpos=1")
    record = call.record
    assert record.handoff == "queue:12345" and len(call.lines) == 2
    assert "caller_list:unavailable" in record.path and "open_order:unavailable" in record.path
