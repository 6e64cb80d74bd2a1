"""The default path of a flow in at most two AGI round trips.

Most inbound calls take the same path: caller look-up → greeting → branches that
all fall through → the agent queue. The full engine spends one AGI command per
step (``SET VARIABLE`` of the flow version, ``STREAM FILE``, ``GET FULL
VARIABLE`` for the peak check, three ``SET VARIABLE`` for the hand-off, one per
screen-pop variable: 6–7 round trips). At load time :func:`compile_fast_path`
recognises that shape in the flow data; at call time :class:`FastPathRunner`
runs it as:

1. the caller look-up (one Redis pipeline on the reactor, no AGI) and a first walk over the branches with
   a calm queue (no AGI): does the default path end in a plain ``queue`` node?
   If not (a repeat caller with an open order, the top menu on, a time window
   …) the call runs the full engine, as before.
2. **one** ``GET FULL VARIABLE`` whose expression sets the flow version, the
   hand-off (``HOTLINE_QUEUE``, ``HOTLINE_PRIORITY``, ``HOTLINE_NEXT=queue``)
   and the screen-pop variables with the ``SET()`` dialplan function and, in
   the same reply, returns the queue state the peak branches need;
3. **one** ``STREAM FILE`` of the greeting with the flow's keys as escape
   digits.

No key and no peak: the call is handed off (the variables are already set) —
two round trips. A key (9 = emergency), a peak (the branches now lead
elsewhere) or an unknown queue state: the full engine carries on in the same
session from that node, with the queue state already known, so menus, offers
and hand-offs still come from the flow data. The call record gets the same path
the engine would have written (branch steps after the greeting).

Every value handed over is checked against a strict character set (names and
values go inside ``${SET(NAME=VALUE)}``): a comma, parenthesis, brace, quote,
dollar sign or newline is refused — at load time for flow data (the flow then
runs on the full engine), at call time for the rest.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from .. import channel_vars as cv
from ..agi.session import AgiCommandError, AgiSession, CallerHungUp, Handoff
from .engine import FlowRunner, parse_queue_state, queue_state_expression
from .model import Flow, Node
from .services import QueueState, ServiceUnavailable

__all__ = ["FastPath", "FastPathRefused", "FastPathRunner", "compile_fast_path", "handover_expression"]

log = Logger()

#: channel-variable names and values that may go inside ``${SET(NAME=VALUE)}``
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}\Z")
_VALUE = re.compile(r"[A-Za-z0-9_.+:-]{0,80}\Z")
#: a prompt file ``dir/name`` (STREAM FILE argument)
_PROMPT = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}\Z")
_KEYS = frozenset("0123456789*#")
#: the queue state a first walk assumes (nobody waiting, an agent free): "is the default path a queue?"
_CALM = QueueState(waiting=0, logged_in=1, free=1, maximum=0, estimated_wait=0.0)
_QUEUE_CONDITIONS = frozenset({"queue_full", "queue_wait_over", "queue_no_agents"})
_MAX_WALK = 50
#: separates the SET() results from the queue state in the reply
_SEP = "|"


class FastPathRefused(ValueError):
    """A value that may not be handed to the dialplan (or a flow shape the fast path cannot run)."""


@dataclass(frozen=True)
class FastPath:
    """The compiled default path of one flow version."""

    #: the optional ``caller_lookup`` node the flow starts with
    lookup: Node | None
    #: the greeting (a ``prompt`` node, its keys as escape digits)
    prompt: Node
    #: whether a branch after the greeting looks at the queue (then the queue state is read in the same exchange)
    needs_queue_state: bool


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise FastPathRefused(f"variable name {name!r} may not be handed to the dialplan")
    return name


def _check_value(name: str, value: str) -> str:
    if not _VALUE.match(value):
        raise FastPathRefused(f"value of {name} ({value[:40]!r}) may not be handed to the dialplan")
    return value


def handover_expression(values: list[tuple[str, str]], queue_state_of: str | None = None) -> str:
    """``${SET(A=1)}|${SET(B=2)}|…|<queue state>``: the one GET FULL VARIABLE of the fast path.

    Asterisk answers with each value set (``1|2|…|``) and then the queue state. Refuses
    (:class:`FastPathRefused`) any name or value outside a strict character set, so nothing from
    a value can close the function, start another (``$``, ``{``, ``(``, ``)``, ``,``), break the
    AGI line (newline) or its quoting (quotes, backslash).
    """
    parts = [f"${{SET({_check_name(name)}={_check_value(name, value)})}}{_SEP}" for name, value in values]
    if queue_state_of is not None:
        parts.append(queue_state_expression(_check_value("queue", queue_state_of)))
    return "".join(parts)


def split_handover_reply(values: list[tuple[str, str]], reply: str | None) -> tuple[bool, str]:
    """(every value was set, the rest of the reply: the queue state if it was asked for)."""
    expected = "".join(value + _SEP for _, value in values)
    text = reply or ""
    if not text.startswith(expected):
        return False, ""
    return True, text[len(expected):]


def _reachable_branches(flow: Flow, node_id: str | None) -> list[Node] | None:
    """Branch nodes reachable from ``node_id`` through branches only, or None if one can reach itself."""
    seen: dict[str, Node] = {}
    todo = [node_id]
    while todo:
        current = todo.pop()
        node = flow.nodes.get(current) if current else None
        if node is None or node.type != "branch" or current in seen:
            continue
        seen[current] = node
        todo.extend(str(case["next"]) for case in node.get("cases") or ())
        todo.append(node.get("default"))
        if len(seen) > _MAX_WALK:
            return None
    return list(seen.values())


def compile_fast_path(flow: Flow, prompt_dir: str = "hotline") -> tuple[FastPath | None, str]:
    """The flow's fast path, or None and why not (the flow then always runs on the full engine)."""
    if not flow.settings.get("fast_path", True):
        return None, "fast_path off in the flow settings"
    if any(node.type.startswith("survey_") for node in flow.nodes.values()):
        return None, "survey flow"
    node = flow.nodes.get(flow.start)
    lookup = None
    if node is not None and node.type == "caller_lookup":
        lookup, node = node, flow.nodes.get(node.get("next"))
    if node is None or node.type != "prompt" or not node.get("prompt") or not node.get("next"):
        return None, "the flow does not start with a greeting prompt"
    prompt_file = f"{prompt_dir}/{node.get('prompt')}" if prompt_dir else str(node.get("prompt"))
    if not _PROMPT.match(prompt_file):
        return None, f"prompt file {prompt_file[:40]!r} may not be handed over"
    keys = {str(k) for k in (node.get("keys") or {})}
    if not keys <= _KEYS:
        return None, "greeting keys other than 0-9 * #"
    branches = _reachable_branches(flow, node.get("next"))
    if branches is None:
        return None, "too many branches after the greeting"
    end = flow.nodes.get(node.get("next"))
    for _ in range(_MAX_WALK):  # the default edges: the path of a call no case matches
        if end is None or end.type != "branch":
            break
        end = flow.nodes.get(end.get("default"))
    if end is None or end.type != "queue" or end.get("announce"):
        return None, "the default path after the greeting is not a plain queue"
    try:
        _check_value("queue", str(end.get("queue", "")))
        _check_value("the flow version", str(flow.version))
    except FastPathRefused as exc:
        return None, str(exc)
    needs_state = any(_QUEUE_CONDITIONS & set(case["when"]) for b in branches for case in b.get("cases") or ())
    return FastPath(lookup, node, needs_state), "ok"


class FastPathRunner:
    """Runs one flow version's calls: the fast path when the call allows it, else the full engine."""

    def __init__(self, runner: FlowRunner, plan: FastPath,
                 count: Callable[[str], None] | None = None, caller_lookup: Any = None) -> None:
        self.runner = runner
        self.plan = plan
        self._count = count or (lambda result: None)
        #: one Redis pipeline on the reactor for the look-up (gateway/storage/caller_lookup.py); None: the
        #: engine's caller_lookup node (two hops to the redis-py thread pool)
        self.caller_lookup = caller_lookup
        #: checked expressions by hand-over values (the open-order number is the only free-form one)
        self._expressions: dict[tuple, str] = {}

    async def run(self, session: AgiSession) -> None:
        runner, plan = self.runner, self.plan
        queue_key = f"queue_state:{runner.default_queue}"
        runner.note_start(session)
        if plan.lookup is not None and self.caller_lookup is not None:
            await self._lookup(plan.lookup, session)  # Redis only: no AGI command
        elif plan.lookup is not None:
            await runner.run_node(plan.lookup, session)
        # 1. with a calm queue, where does the default path go? (no AGI command)
        mark = len(session.path)
        session.vars[queue_key] = _CALM
        target = await self._walk(session, plan.prompt.get("next"))
        session.vars.pop(queue_key, None)
        del session.path[mark:]
        values = None
        if target is not None and target.type == "queue" and not target.get("announce"):
            queue = str(target.get("queue", runner.default_queue))
            priority = max(int(target.get("priority", 0)), int(session.vars.get("priority", 0) or 0))
            try:
                values = self._values(session, queue, priority)
                key = tuple(values)
                expression = self._expressions.get(key)
                if expression is None:  # a handful of distinct hand-overs per flow version: checked once each
                    expression = handover_expression(values, runner.default_queue if plan.needs_queue_state else None)
                    if len(self._expressions) < 256:
                        self._expressions[key] = expression
            except FastPathRefused as exc:
                log.warn("Call {call_id}: fast path refused ({why}); full flow", call_id=session.call_id, why=str(exc))
                values = None
        if values is None:  # not the default path for this caller: the engine, as before
            self._count("engine")
            await session.set_variable(cv.FLOW_VERSION, runner.flow.version)
            await runner.run_from(session, plan.prompt.id)
            return
        # 2. one exchange: the hand-off and screen pop set, the queue state read
        all_set, state_text = split_handover_reply(values, await session.get_full_variable(expression))
        if not all_set:  # Asterisk did not set them (no SET() function?): the engine sets them itself
            self._count("engine")
            session.step("fastpath:refused")
            await session.set_variable(cv.FLOW_VERSION, runner.flow.version)
            await runner.run_from(session, plan.prompt.id)
            return
        walked_to, branch_steps = target, []
        if plan.needs_queue_state:
            state = parse_queue_state(state_text)
            if state is None:
                walked_to = None  # unknown: the engine asks again after the greeting, as it always did
            else:
                session.vars[queue_key] = state
                mark = len(session.path)
                walked_to = await self._walk(session, plan.prompt.get("next"))
                branch_steps = session.path[mark:]
                del session.path[mark:]
        # 3. the greeting, its keys as escape digits
        after = await runner.run_node(plan.prompt, session)
        if after != plan.prompt.get("next") or walked_to is None:
            self._count("key" if after != plan.prompt.get("next") else "engine")
            await self._engine_from(session, after)
            return
        session.path.extend(branch_steps)
        if walked_to is not target:  # a peak: the offer and what follows, from the flow
            self._count("peak")
            await self._engine_from(session, walked_to.id)
            return
        self._count("fast")
        session.handoff = Handoff("queue", queue, priority)
        session.step(f"queue:{queue}")

    async def _lookup(self, node: Node, session: AgiSession) -> None:
        """What the engine's ``caller_lookup`` node does, in one pipeline."""
        caller = session.caller
        if not caller:
            return
        try:
            priority, order = await self.caller_lookup.profile(node.get("priority_list", "priority"), caller)
        except ServiceUnavailable as exc:
            for what in ("caller_list", "open_order"):
                self.runner.services.failed(what, str(exc))
                session.step(f"{what}:unavailable")
            log.warn("Call {call_id}: caller look-up unavailable ({error}); carrying the caller on",
                     call_id=session.call_id, error=str(exc))
            return
        if priority:
            session.vars["priority_caller"] = True
            session.vars["priority"] = max(int(node.get("priority", 10)), int(session.vars.get("priority", 0) or 0))
            session.step("caller:priority")
        if order is not None:
            session.vars["open_order"] = order.number
            session.vars["open_order_status"] = order.status
            session.step("caller:open-order")

    async def _engine_from(self, session: AgiSession, node_id: str | None) -> None:
        await self.runner.run_from(session, node_id)
        if session.handoff is not None and session.handoff.kind == "hangup":
            # HOTLINE_NEXT was set to queue in the first exchange; say what really happened
            try:
                await session.set_variable(cv.NEXT, cv.NEXT_HANGUP)
            except (CallerHungUp, AgiCommandError):
                pass

    async def _walk(self, session: AgiSession, node_id: str | None) -> Node | None:
        """Follow branches from ``node_id`` (their steps go to the path); the first other node."""
        for _ in range(_MAX_WALK):
            node = self.runner.flow.nodes.get(node_id) if node_id else None
            if node is None or node.type != "branch":
                return node
            node_id = await self.runner.run_node(node, session)
        return None

    def _values(self, session: AgiSession, queue: str, priority: int) -> list[tuple[str, str]]:
        values = [(cv.FLOW_VERSION, str(self.runner.flow.version))]
        # the screen pop, as the engine's _screen_pop sets it (only what is known)
        if session.vars.get("priority_caller"):
            values.append((cv.PRIORITY_CALLER, "1"))
        if session.vars.get("open_order"):
            values += [(cv.REPEAT_CALLER, "1"), (cv.OPEN_ORDER, str(session.vars["open_order"]))]
        if session.vars.get("choices"):
            raise FastPathRefused("menu choices are not handed over by the fast path")
        values += [(cv.QUEUE, queue), (cv.PRIORITY, str(int(priority))), (cv.NEXT, cv.NEXT_QUEUE)]
        return values
