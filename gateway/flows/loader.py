"""Load and validate flow files; a broken flow fails at start-up, not mid-call.

Every problem is reported as ``FILE: node NODE: PROBLEM`` and all problems of
a file are reported at once.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .model import Flow, Node

__all__ = ["DEFAULT_TRANSFER_TARGETS", "NODE_SCHEMAS", "FlowError", "load_flow", "load_flows"]

#: The fixed transfer targets of asterisk_conf/extensions.conf [hotline-transfer].
DEFAULT_TRANSFER_TARGETS = frozenset({"police-110", "fire-119", "medical-120", "water", "power", "gas", "heating"})


class FlowError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# type -> (required fields, optional fields, fields that name a next node,
#          whether the node waits for the caller's input)
NODE_SCHEMAS: dict[str, tuple[frozenset, frozenset, tuple[str, ...], bool]] = {
    # play a prompt; keys pressed during it may jump (e.g. the emergency key)
    "prompt": (frozenset({"prompt"}), frozenset({"next", "keys"}), ("next",), False),
    # DTMF menu: '*' repeats, '0' reaches an agent; retries then the queue
    "menu": (
        frozenset({"prompt", "options"}),
        frozenset({"retries", "timeout_ms", "invalid_prompt", "timeout_prompt", "choice"}),
        (),
        True,
    ),
    # digits with length and terminator, kept in a flow variable
    "input": (
        frozenset({"prompt", "variable", "max_digits", "next"}),
        frozenset({"min_digits", "terminator", "timeout_ms", "retries", "invalid_prompt"}),
        ("next",),
        True,
    ),
    # record after the beep; the recording becomes a transcription job
    "record": (
        frozenset({"prompt", "next"}),
        frozenset({"max_seconds", "silence_seconds", "done_prompt", "error_prompt"}),
        ("next",),
        True,
    ),
    "transfer": (frozenset({"target"}), frozenset({"announce", "reason"}), (), False),
    "queue": (frozenset(), frozenset({"queue", "priority", "announce"}), (), False),
    # set channel variables (the agent's screen pop) and flow variables
    "set": (frozenset({"variables", "next"}), frozenset(), ("next",), False),
    # first matching case wins
    "branch": (frozenset({"cases", "default"}), frozenset(), ("default",), False),
    "goto": (frozenset({"next"}), frozenset(), ("next",), False),
    "hangup": (frozenset(), frozenset({"prompt"}), (), False),
    # speak a work order's status from the ticket store
    "order_status": (
        frozenset({"variable", "next"}),
        frozenset({"unknown_prompt", "error_prompt"}),
        ("next",),
        False,
    ),
    # look the caller up: priority list, open work order (sets flow variables)
    "caller_lookup": (frozenset({"next"}), frozenset({"priority_list", "priority"}), ("next",), False),
    # store a durable "call me back" request with the caller's place in line
    "callback_request": (frozenset({"next"}), frozenset({"queue", "done_prompt"}), ("next",), False),
    # satisfaction survey (outbound): take the call's next order and introduce it (topic, date); none left → done
    "survey_intro": (frozenset({"prompt", "next", "done"}), frozenset({"after_prompt"}), ("next", "done"), False),
    # one survey question: keys (and, with speech, a grammar-restricted spoken answer); retries, then no response
    "survey_question": (
        frozenset({"prompt", "question", "answers", "next"}),
        frozenset({"retries", "timeout_ms", "invalid_prompt", "speech", "speech_seconds", "decline_key",
                   "decline_next"}),
        ("next", "decline_next"),
        True,
    ),
    # optional short voice comment → a transcription job with the order id
    "survey_comment": (
        frozenset({"prompt", "next"}),
        frozenset({"max_seconds", "silence_seconds", "done_prompt"}),
        ("next",),
        True,
    ),
    # the current order's survey is complete (stored once); on to the next order
    "survey_done": (frozenset({"next"}), frozenset(), ("next",), False),
}

_PROMPT_FIELDS = (
    "prompt", "announce", "after_prompt", "invalid_prompt", "timeout_prompt", "done_prompt", "unknown_prompt", "error_prompt",
)

#: condition keys a branch case may test (see engine.Conditions)
CONDITION_KEYS = frozenset(
    {"time", "days", "setting", "caller_in", "var", "var_set", "queue_full", "queue_wait_over", "queue_no_agents"}
)
_DIGITS = set("0123456789*#")
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _where(source: str, node: str | None) -> str:
    return f"{source}: node {node}" if node else source


def load_flow(
    path: str | Path,
    transfer_targets: Iterable[str] = DEFAULT_TRANSFER_TARGETS,
    queues: Iterable[str] = ("12345",),
) -> Flow:
    path = Path(path)
    source = str(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise FlowError([f"{source}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        raise FlowError([f"{source}: not valid YAML: {exc}"]) from None
    return build_flow(data, source, hashlib.sha256(raw_bytes).hexdigest()[:12], transfer_targets, queues)


def build_flow(
    data: Any,
    source: str,
    digest: str,
    transfer_targets: Iterable[str] = DEFAULT_TRANSFER_TARGETS,
    queues: Iterable[str] = ("12345",),
) -> Flow:
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise FlowError([f"{source}: a flow file must be a mapping with flow, start, nodes"])
    unknown_top = set(data) - {"flow", "description", "version", "prompts", "start", "nodes", "settings"}
    if unknown_top:
        problems.append(f"{source}: unknown top-level key(s) {', '.join(sorted(map(str, unknown_top)))}")
    name = data.get("flow")
    if not isinstance(name, str) or not name:
        problems.append(f"{source}: 'flow' (the flow's name) is missing")
        name = ""
    prompts = data.get("prompts") or {}
    if not isinstance(prompts, Mapping) or not all(isinstance(v, str) and v.strip() for v in prompts.values()):
        problems.append(f"{source}: 'prompts' must map prompt names to their (non-empty) text")
        prompts = {}
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, Mapping) or not raw_nodes:
        problems.append(f"{source}: 'nodes' is missing or empty")
        raise FlowError(problems)
    start = data.get("start")
    if start not in raw_nodes:
        problems.append(f"{source}: start node {start!r} does not exist")

    targets = set(transfer_targets)
    queue_names = set(queues)
    nodes: dict[str, Node] = {}
    for node_id, spec in raw_nodes.items():
        node_id = str(node_id)
        where = _where(source, node_id)
        if not isinstance(spec, Mapping) or "type" not in spec:
            problems.append(f"{where}: must be a mapping with a 'type'")
            continue
        kind = spec["type"]
        if kind not in NODE_SCHEMAS:
            problems.append(f"{where}: unknown node type {kind!r} (known: {', '.join(sorted(NODE_SCHEMAS))})")
            continue
        required, optional, _next, _input = NODE_SCHEMAS[kind]
        fields = {k: v for k, v in spec.items() if k != "type"}
        for missing in sorted(required - set(fields)):
            problems.append(f"{where}: {kind} node needs '{missing}'")
        for extra in sorted(set(fields) - required - optional):
            problems.append(f"{where}: {kind} node has unknown field '{extra}'")
        for prompt_field in _PROMPT_FIELDS:
            prompt = fields.get(prompt_field)
            if prompt is not None and prompt not in prompts:
                problems.append(f"{where}: prompt {prompt!r} has no text under 'prompts'")
        if kind == "transfer" and fields.get("target") not in targets:
            problems.append(
                f"{where}: transfer target {fields.get('target')!r} is not a dialplan target "
                f"({', '.join(sorted(targets))})"
            )
        if kind == "queue":
            queue = str(fields.get("queue", next(iter(sorted(queue_names)), "")))
            if queue not in queue_names:
                problems.append(f"{where}: queue {queue!r} is not configured ({', '.join(sorted(queue_names))})")
            priority = fields.get("priority", 0)
            if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 100:
                problems.append(f"{where}: priority must be an integer 0..100")
        problems.extend(_check_fields(where, kind, fields))
        nodes[node_id] = Node(node_id, kind, fields)

    for node in nodes.values():
        if any(p.startswith(_where(source, node.id) + ":") for p in problems):
            continue
        for target in successors(node):
            if target not in raw_nodes:
                problems.append(f"{_where(source, node.id)}: points to unknown node {target!r}")

    if any(n.type in ("order_status", "caller_lookup") for n in nodes.values()):
        from .engine import ORDER_STATUSES

        for needed in ("order_intro", "status_unknown", *(f"status_{key}" for key in ORDER_STATUSES)):
            if needed not in prompts:
                problems.append(f"{source}: work-order status is spoken, so prompt {needed!r} needs a text")
    if any(n.type == "survey_intro" for n in nodes.values()):
        for needed in ("topic_other", "date_month", "date_day"):
            if needed not in prompts:
                problems.append(f"{source}: survey introductions name topic and date, so prompt {needed!r} needs a text")
    if not problems:
        problems.extend(_graph_problems(source, start, nodes))
    if problems:
        raise FlowError(problems)
    settings = data.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise FlowError([f"{source}: 'settings' must be a mapping"])
    speech_problems = _speech_problems(source, settings.get("speech"))
    topics = settings.get("topics")
    if topics is not None and not (isinstance(topics, Mapping) and all(f"topic_{v}" in prompts for v in topics.values())):
        speech_problems.append(f"{source}: settings.topics must map topic names to keys with a topic_<key> prompt")
    if speech_problems:
        raise FlowError(speech_problems)
    version = str(data.get("version", "")).strip()
    return Flow(
        name=name,
        version=f"{version}+{digest}" if version else digest,
        source=source,
        start=start,
        nodes=nodes,
        prompts=dict(prompts),
        settings=dict(settings),
    )


def _check_fields(where: str, kind: str, fields: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []

    def positive_int(name: str, upper: int) -> None:
        value = fields.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= upper):
            problems.append(f"{where}: '{name}' must be an integer 1..{upper}")

    for name, upper in (("timeout_ms", 60000), ("max_digits", 32), ("min_digits", 32), ("max_seconds", 600),
                        ("silence_seconds", 60)):
        positive_int(name, upper)
    retries = fields.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 5):
        problems.append(f"{where}: 'retries' must be an integer 0..5")
    if kind == "menu":
        options = fields.get("options")
        if not isinstance(options, Mapping) or not options:
            problems.append(f"{where}: 'options' must map keys to nodes")
        else:
            for key in options:
                key = str(key)
                if len(key) != 1 or key not in _DIGITS:
                    problems.append(f"{where}: option key {key!r} is not one DTMF key")
                elif key in ("*", "0"):
                    problems.append(f"{where}: key {key!r} is reserved ('*' repeats, '0' reaches an agent)")
    if kind == "prompt" and fields.get("keys") is not None:
        keys = fields["keys"]
        if not isinstance(keys, Mapping) or any(len(str(k)) != 1 or str(k) not in _DIGITS for k in keys):
            problems.append(f"{where}: 'keys' must map single DTMF keys to nodes")
    if kind == "input":
        terminator = fields.get("terminator", "#")
        if terminator not in ("#", "*", ""):
            problems.append(f"{where}: terminator must be '#', '*' or ''")
        if fields.get("min_digits", 1) > fields.get("max_digits", 32):
            problems.append(f"{where}: min_digits is larger than max_digits")
    if kind == "survey_question":
        from ..surveys.model import ANSWERS, NO_RESPONSE

        question = fields.get("question")
        answers = fields.get("answers")
        if question not in ANSWERS:
            problems.append(f"{where}: question must be one of {', '.join(ANSWERS)}")
        elif not isinstance(answers, Mapping) or not answers:
            problems.append(f"{where}: 'answers' must map keys to answers")
        else:
            for key, answer in answers.items():
                if len(str(key)) != 1 or str(key) not in "123456789":
                    problems.append(f"{where}: answer key {key!r} is not one of the keys 1-9")
                if answer not in ANSWERS[question] or answer == NO_RESPONSE:
                    choices = ", ".join(a for a in ANSWERS[question] if a != NO_RESPONSE)
                    problems.append(f"{where}: answer {answer!r} is not an answer to {question} ({choices})")
        decline = fields.get("decline_key")
        if (decline is None) != (fields.get("decline_next") is None):
            problems.append(f"{where}: 'decline_key' and 'decline_next' go together")
        elif decline is not None and (len(str(decline)) != 1 or str(decline) not in "123456789"):
            problems.append(f"{where}: decline_key {decline!r} is not one of the keys 1-9")
        elif decline is not None and isinstance(answers, Mapping) and str(decline) in {str(k) for k in answers}:
            problems.append(f"{where}: decline_key {decline!r} is also an answer key")
        if "speech" in fields and not isinstance(fields["speech"], bool):
            problems.append(f"{where}: 'speech' must be true or false")
        seconds = fields.get("speech_seconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= 10):
            problems.append(f"{where}: 'speech_seconds' must be an integer 1..10")
    if kind in ("input", "order_status") and not _is_name(fields.get("variable")):
        problems.append(f"{where}: 'variable' must be a name (letters, digits, _)")
    if kind == "set":
        variables = fields.get("variables")
        if not isinstance(variables, Mapping) or not all(_is_name(k) for k in variables):
            problems.append(f"{where}: 'variables' must map names to values")
    if kind == "branch":
        cases = fields.get("cases")
        if not isinstance(cases, list) or not cases:
            problems.append(f"{where}: 'cases' must be a list of {{when, next}}")
        else:
            for index, case in enumerate(cases):
                if not isinstance(case, Mapping) or set(case) != {"when", "next"} or not isinstance(case["when"], Mapping):
                    problems.append(f"{where}: case {index + 1} must have exactly 'when' (a mapping) and 'next'")
                    continue
                unknown = set(case["when"]) - CONDITION_KEYS
                if unknown:
                    problems.append(f"{where}: case {index + 1} has unknown condition(s) {', '.join(sorted(unknown))}")
                days = case["when"].get("days")
                if days is not None and days not in ("workdays", "holidays") and not (
                    isinstance(days, list) and all(str(d)[:3].lower() in _DAY_NAMES for d in days)
                ):
                    problems.append(f"{where}: case {index + 1}: days must be workdays, holidays or [mon, ...]")
                time_window = case["when"].get("time")
                if time_window is not None and not _is_time_window(time_window):
                    problems.append(f"{where}: case {index + 1}: time must look like '08:00-18:00'")
    return problems


def _speech_problems(source: str, speech: Any) -> list[str]:
    """``settings.speech``: language → question → {spoken word: answer} (grammar of the spoken fallback)."""
    if speech is None:
        return []
    from ..surveys.model import ANSWERS, NO_RESPONSE

    if not isinstance(speech, Mapping):
        return [f"{source}: settings.speech must map languages to questions"]
    problems = []
    for language, questions in speech.items():
        if not isinstance(questions, Mapping):
            problems.append(f"{source}: settings.speech.{language} must map questions to words")
            continue
        for question, words in questions.items():
            if question not in ANSWERS or not isinstance(words, Mapping) or not words:
                problems.append(f"{source}: settings.speech.{language}.{question}: unknown question or no words")
                continue
            for word, answer in words.items():
                if not isinstance(word, str) or not word.strip() or answer not in ANSWERS[question] or answer == NO_RESPONSE:
                    problems.append(f"{source}: settings.speech.{language}.{question}: {word!r} → {answer!r} "
                                    "is not a word and an answer")
    return problems


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.replace("_", "a").isalnum() and value.isascii()


def _is_time_window(value: Any) -> bool:
    import re

    return isinstance(value, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", value) is not None


def successors(node: Node) -> list[str]:
    out = [node.get(f) for f in NODE_SCHEMAS[node.type][2] if node.get(f) is not None]
    if node.type == "menu":
        out.extend(str(v) for v in (node.get("options") or {}).values())
    if node.type == "prompt":
        out.extend(str(v) for v in (node.get("keys") or {}).values())
    if node.type == "branch":
        out.extend(str(case.get("next")) for case in node.get("cases") or [] if isinstance(case, Mapping))
    return out


def _graph_problems(source: str, start: str, nodes: Mapping[str, Node]) -> list[str]:
    problems = []
    reachable: set[str] = set()
    stack = [start]
    while stack:
        node_id = stack.pop()
        if node_id in reachable:
            continue
        reachable.add(node_id)
        stack.extend(successors(nodes[node_id]))
    for node_id in nodes:
        if node_id not in reachable:
            problems.append(f"{_where(source, node_id)}: unreachable from start node {start!r}")
    # A cycle through nodes that never wait for the caller would spin forever.
    no_input = {nid for nid, n in nodes.items() if not NODE_SCHEMAS[n.type][3]}
    state: dict[str, int] = {}

    def visit(node_id: str, trail: list[str]) -> None:
        state[node_id] = 1
        for nxt in successors(nodes[node_id]):
            if nxt not in no_input:
                continue
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node_id, nxt]
                problems.append(f"{_where(source, nxt)}: loop with no caller input: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node_id] = 2

    for node_id in sorted(no_input):
        if node_id not in state:
            visit(node_id, [node_id])
    return problems


def load_flows(directory: str | Path, **kwargs: Any) -> dict[str, Flow]:
    """Load every ``*.yaml`` flow of a directory; all problems reported together."""
    directory = Path(directory)
    flows: dict[str, Flow] = {}
    problems: list[str] = []
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise FlowError([f"{directory}: no flow files (*.yaml)"])
    for path in files:
        try:
            flow = load_flow(path, **kwargs)
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        if flow.name in flows:
            problems.append(f"{path}: flow name {flow.name!r} already defined in {flows[flow.name].source}")
            continue
        flows[flow.name] = flow
    if problems:
        raise FlowError(problems)
    return flows
