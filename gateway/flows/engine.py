"""Run a validated flow over a call session.

Each node type has one small async runner that returns the next node id, or
``None`` once the call has been handed off. Rules every flow gets for free:

* a menu's ``*`` repeats it and ``0`` reaches an agent; timeouts and wrong keys
  are retried ``retries`` times, then the caller goes to the agent queue;
* a flow that ends without a hand-off sends the caller to the default queue;
* a failing store (Redis, job queue) is counted and the caller carried on
  towards an agent — never a hang-up on the citizen;
* before any hand-off the agent's screen-pop variables are set (choices,
  priority, repeat caller, open work order).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger

from .. import channel_vars as cv
from ..agi.session import AgiSession
from .model import Flow, Node
from .services import FlowServices, NullServices, QueueState, ServiceUnavailable, is_workday

__all__ = ["FlowRunner", "ORDER_STATUSES", "RECORDING_DIR", "parse_queue_state", "queue_state_expression"]

log = Logger()

MAX_STEPS = 500
MAX_REPEATS = 5
ALL_KEYS = "0123456789*#"
#: Where Asterisk writes voice messages (inside its own file tree).
RECORDING_DIR = "/var/spool/asterisk/hotline/messages"
#: Work-order status keys; each has a prompt ``status_<key>`` in flows that query status.
ORDER_STATUSES = ("received", "dispatched", "processing", "completed", "closed", "reopened")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_COUNT = re.compile(r"[0-9]*")

Runner = Callable[[Node, AgiSession], Awaitable[str | None]]


class FlowRunner:
    def __init__(self, flow: Flow, default_queue: str = "12345", services: FlowServices | None = None,
                 clock: Any = None, survey: Any = None) -> None:
        self.flow = flow
        #: the survey campaign's side of a survey call (gateway.surveys.flow.SurveyFlowBackend), if any
        self.survey = survey
        self.default_queue = default_queue
        if services is None:
            from twisted.internet import task

            services = NullServices(clock or task.Clock())
        self.services = services
        self._runners: dict[str, Runner] = {
            "prompt": self._prompt,
            "menu": self._menu,
            "input": self._input,
            "record": self._record,
            "transfer": self._transfer,
            "queue": self._queue,
            "set": self._set,
            "branch": self._branch,
            "goto": self._goto,
            "hangup": self._hangup,
            "order_status": self._order_status,
            "caller_lookup": self._caller_lookup,
            "callback_request": self._callback_request,
        }
        from .survey_nodes import SurveyNodes

        self._survey_nodes = SurveyNodes(self)
        self._runners.update(self._survey_nodes.runners())

    async def run(self, session: AgiSession) -> None:
        self.note_start(session)
        # the dialplan's agi-done event reports it (HOTLINE_FLOW is set by the dialplan itself)
        await session.set_variable(cv.FLOW_VERSION, self.flow.version)
        await self.run_from(session, self.flow.start)

    def note_start(self, session: AgiSession) -> None:
        """The flow and its version in the call record, and the path's first step (no AGI command)."""
        record = getattr(session, "call_record", None)
        if record is not None:
            record.flow = self.flow.name
            record.flow_version = self.flow.version
        session.step(f"flow:{self.flow.name}")

    async def run_node(self, node: Node, session: AgiSession) -> str | None:
        """One node's runner (the fast path runs the look-up, the branches and the prompt itself)."""
        return await self._runners[node.type](node, session)

    async def run_from(self, session: AgiSession, node_id: str | None) -> None:
        """Run the flow from ``node_id`` to its hand-off (the default queue if it ends without one)."""
        steps = 0
        while node_id is not None and steps < MAX_STEPS:
            node = self.flow.nodes[node_id]
            node_id = await self._runners[node.type](node, session)
            steps += 1
        if session.handoff is None and any(n.type.startswith("survey_") for n in self.flow.nodes.values()):
            # an outbound survey call has no agent to fall back to: it simply ends
            session.step("survey:end")
            await session.hangup()
        elif session.handoff is None:
            session.step("fallback")
            await self._to_agent(session)

    # -- helpers -------------------------------------------------------------
    def _unavailable(self, session: AgiSession, what: str, error: Exception) -> None:
        self.services.failed(what, str(error))
        session.step(f"{what}:unavailable")
        log.warn("Call {call_id}: {what} unavailable ({error}); carrying the caller on",
                 call_id=session.call_id, what=what, error=str(error))

    async def _play(self, session: AgiSession, prompt: str | None, escape: str = "") -> str | None:
        if not prompt:
            return None
        session.step(f"prompt:{prompt}")
        return await session.play(prompt, escape)

    async def _screen_pop(self, session: AgiSession) -> None:
        """Channel variables for the agent's screen: only what is known."""
        values = {
            cv.CHOICES: ",".join(session.vars.get("choices", [])),
            cv.REPEAT_CALLER: "1" if session.vars.get("open_order") else "",
            cv.OPEN_ORDER: str(session.vars.get("open_order") or ""),
            cv.PRIORITY_CALLER: "1" if session.vars.get("priority_caller") else "",
        }
        for name, value in values.items():
            if value:
                await session.set_variable(name, value)

    async def _to_agent(self, session: AgiSession, queue: str | None = None, priority: int | None = None) -> None:
        await self._screen_pop(session)
        if priority is None:
            priority = int(session.vars.get("priority", 0) or 0)
        await session.queue(queue or self.default_queue, priority)

    async def _queue_state(self, session: AgiSession, queue: str) -> QueueState | None:
        cached = session.vars.get(f"queue_state:{queue}")
        if isinstance(cached, QueueState):
            return cached
        state = parse_queue_state(await session.get_full_variable(queue_state_expression(queue)))
        if state is None:
            session.step(f"queue-state:{queue}:unknown")
        else:
            session.vars[f"queue_state:{queue}"] = state
        return state

    # -- node runners ----------------------------------------------------------
    async def _prompt(self, node: Node, session: AgiSession) -> str | None:
        keys = {str(k): str(v) for k, v in (node.get("keys") or {}).items()}
        digit = await self._play(session, node.get("prompt"), "".join(keys))
        if digit and digit in keys:
            session.step(f"key:{digit}")
            return keys[digit]
        return node.get("next")

    async def _menu(self, node: Node, session: AgiSession) -> str | None:
        options = {str(k): str(v) for k, v in node.get("options").items()}
        retries = int(node.get("retries", 2))
        timeout_ms = int(node.get("timeout_ms", 5000))
        failures = repeats = 0
        while True:
            digit = await self._play(session, node.get("prompt"), ALL_KEYS)
            if not digit:
                digit = await session.wait_for_digit(timeout_ms)
            if digit == "*" and repeats < MAX_REPEATS:
                repeats += 1
                session.step(f"menu:{node.id}:repeat")
                continue
            if digit == "0":
                session.step(f"menu:{node.id}:agent")
                session.vars.setdefault("choices", []).append(f"{node.get('choice', node.id)}=agent")
                await self._to_agent(session)
                return None
            if digit in options:
                session.step(f"menu:{node.id}={digit}")
                session.vars.setdefault("choices", []).append(f"{node.get('choice', node.id)}={digit}")
                return options[digit]
            failures += 1
            session.step(f"menu:{node.id}:{'invalid' if digit else 'timeout'}")
            if failures > retries:
                session.step(f"menu:{node.id}:give-up")
                await self._to_agent(session)
                return None
            await self._play(session, node.get("invalid_prompt" if digit else "timeout_prompt") or node.get("invalid_prompt"))

    async def _input(self, node: Node, session: AgiSession) -> str | None:
        retries = int(node.get("retries", 2))
        minimum = int(node.get("min_digits", 1))
        maximum = int(node.get("max_digits"))
        timeout_ms = int(node.get("timeout_ms", 6000))
        terminator = node.get("terminator", "#")
        for attempt in range(retries + 1):
            if terminator == "#":
                # GET DATA: one command, ends on '#', max_digits or timeout
                session.step(f"prompt:{node.get('prompt')}")
                digits, _timed_out = await session.get_digits(node.get("prompt"), maximum, timeout_ms)
                digits = digits.rstrip("#")
            else:
                # GET DATA's terminator is always '#': collect the keys one by one instead
                digits = await self._collect_digits(session, node.get("prompt"), maximum, timeout_ms, terminator)
            if digits == "0":
                session.step(f"input:{node.id}:agent")
                await self._to_agent(session)
                return None
            if minimum <= len(digits) <= maximum and digits.isdigit():
                session.vars[node.get("variable")] = digits
                session.step(f"input:{node.id}:ok")
                return node.get("next")
            session.step(f"input:{node.id}:{'invalid' if digits else 'timeout'}")
            if attempt < retries:
                await self._play(session, node.get("invalid_prompt"))
        session.step(f"input:{node.id}:give-up")
        await self._to_agent(session)
        return None

    async def _collect_digits(self, session: AgiSession, prompt: str, maximum: int, timeout_ms: int,
                              terminator: str) -> str:
        """Keys until ``terminator`` ('*', or '' for none), ``maximum`` keys, or ``timeout_ms`` without a key.

        The prompt may be interrupted by the first key; each further key waits ``timeout_ms`` (as GET DATA does).
        Keys other than digits and the terminator are kept, so the input is invalid (as with GET DATA).
        """
        key = await self._play(session, prompt, ALL_KEYS)
        if not key:
            key = await session.wait_for_digit(timeout_ms)
        digits = ""
        while key and key != terminator:
            digits += key
            if len(digits) >= maximum:
                break
            key = await session.wait_for_digit(timeout_ms)
        return digits

    async def _record(self, node: Node, session: AgiSession) -> str | None:
        await self._play(session, node.get("prompt"))
        started = self.services.now()
        name = f"{session.call_id.replace('.', '-')}-{started:%Y%m%d%H%M%S}"
        path = f"{RECORDING_DIR}/{name}"
        result = await session.record(
            path,
            "wav",
            "#",
            int(node.get("max_seconds", 120)) * 1000,
            int(node.get("silence_seconds", 5)),
            beep=True,
        )
        session.step(f"record:{result.ended_by}")
        # "(writefile)", or a file without audio although RECORD FILE said it saved one (gateway.flows.recordings)
        problem = "not written" if result.ended_by == "error" else \
            await self.services.recording_problem(f"{path}.wav", result.end_position)
        if problem:  # nothing was saved (disk full …): say so, and an agent takes the call
            if result.ended_by != "error":
                session.step("record:no_audio")
            self._unavailable(session, "recording", RuntimeError(f"Asterisk could not write {path}.wav: {problem}"))
            await self._play(session, node.get("error_prompt"))
            await self._to_agent(session)
            return None
        job = {
            "recording_id": name,
            "path": f"{path}.wav",
            "call_id": session.call_id,
            "caller": session.caller,
            "channel": session.environment.channel,
            "flow": self.flow.name,
            "flow_version": self.flow.version,
            "ivr_path": list(session.path),
            "choices": list(session.vars.get("choices", [])),
            "recorded_at": started.isoformat(),
            "ended_by": result.ended_by,
            "end_position": result.end_position,
        }
        try:
            await self.services.voice_message(job)
        except ServiceUnavailable as exc:
            self._unavailable(session, "voice_message", exc)
            await self._play(session, node.get("error_prompt"))
            await self._to_agent(session)
            return None
        session.step("voice_message:stored")
        await session.set_variable(cv.SERVED, "voice_message")  # not a missed call
        await self._play(session, node.get("done_prompt"))
        return node.get("next")

    async def _transfer(self, node: Node, session: AgiSession) -> str | None:
        target = node.get("target")
        reason = node.get("reason", "")
        if reason:
            log.info("Call {call_id}: transfer to {target} ({reason})", call_id=session.call_id, target=target,
                     reason=reason)
            session.step(f"reason:{reason}")
        await self._play(session, node.get("announce"))
        await self._screen_pop(session)
        await session.transfer(target)
        return None

    async def _queue(self, node: Node, session: AgiSession) -> str | None:
        await self._play(session, node.get("announce"))
        priority = max(int(node.get("priority", 0)), int(session.vars.get("priority", 0) or 0))
        await self._to_agent(session, str(node.get("queue", self.default_queue)), priority)
        return None

    async def _set(self, node: Node, session: AgiSession) -> str | None:
        for name, value in node.get("variables").items():
            session.vars[name] = value
            if name.isupper():  # upper-case names are channel variables (screen pop)
                await session.set_variable(name, value)
        return node.get("next")

    async def _goto(self, node: Node, session: AgiSession) -> str | None:
        return node.get("next")

    async def _hangup(self, node: Node, session: AgiSession) -> str | None:
        await self._play(session, node.get("prompt"))
        session.step("hangup")
        await session.hangup()
        return None

    async def _branch(self, node: Node, session: AgiSession) -> str | None:
        for index, case in enumerate(node.get("cases")):
            if await self._matches(case["when"], session):
                session.step(f"branch:{node.id}:{index + 1}")
                return str(case["next"])
        session.step(f"branch:{node.id}:default")
        return node.get("default")

    async def _matches(self, when: dict[str, Any], session: AgiSession) -> bool:
        now = self.services.now() if ("time" in when or "days" in when) else None  # most cases look at no clock
        for key, expected in when.items():
            if key == "time" and not _in_window(now, expected):
                return False
            if key == "days" and not _on_days(now.date(), expected):
                return False
            if key == "setting" and not self.flow.settings.get(expected):
                return False
            if key == "var_set" and not session.vars.get(expected):
                return False
            if key == "var" and any(str(session.vars.get(k, "")) != str(v) for k, v in expected.items()):
                return False
            if key == "caller_in":
                try:
                    if not await self.services.caller_in(expected, session.caller):
                        return False
                except ServiceUnavailable as exc:
                    self._unavailable(session, "caller_list", exc)
                    return False
            if key in ("queue_full", "queue_wait_over", "queue_no_agents"):
                state = await self._queue_state(session, self.default_queue)
                if state is None:
                    return False
                if key == "queue_full" and state.full != bool(expected):
                    return False
                if key == "queue_wait_over" and not state.estimated_wait > float(expected):
                    return False
                if key == "queue_no_agents" and (state.logged_in == 0) != bool(expected):
                    return False
        return True

    async def _order_status(self, node: Node, session: AgiSession) -> str | None:
        number = str(session.vars.get(node.get("variable")) or "")
        try:
            status = await self.services.order_status(number) if number else None
        except ServiceUnavailable as exc:
            self._unavailable(session, "order_status", exc)
            await self._play(session, node.get("error_prompt"))
            await self._to_agent(session)
            return None
        if status is None:
            session.step("order:unknown")
            await self._play(session, node.get("unknown_prompt"))
            return node.get("next")
        await self._speak_status(session, status)
        return node.get("next")

    async def _speak_status(self, session: AgiSession, status) -> None:
        session.step(f"order:{status.status}")
        await self._play(session, "order_intro")
        await session.say_digits(status.number)
        key = status.status if status.status in ORDER_STATUSES else "unknown"
        await self._play(session, f"status_{key}")

    async def _caller_lookup(self, node: Node, session: AgiSession) -> str | None:
        caller = session.caller
        if not caller:
            return node.get("next")
        try:
            if await self.services.caller_in(node.get("priority_list", "priority"), caller):
                session.vars["priority_caller"] = True
                session.vars["priority"] = max(int(node.get("priority", 10)), int(session.vars.get("priority", 0) or 0))
                session.step("caller:priority")
        except ServiceUnavailable as exc:
            self._unavailable(session, "caller_list", exc)
        try:
            order = await self.services.open_order_for(caller)
        except ServiceUnavailable as exc:
            self._unavailable(session, "open_order", exc)
            order = None
        if order is not None:
            session.vars["open_order"] = order.number
            session.vars["open_order_status"] = order.status
            session.step("caller:open-order")
        return node.get("next")

    async def _callback_request(self, node: Node, session: AgiSession) -> str | None:
        queue = str(node.get("queue", self.default_queue))
        state = await self._queue_state(session, queue)
        request = {
            "call_id": session.call_id,
            "caller": session.caller,
            "queue": queue,
            "position": (state.waiting + 1) if state else None,
            "estimated_wait": state.estimated_wait if state else None,
            "requested_at": self.services.now().isoformat(),
            "flow": self.flow.name,
            "choices": list(session.vars.get("choices", [])),
            "priority": int(session.vars.get("priority", 0) or 0),
        }
        if not session.caller:
            session.step("callback:no-number")
            await self._to_agent(session, queue)
            return None
        try:
            await self.services.request_callback(request)
        except ServiceUnavailable as exc:
            self._unavailable(session, "callback_request", exc)
            await self._to_agent(session, queue)
            return None
        session.step("callback:stored")
        await session.set_variable(cv.SERVED, "callback_request")  # its callback comes from the dialer
        await self._play(session, node.get("done_prompt"))
        return node.get("next")


def queue_state_expression(queue: str) -> str:
    """What :meth:`FlowRunner._queue_state` asks Asterisk (GET FULL VARIABLE); see parse_queue_state."""
    return (f"${{QUEUE_VARIABLES({queue})}}${{QUEUE_WAITING_COUNT({queue})}},"
            f"${{QUEUE_MEMBER({queue},logged)}},${{QUEUE_MEMBER({queue},free)}},${{QUEUEMAX}},${{QUEUETALKTIME}}")


def parse_queue_state(raw: str | None) -> QueueState | None:
    """The answer to :meth:`FlowRunner._queue_state`'s expression → the queue's state, or None if unknown.

    ``WAITING,LOGGED_IN,FREE,QUEUEMAX,QUEUETALKTIME``; the waiting count comes right after the expansion
    of ``QUEUE_VARIABLES()`` (which sets QUEUEMAX and QUEUETALKTIME), so it may carry a leading ``0``
    (``05`` is five waiting). Empty fields count as 0. Anything else — no answer, a field missing or extra,
    text, a negative number — is unknown: the flow treats the queue as not full, with no wait, and the
    caller goes on towards an agent.
    """
    fields = (raw or "").split(",")
    if len(fields) != 5 or not all(_COUNT.fullmatch(field.strip()) for field in fields):
        return None
    waiting, logged, free, maximum, talk = (int(field.strip() or 0) for field in fields)
    agents = max(logged, 1)
    estimated = 0.0 if free > 0 else (waiting + 1) * max(talk, 60) / agents
    return QueueState(waiting, logged, free, maximum, estimated)


def _in_window(now: dt.datetime, window: str) -> bool:
    start, end = window.split("-")
    minutes = now.hour * 60 + now.minute
    s_h, s_m = (int(x) for x in start.split(":"))
    e_h, e_m = (int(x) for x in end.split(":"))
    lo, hi = s_h * 60 + s_m, e_h * 60 + e_m
    return lo <= minutes < hi if lo <= hi else (minutes >= lo or minutes < hi)


def _on_days(day: dt.date, spec: Any) -> bool:
    if spec == "workdays":
        return is_workday(day)
    if spec == "holidays":
        return not is_workday(day)
    if isinstance(spec, list):
        return DAY_NAMES[day.weekday()] in [str(d)[:3].lower() for d in spec]
    return False
