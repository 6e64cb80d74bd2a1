"""The flow engine over a scripted fake session: every node kind and every safety rule."""
import datetime as dt
import textwrap
from pathlib import Path

import pytest
from twisted.internet import defer, task

from gateway.flows.engine import FlowRunner, parse_queue_state
from gateway.flows.loader import build_flow, load_flow
from gateway.flows.services import NullServices, OrderStatus, QueueState, ServiceUnavailable

import yaml

from .test_flows import FakeSession

STATUS_PROMPTS = {
    "order_intro": "您的工单",
    "status_unknown": "状态未知",
    **{f"status_{k}": k for k in ("received", "dispatched", "processing", "completed", "closed", "reopened")},
}


def flow_from(text, prompts=None):
    data = yaml.safe_load(textwrap.dedent(text))
    data.setdefault("prompts", {}).update(prompts or {})
    return build_flow(data, "test.yaml", "abc")


class Services(NullServices):
    def __init__(self, now=dt.datetime(2026, 11, 23, 10, 0), **kw):  # a Monday
        clock = task.Clock()
        super().__init__(clock)
        clock.advance(now.replace(tzinfo=self.timezone).timestamp())
        self.lists = kw.get("lists", {})
        self.orders = kw.get("orders", {})
        self.open_orders = kw.get("open_orders", {})
        self.down = kw.get("down", False)
        self.callbacks, self.jobs = [], []

    async def caller_in(self, list_name, number):
        if self.down:
            raise ServiceUnavailable("redis down")
        return number in self.lists.get(list_name, ())

    async def order_status(self, number):
        if self.down:
            raise ServiceUnavailable("redis down")
        return self.orders.get(number)

    async def open_order_for(self, caller):
        if self.down:
            raise ServiceUnavailable("redis down")
        return self.open_orders.get(caller)

    async def request_callback(self, request):
        if self.down:
            raise ServiceUnavailable("redis down")
        self.callbacks.append(request)
        return True

    async def voice_message(self, job):
        if self.down:
            raise ServiceUnavailable("redis down")
        self.jobs.append(job)
        return True


def run(flow, session, services=None):
    d = defer.Deferred.fromCoroutine(FlowRunner(flow, services=services or Services()).run(session))
    failures = []
    d.addErrback(failures.append)
    assert not failures, failures[0].getTraceback()
    return session


MENU = """
flow: m
prompts: {menu: 菜单, bad: 按键无效, water_info: 供水, hi: 你好}
start: top
nodes:
  top:
    type: menu
    prompt: menu
    invalid_prompt: bad
    retries: 2
    options: {"1": water, "2": info}
  water: {type: transfer, target: water, announce: water_info}
  info: {type: prompt, prompt: hi, next: agent}
  agent: {type: queue}
"""


def test_menu_choice_transfers_and_sets_screen_pop():
    session = run(flow_from(MENU), FakeSession(keys=["1"]))
    assert session.actions[-1] == ("transfer", "water")
    assert session.channel_vars["HOTLINE_CHOICES"] == "top=1"


def test_menu_star_repeats_then_choice():
    session = run(flow_from(MENU), FakeSession(keys=["*", "2"]))
    assert [a for a in session.actions if a[0] == "play"][:2] == [("play", "menu"), ("play", "menu")]
    assert "menu:top:repeat" in session.path and session.actions[-1][0] == "queue"


def test_menu_zero_reaches_agent_at_once():
    session = run(flow_from(MENU), FakeSession(keys=["0"]))
    assert session.actions[-1] == ("queue", "12345", 0)
    assert "menu:top:agent" in session.path


def test_menu_invalid_keys_retry_then_queue_never_hang_up():
    session = run(flow_from(MENU), FakeSession(keys=["7", "8", "9"]))
    assert session.path.count("menu:top:invalid") == 3
    assert session.actions.count(("play", "bad")) == 2
    assert session.actions[-1] == ("queue", "12345", 0)
    assert ("hangup",) not in session.actions


def test_menu_silence_times_out_to_queue():
    session = run(flow_from(MENU), FakeSession(keys=[]))
    assert session.path.count("menu:top:timeout") == 3 and session.actions[-1][0] == "queue"


STATUS = """
flow: s
prompts: {enter: 请输入工单号, bad: 号码有误, unknown: 查无此单, err: 系统繁忙}
start: number
nodes:
  number: {type: input, prompt: enter, variable: order, max_digits: 12, min_digits: 6, invalid_prompt: bad, next: say}
  say: {type: order_status, variable: order, unknown_prompt: unknown, error_prompt: err, next: agent}
  agent: {type: queue}
"""


def test_order_status_known_number_is_spoken():
    services = Services(orders={"20261121001": OrderStatus("20261121001", "processing")})
    session = run(flow_from(STATUS, STATUS_PROMPTS), FakeSession(keys=["20261121001"]), services)
    assert ("say_digits", "20261121001") in session.actions
    assert ("play", "status_processing") in session.actions
    assert session.actions[-1][0] == "queue"


def test_order_status_unknown_number_gets_clear_message_and_agent():
    session = run(flow_from(STATUS, STATUS_PROMPTS), FakeSession(keys=["999999"]), Services())
    assert ("play", "unknown") in session.actions and session.actions[-1][0] == "queue"


def test_input_too_short_is_retried():
    services = Services(orders={"123456": OrderStatus("123456", "closed")})
    session = run(flow_from(STATUS, STATUS_PROMPTS), FakeSession(keys=["12", "123456"]), services)
    assert ("play", "bad") in session.actions and ("play", "status_closed") in session.actions


def test_order_store_down_goes_to_agent():
    session = run(flow_from(STATUS, STATUS_PROMPTS), FakeSession(keys=["123456"]), Services(down=True))
    assert ("play", "err") in session.actions and session.actions[-1][0] == "queue"
    assert "order_status:unavailable" in session.path


LOOKUP = """
flow: p
prompts: {hi: 你好}
start: who
nodes:
  who: {type: caller_lookup, priority_list: elderly, priority: 10, next: greet}
  greet: {type: prompt, prompt: hi, next: agent}
  agent: {type: queue}
"""


def test_priority_caller_joins_with_priority_and_screen_pop():
    services = Services(lists={"elderly": {"13800138000"}})
    session = run(flow_from(LOOKUP, STATUS_PROMPTS), FakeSession(), services)
    assert session.actions[-1] == ("queue", "12345", 10)
    assert session.channel_vars["HOTLINE_PRIORITY_CALLER"] == "1"


def test_repeat_caller_open_order_in_screen_pop():
    services = Services(open_orders={"13800138000": OrderStatus("20261120007", "dispatched")})
    session = run(flow_from(LOOKUP, STATUS_PROMPTS), FakeSession(), services)
    assert session.channel_vars["HOTLINE_OPEN_ORDER"] == "20261120007"
    assert session.channel_vars["HOTLINE_REPEAT_CALLER"] == "1"


def test_lookup_with_redis_down_still_reaches_agent():
    session = run(flow_from(LOOKUP, STATUS_PROMPTS), FakeSession(), Services(down=True))
    assert session.actions[-1] == ("queue", "12345", 0)


BRANCH = """
flow: b
settings: {top_menu: false}
prompts: {day: 白天, night: 夜间, peak: 繁忙}
start: check
nodes:
  check:
    type: branch
    cases:
      - when: {queue_wait_over: 100}
        next: busy
      - when: {time: "08:00-18:00", days: workdays}
        next: day
    default: night
  busy: {type: prompt, prompt: peak, next: agent}
  day: {type: prompt, prompt: day, next: agent}
  night: {type: prompt, prompt: night, next: agent}
  agent: {type: queue}
"""


def test_branch_on_workday_hours():
    session = run(flow_from(BRANCH), FakeSession(queue_state="0,2,1,0,120"), Services(dt.datetime(2026, 11, 23, 10)))
    assert ("play", "day") in session.actions


def test_branch_on_statutory_holiday():
    # 2026-10-01 National Day is a Thursday but not a working day.
    session = run(flow_from(BRANCH), FakeSession(queue_state="0,2,1,0,120"), Services(dt.datetime(2026, 10, 1, 10)))
    assert ("play", "night") in session.actions


def test_branch_on_estimated_wait():
    session = run(flow_from(BRANCH), FakeSession(queue_state="5,2,0,0,120"), Services())
    assert ("play", "peak") in session.actions


PEAK = """
flow: k
prompts: {offer: 按1回拨按2留言, ok: 已登记, beep: 请留言, thanks: 谢谢}
start: offer
nodes:
  offer:
    type: menu
    prompt: offer
    options: {"1": callback, "2": message}
  callback: {type: callback_request, done_prompt: ok, next: bye}
  message: {type: record, prompt: beep, max_seconds: 60, silence_seconds: 4, done_prompt: thanks, next: bye}
  bye: {type: hangup}
"""


def test_callback_request_is_stored_with_place_in_line():
    services = Services()
    session = run(flow_from(PEAK), FakeSession(keys=["1"], queue_state="7,3,0,50,200"), services)
    (request,) = services.callbacks
    assert request["position"] == 8 and request["caller"] == "13800138000" and request["queue"] == "12345"
    assert session.actions[-1] == ("hangup",)


def test_voice_message_becomes_a_job_with_call_metadata():
    services = Services()
    session = run(flow_from(PEAK), FakeSession(keys=["2"]), services)
    (job,) = services.jobs
    assert job["call_id"] == "1700000000.1" and job["path"].endswith(".wav") and job["caller"] == "13800138000"
    assert job["choices"] == ["offer=2"]
    assert session.channel_vars["HOTLINE_SERVED"] == "voice_message", "not a missed call for the safety net"


def test_callback_store_down_keeps_caller_in_queue():
    session = run(flow_from(PEAK), FakeSession(keys=["1"]), Services(down=True))
    assert session.actions[-1][0] == "queue" and ("hangup",) not in session.actions


def test_voice_message_store_down_keeps_caller_in_queue():
    session = run(flow_from(PEAK), FakeSession(keys=["2"]), Services(down=True))
    assert session.actions[-1][0] == "queue"


class UnwritableSession(FakeSession):
    """Asterisk could not write the recording (disk full): RECORD FILE answered "(writefile)"."""

    async def record(self, path, fmt="wav", escape_digits="#", timeout_ms=0, silence_s=0, beep=True):
        from gateway.agi.session import RecordResult

        self.actions.append(("record", path))
        return RecordResult(path=path, ended_by="error", digit=None, end_position=0)


def test_a_recording_that_could_not_be_written_is_no_job_the_caller_hears_why_and_reaches_an_agent():
    services = Services()
    flow = flow_from(PEAK.replace("done_prompt: thanks,", "done_prompt: thanks, error_prompt: ok,"))
    session = run(flow, UnwritableSession(keys=["2"]), services)
    assert services.jobs == []  # never a job for a file that is not there
    assert ("play", "ok") in session.actions and ("play", "thanks") not in session.actions
    assert session.actions[-1][0] == "queue"
    assert "record:error" in session.path and "recording:unavailable" in session.path
    assert [what for what, _ in services.failures] == ["recording"]  # counted (hotline_flow_service_failures)
    assert "HOTLINE_SERVED" not in session.channel_vars


def test_emergency_key_during_greeting_transfers_with_reason():
    flow = flow_from("""
    flow: e
    prompts: {hi: 你好, police: 正在为您转接110}
    start: greet
    nodes:
      greet: {type: prompt, prompt: hi, keys: {"9": police}, next: agent}
      police: {type: transfer, target: police-110, announce: police, reason: emergency-key}
      agent: {type: queue}
    """)
    session = run(flow, FakeSession(keys=["9"]))
    assert session.actions[-1] == ("transfer", "police-110") and "reason:emergency-key" in session.path


def test_reserved_menu_keys_are_refused_at_load():
    from gateway.flows.loader import FlowError

    with pytest.raises(FlowError, match="reserved"):
        flow_from(MENU.replace('"2": info', '"0": info'))


INPUT = """
flow: i
prompts: {enter: 请输入编号, bad: 编号有误}
start: number
nodes:
  number: {type: input, prompt: enter, variable: order, min_digits: 3, max_digits: 6, timeout_ms: 4000, retries: 1,
           invalid_prompt: bad, terminator: "*", next: agent}
  agent: {type: queue}
"""


def input_flow(terminator):
    return flow_from(INPUT.replace('terminator: "*"', f'terminator: "{terminator}"'))


def test_input_with_star_terminator_ends_on_star_key_by_key():
    session = run(input_flow("*"), FakeSession(keys=["1", "2", "3", "4", "*"]))
    assert session.vars["order"] == "1234" and "input:number:ok" in session.path
    assert ("play", "enter") in session.actions and not any(a[0] == "get_digits" for a in session.actions)
    assert session.waits == [4000] * 4, "the first key interrupted the prompt, each further key waited timeout_ms"


def test_input_with_star_terminator_treats_hash_as_a_wrong_key():
    session = run(input_flow("*"), FakeSession(keys=["1", "2", "3", "#", "*", "5", "6", "7", "*"]))
    assert "input:number:invalid" in session.path and ("play", "bad") in session.actions
    assert session.vars["order"] == "567"


def test_input_with_star_terminator_and_nothing_before_it_is_retried():
    session = run(input_flow("*"), FakeSession(keys=["*", "1", "2", "3", "*"]))
    assert session.path.count("input:number:timeout") == 1 and session.vars["order"] == "123"


def test_input_with_star_terminator_zero_alone_reaches_an_agent():
    session = run(input_flow("*"), FakeSession(keys=["0", "*"]))
    assert "input:number:agent" in session.path and session.actions[-1] == ("queue", "12345", 0)
    assert "order" not in session.vars


def test_input_without_terminator_ends_at_max_digits_without_waiting_for_more():
    session = run(input_flow(""), FakeSession(keys=["1", "2", "3", "4", "5", "6", "7"]))
    assert session.vars["order"] == "123456"
    assert len(session.waits) == 5 and session.keys == ["7"], "no wait after the sixth key"


def test_input_without_terminator_ends_on_timeout():
    session = run(input_flow(""), FakeSession(keys=["1", "2", "3"]))
    assert session.vars["order"] == "123"
    assert session.waits == [4000] * 3, "the last wait timed out"


def test_input_without_terminator_keeps_star_and_hash_as_wrong_keys():
    session = run(input_flow(""), FakeSession(keys=["1", "2", "*", None, "4", "5", "6"]))
    assert "input:number:invalid" in session.path and session.vars["order"] == "456"


def test_input_with_hash_terminator_uses_get_data():
    session = run(input_flow("#"), FakeSession(keys=["123456#"]))
    assert ("get_digits", "enter") in session.actions and session.waits == []
    assert session.vars["order"] == "123456"


def test_input_terminator_defaults_to_hash():
    session = run(flow_from(INPUT.replace(', terminator: "*"', "")), FakeSession(keys=["4321"]))
    assert ("get_digits", "enter") in session.actions and session.vars["order"] == "4321"


# -- the queue's state and the peak offer -------------------------------------------------------------------------

MAIN_FLOW = Path(__file__).resolve().parents[2] / "ivr_flows" / "main.yaml"


@pytest.mark.parametrize("raw,state", [
    ("05,3,0,5,200", QueueState(5, 3, 0, 5, 6 * 200 / 3)),  # QUEUE_VARIABLES() expanded to 0 before the count
    ("5,3,0,5,200", QueueState(5, 3, 0, 5, 6 * 200 / 3)),
    ("0,2,1,0,120", QueueState(0, 2, 1, 0, 0.0)),  # a free agent: no wait
    ("7,0,0,,", QueueState(7, 0, 0, 0, 8 * 60.0)),  # QUEUEMAX / QUEUETALKTIME unset count as 0; talk time ≥ 60 s
])
def test_queue_state_is_parsed_from_the_queue_variables(raw, state):
    assert parse_queue_state(raw) == state


@pytest.mark.parametrize("raw", [
    None, "", "garbage", "5,3,0,5", "5,3,0,5,200,1", "-15,3,0,5,200", "5,3,x,5,200", "5.5,3,0,5,200", "²,1,1,1,1",
])
def test_malformed_queue_state_is_unknown(raw):
    assert parse_queue_state(raw) is None


def test_a_queue_is_full_at_its_maximum_and_never_without_one():
    assert parse_queue_state("5,3,0,5,200").full and parse_queue_state("6,3,0,5,200").full
    assert not parse_queue_state("4,3,0,5,200").full
    assert not parse_queue_state("500,3,0,0,200").full, "QUEUEMAX 0 is no limit"


def test_a_full_queue_gets_the_peak_offer_in_the_main_flow():
    session = run(load_flow(MAIN_FLOW), FakeSession(keys=["3"], queue_state="05,3,0,5,200"))
    assert "branch:peak_check:1" in session.path and ("play", "peak_offer") in session.actions
    assert session.actions[-1] == ("queue", "12345", 0), "'3' keeps waiting for an agent"


def test_a_full_queue_then_key_1_stores_a_callback_with_the_place_in_line():
    services = Services()
    session = run(load_flow(MAIN_FLOW), FakeSession(keys=["1"], queue_state="05,3,0,5,200"), services)
    (request,) = services.callbacks
    assert request["position"] == 6 and session.actions[-1] == ("hangup",)


def test_a_queue_with_room_and_a_free_agent_goes_straight_to_the_agent():
    session = run(load_flow(MAIN_FLOW), FakeSession(queue_state="04,3,1,5,200"))
    assert ("play", "peak_offer") not in session.actions and session.actions[-1] == ("queue", "12345", 0)


@pytest.mark.parametrize("raw", [None, "garbage", "-15,3,0,5,200", "5,3,0,5"])
def test_malformed_queue_state_is_not_full_and_the_caller_goes_on_to_the_agent(raw):
    session = run(load_flow(MAIN_FLOW), FakeSession(queue_state=raw))
    assert "branch:peak_check:default" in session.path and "queue-state:12345:unknown" in session.path
    assert ("play", "peak_offer") not in session.actions
    assert session.actions[-1] == ("queue", "12345", 0)


def test_no_agents_logged_in_is_a_branch_condition():
    flow = flow_from(BRANCH.replace("queue_wait_over: 100", "queue_no_agents: true"))
    assert ("play", "peak") in run(flow, FakeSession(queue_state="0,0,0,0,120")).actions
    assert ("play", "peak") not in run(flow, FakeSession(queue_state="0,2,1,0,120")).actions


# -- set, goto and the other branch conditions -----------------------------------------------------------------------

SET_GOTO = """
flow: v
prompts: {water: 供水, other: 其他}
start: mark
nodes:
  mark: {type: set, variables: {segment: water, HOTLINE_SEGMENT: water, priority: 7}, next: jump}
  jump: {type: goto, next: check}
  check:
    type: branch
    cases:
      - when: {var: {segment: water}}
        next: w
    default: o
  w: {type: prompt, prompt: water, next: agent}
  o: {type: prompt, prompt: other, next: agent}
  agent: {type: queue}
"""


def test_set_keeps_flow_variables_and_sets_upper_case_ones_on_the_channel():
    session = run(flow_from(SET_GOTO), FakeSession())
    assert session.vars["segment"] == "water" and session.channel_vars["HOTLINE_SEGMENT"] == "water"
    assert "segment" not in session.channel_vars, "lower-case names stay flow variables"


def test_set_priority_raises_the_queue_priority():
    assert run(flow_from(SET_GOTO), FakeSession()).actions[-1] == ("queue", "12345", 7)


def test_goto_jumps_to_its_next_node():
    session = run(flow_from(SET_GOTO), FakeSession())
    assert session.actions[0] == ("play", "water")


@pytest.mark.parametrize("value,played", [("water", "water"), ("gas", "other")])
def test_var_condition_compares_a_flow_variable(value, played):
    session = run(flow_from(SET_GOTO.replace("segment: water,", f"segment: {value},")), FakeSession())
    assert session.actions[0] == ("play", played)


def test_var_condition_compares_as_text():
    flow = flow_from(SET_GOTO.replace("segment: water,", "segment: 3,").replace("{segment: water}", '{segment: "3"}'))
    assert run(flow, FakeSession()).actions[0] == ("play", "water")


CALLER_IN = """
flow: c
prompts: {vip: 贵宾, other: 其他}
start: check
nodes:
  check:
    type: branch
    cases:
      - when: {caller_in: vip}
        next: v
    default: o
  v: {type: prompt, prompt: vip, next: agent}
  o: {type: prompt, prompt: other, next: agent}
  agent: {type: queue}
"""


def test_caller_in_a_list_takes_the_case():
    services = Services(lists={"vip": {"13800138000"}})
    assert run(flow_from(CALLER_IN), FakeSession(), services).actions[0] == ("play", "vip")


def test_caller_not_in_the_list_takes_the_default():
    services = Services(lists={"vip": {"13900139000"}})
    assert run(flow_from(CALLER_IN), FakeSession(), services).actions[0] == ("play", "other")


def test_caller_list_down_takes_the_default_and_is_counted():
    services = Services(down=True)
    session = run(flow_from(CALLER_IN), FakeSession(), services)
    assert session.actions[0] == ("play", "other") and session.actions[-1][0] == "queue"
    assert "caller_list:unavailable" in session.path and services.failures[0][0] == "caller_list"


WEEKEND = CALLER_IN.replace("{caller_in: vip}", "{days: [sat, Sunday]}")


@pytest.mark.parametrize("day,played", [
    (dt.datetime(2026, 11, 28, 10), "vip"),  # Saturday
    (dt.datetime(2026, 11, 29, 10), "vip"),  # Sunday, written in full
    (dt.datetime(2026, 11, 23, 10), "other"),  # Monday
])
def test_weekday_list_condition(day, played):
    assert run(flow_from(WEEKEND), FakeSession(), Services(day)).actions[0] == ("play", played)


@pytest.mark.parametrize("top_menu,played", [(True, "vip"), (False, "other")])
def test_setting_condition_reads_the_flow_settings(top_menu, played):
    flow = flow_from(CALLER_IN.replace("{caller_in: vip}", "{setting: top_menu}")
                     + f"settings: {{top_menu: {str(top_menu).lower()}}}\n")
    assert run(flow, FakeSession()).actions[0] == ("play", played)
