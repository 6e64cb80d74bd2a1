"""Load and validate flow files; a broken flow fails at start-up, not mid-call.

Every problem is reported as ``FILE: node NODE: PROBLEM`` and all problems of
a file are reported at once. Every field has a type (:data:`FIELD_TYPES`,
:data:`CONDITION_TYPES`) checked before its value is looked at, so a wrong-typed
field is a :class:`FlowError` at load — never a crash at load or mid-call.
"""
from __future__ import annotations

import hashlib
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .model import Flow, Node

__all__ = [
    "CONDITION_TYPES", "DEFAULT_TRANSFER_TARGETS", "FIELD_TYPES", "NODE_SCHEMAS", "UNCHECKED", "FlowError",
    "build_flow", "load_flow", "load_flows",
]

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



def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


class FieldType(NamedTuple):
    """What a field must be, in the words an error message uses."""

    what: str
    accepts: Callable[[Any], bool]


TEXT = FieldType("text", lambda value: isinstance(value, str))
INTEGER = FieldType("an integer", _is_int)
NUMBER = FieldType("a number", _is_number)
BOOLEAN = FieldType("true or false", lambda value: isinstance(value, bool))
MAPPING = FieldType("a mapping", lambda value: isinstance(value, Mapping))
LIST = FieldType("a list", lambda value: isinstance(value, list))
DAYS = FieldType("workdays, holidays or a list of day names", lambda value: isinstance(value, (str, list)))
KEY = FieldType("a key", lambda value: _key_text(value) is not None)

#: the type of every node field (a field name means the same thing in every node type)
FIELD_TYPES: dict[str, FieldType] = {
    **{name: TEXT for name in _PROMPT_FIELDS},
    # names of other nodes
    "next": TEXT, "default": TEXT, "done": TEXT, "decline_next": TEXT,
    "decline_key": KEY,
    "keys": MAPPING, "options": MAPPING, "answers": MAPPING, "variables": MAPPING, "cases": LIST,
    "retries": INTEGER, "timeout_ms": INTEGER, "max_digits": INTEGER, "min_digits": INTEGER,
    "max_seconds": INTEGER, "silence_seconds": INTEGER, "speech_seconds": INTEGER, "priority": INTEGER,
    "terminator": TEXT, "variable": TEXT, "target": TEXT, "reason": TEXT, "queue": TEXT, "choice": TEXT,
    "priority_list": TEXT, "question": TEXT,
    "speech": BOOLEAN,
}

#: condition keys a branch case may test (see engine.FlowRunner._matches), with their types
CONDITION_TYPES: dict[str, FieldType] = {
    "time": TEXT,
    "days": DAYS,
    "setting": TEXT,
    "caller_in": TEXT,
    "var": MAPPING,
    "var_set": TEXT,
    "queue_full": BOOLEAN,
    "queue_wait_over": NUMBER,
    "queue_no_agents": BOOLEAN,
}
CONDITION_KEYS = frozenset(CONDITION_TYPES)
#: flow variables the engine keeps itself; a ``set`` node may not overwrite them
ENGINE_VARIABLES = frozenset({"choices", "sv_orders", "sv_index", "sv_answered"})
_DIGITS = "0123456789*#"
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def describe(value: Any) -> str:
    """A value as a flow author wrote it: its YAML kind and (shortened) text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    kind = ("an integer" if _is_int(value) else "a number" if isinstance(value, float) else "text"
            if isinstance(value, str) else "a mapping" if isinstance(value, Mapping) else "a list"
            if isinstance(value, list) else type(value).__name__)
    text = _shown(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


#: ``repr`` cut short at every level: YAML aliases can make a few hundred bytes a list of billions of items
#: (the "billion laughs"), whose full ``repr`` would never end
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 8
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = 80
_shown = _SHORT.repr


def _type_problem(where: str, name: str, expected: FieldType, value: Any) -> str:
    hint = " (put it in quotes)" if expected is TEXT and isinstance(value, (int, float)) else ""
    return f"{where}: '{name}' must be {expected.what}, not {describe(value)}{hint}"


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
        data = yaml.load(raw_bytes, Loader=_FlowLoader)
    except yaml.YAMLError as exc:
        raise FlowError([f"{source}: not valid YAML: {exc}"]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise FlowError([f"{source}: not valid YAML: nested too deeply"]) from None
    except ValueError as exc:  # PyYAML lets datetime()'s refusals through (2024-13-45)
        raise FlowError([f"{source}: not valid YAML: {exc}"]) from None
    return build_flow(data, source, hashlib.sha256(raw_bytes).hexdigest()[:12], transfer_targets, queues)


class _FlowLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, but an integer has at most 4300 decimal digits, the most Python reads or
    writes: PyYAML lets ``int()``'s ValueError through, and ``0x…`` makes integers no message could show."""

    def construct_yaml_int(self, node):
        try:
            value = super().construct_yaml_int(node)
            if value.bit_length() > 14_000:  # 4300 digits are 14284 bits: only so large a number may be too long
                str(value)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, "an integer of more than 4300 digits", node.start_mark) from None
        return value


_FlowLoader.add_constructor("tag:yaml.org,2002:int", _FlowLoader.construct_yaml_int)

#: what a problem says when a check itself failed: still a clear error naming the file and node, never a traceback
UNCHECKED = "could not be checked"
_TOP_LEVEL_KEYS = frozenset({"flow", "description", "version", "prompts", "start", "nodes", "settings"})


def build_flow(
    data: Any,
    source: str,
    digest: str,
    transfer_targets: Iterable[str] = DEFAULT_TRANSFER_TARGETS,
    queues: Iterable[str] = ("12345",),
) -> Flow:
    """Validate flow data as YAML gives it; the only exception this raises is :class:`FlowError`."""
    try:
        return _build_flow(data, source, digest, frozenset(transfer_targets), frozenset(queues))
    except FlowError:
        raise
    except Exception as exc:  # a gap in the checks below: reported like any other problem of the file
        raise FlowError([f"{source}: {UNCHECKED}: {type(exc).__name__}: {exc}"]) from exc


def _build_flow(data: Any, source: str, digest: str, targets: frozenset[str], queues: frozenset[str]) -> Flow:
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise FlowError([f"{source}: a flow file must be a mapping with flow, start, nodes"])
    unknown_top = set(data) - _TOP_LEVEL_KEYS
    if unknown_top:
        problems.append(f"{source}: unknown top-level key(s) {', '.join(sorted(map(str, unknown_top)))}")
    name = data.get("flow")
    if name is None or name == "":
        problems.append(f"{source}: 'flow' (the flow's name) is missing")
        name = ""
    elif not isinstance(name, str):
        problems.append(f"{source}: 'flow' (the flow's name) must be text, not {describe(name)}")
        name = ""
    version = data.get("version", "")
    if not (isinstance(version, str) or _is_number(version)):
        problems.append(f"{source}: 'version' must be text or a number, not {describe(version)}")
        version = ""
    if not isinstance(data.get("description", ""), str):
        problems.append(f"{source}: 'description' must be text, not {describe(data['description'])}")
    prompts = data.get("prompts")
    if prompts is None:
        prompts = {}
    if not isinstance(prompts, Mapping):
        problems.append(f"{source}: 'prompts' must map prompt names to their (non-empty) text, not {describe(prompts)}")
        prompts = {}
    for prompt, text in prompts.items():
        if not isinstance(prompt, str):
            problems.append(f"{source}: prompts: a prompt name must be text, not {describe(prompt)}")
        elif not _is_one_line(prompt) or not prompt:
            problems.append(f"{source}: prompts: a prompt name must be one line of text, not {prompt!r}")
        elif not isinstance(text, str) or not text.strip():
            problems.append(f"{source}: prompts: {prompt!r} must be (non-empty) text, not {describe(text)}")
    prompts = {k: v for k, v in prompts.items() if isinstance(k, str) and isinstance(v, str) and v.strip()}
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, Mapping) or not raw_nodes:
        problems.append(f"{source}: 'nodes' is missing or empty")
        raise FlowError(problems)
    node_names = {node_id for node_id in raw_nodes if isinstance(node_id, str)}
    start = data.get("start")
    if start is not None and not isinstance(start, str):
        problems.append(f"{source}: 'start' must be the name of a node, not {describe(start)}")
    elif start not in node_names:
        problems.append(f"{source}: start node {start!r} does not exist")

    nodes: dict[str, Node] = {}
    for node_id, spec in raw_nodes.items():
        where = _where(source, str(node_id))
        try:
            node, node_problems = _check_node(where, node_id, spec, prompts, targets, queues)
        except Exception as exc:  # a gap in the checks: this node's problem, named, never a traceback
            node, node_problems = None, [f"{where}: {UNCHECKED}: {type(exc).__name__}: {exc}"]
        problems.extend(node_problems)
        if node is not None:
            nodes[node.id] = node

    for node in nodes.values():
        if any(p.startswith(_where(source, node.id) + ":") for p in problems):
            continue
        for target in successors(node):
            if target not in node_names:
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
    settings = data.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise FlowError([f"{source}: 'settings' must be a mapping, not {describe(settings)}"])
    speech_problems = _speech_problems(source, settings.get("speech"))
    topics = settings.get("topics")
    if topics is not None and not (
        isinstance(topics, Mapping) and all(isinstance(v, str) and f"topic_{v}" in prompts for v in topics.values())
    ):
        speech_problems.append(f"{source}: settings.topics must map topic names to keys with a topic_<key> prompt")
    if speech_problems:
        raise FlowError(speech_problems)
    version = str(version).strip()
    return Flow(
        name=name,
        version=f"{version}+{digest}" if version else digest,
        source=source,
        start=start,
        nodes=nodes,
        prompts=dict(prompts),
        settings=dict(settings),
    )


def _check_node(
    where: str, node_id: Any, spec: Any, prompts: Mapping[str, str], targets: frozenset[str], queues: frozenset[str]
) -> tuple[Node | None, list[str]]:
    """One node: its shape, the type of every field, then what the values mean."""
    if not isinstance(node_id, str):
        return None, [f"{where}: a node's name must be text, not {describe(node_id)} (put it in quotes)"]
    if not node_id or not _is_one_line(node_id):
        # it goes into the agent's screen pop (a channel variable): one line
        return None, [f"{where}: a node's name must be one line of text, not {node_id!r}"]
    if not isinstance(spec, Mapping) or "type" not in spec:
        return None, [f"{where}: must be a mapping with a 'type'"]
    kind = spec["type"]
    if not isinstance(kind, str):
        return None, [f"{where}: 'type' must be text, not {describe(kind)} (known: {', '.join(sorted(NODE_SCHEMAS))})"]
    if kind not in NODE_SCHEMAS:
        return None, [f"{where}: unknown node type {kind!r} (known: {', '.join(sorted(NODE_SCHEMAS))})"]
    required, optional, _next, _input = NODE_SCHEMAS[kind]
    fields = {k: v for k, v in spec.items() if k != "type"}
    problems: list[str] = []
    for missing in sorted(required - set(fields)):
        problems.append(f"{where}: {kind} node needs '{missing}'")
    for extra in sorted(set(fields) - required - optional, key=str):
        problems.append(f"{where}: {kind} node has unknown field '{extra}'")
    typed: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in required and name not in optional:
            continue
        expected = FIELD_TYPES[name]
        if expected.accepts(value):
            typed[name] = value
        else:
            problems.append(_type_problem(where, name, expected, value))
    problems.extend(_check_fields(where, kind, typed, prompts, targets, queues))
    return Node(node_id, kind, fields), problems


_RANGES = (
    ("timeout_ms", 1, 60000), ("max_digits", 1, 32), ("min_digits", 1, 32), ("max_seconds", 1, 600),
    ("silence_seconds", 1, 60), ("retries", 0, 5), ("priority", 0, 100), ("speech_seconds", 1, 10),
)


def _check_fields(
    where: str,
    kind: str,
    fields: Mapping[str, Any],
    prompts: Mapping[str, str],
    targets: frozenset[str] = DEFAULT_TRANSFER_TARGETS,
    queues: frozenset[str] = frozenset({"12345"}),
) -> list[str]:
    """What the values of a node's fields mean; ``fields`` holds only fields of the right type."""
    problems: list[str] = []
    for prompt_field in _PROMPT_FIELDS:
        if prompt_field in fields and fields[prompt_field] not in prompts:
            problems.append(f"{where}: prompt {fields[prompt_field]!r} has no text under 'prompts'")
    for name, low, high in _RANGES:
        if name in fields and not low <= fields[name] <= high:
            problems.append(f"{where}: '{name}' must be an integer {low}..{high}")
    if kind == "transfer" and "target" in fields and fields["target"] not in targets:
        problems.append(
            f"{where}: transfer target {fields['target']!r} is not a dialplan target ({', '.join(sorted(targets))})"
        )
    if kind in ("queue", "callback_request") and "queue" in fields and fields["queue"] not in queues:
        problems.append(f"{where}: queue {fields['queue']!r} is not configured ({', '.join(sorted(queues))})")
    if kind == "menu" and "options" in fields:
        if not fields["options"]:
            problems.append(f"{where}: 'options' must map keys to nodes")
        problems.extend(_key_map_problems(where, "option key", fields["options"], _DIGITS, "one DTMF key"))
        for key in fields["options"]:
            if _key_text(key) in ("*", "0"):
                problems.append(f"{where}: key {_key_text(key)!r} is reserved ('*' repeats, '0' reaches an agent)")
    if kind == "prompt" and "keys" in fields:
        problems.extend(_key_map_problems(where, "key", fields["keys"], _DIGITS, "one DTMF key"))
    if kind == "input":
        if fields.get("terminator", "#") not in ("#", "*", ""):
            problems.append(f"{where}: terminator must be '#', '*' or ''")
        if fields.get("min_digits", 1) > fields.get("max_digits", 32):
            problems.append(f"{where}: min_digits is larger than max_digits")
    if kind == "survey_question":
        problems.extend(_survey_question_problems(where, fields))
    if kind in ("input", "order_status") and "variable" in fields and not _is_name(fields["variable"]):
        problems.append(f"{where}: 'variable' must be a name (letters, digits, _)")
    if "choice" in fields and (not fields["choice"] or not _is_one_line(fields["choice"])):
        problems.append(f"{where}: 'choice' must be one line of text (it goes into the agent's screen pop)")
    if kind == "caller_lookup" and fields.get("priority_list") == "":
        problems.append(f"{where}: 'priority_list' must name a caller list")
    if kind == "set" and "variables" in fields:
        problems.extend(_variables_problems(where, fields["variables"]))
    if kind == "branch" and "cases" in fields:
        cases = fields["cases"]
        if not cases:
            problems.append(f"{where}: 'cases' must be a list of {{when, next}}")
        for index, case in enumerate(cases):
            problems.extend(_case_problems(f"{where}: case {index + 1}", case))
    return problems


def _key_text(key: Any) -> str | None:
    """A DTMF key as written in YAML: ``"1"``, ``"#"`` or the integer 1; anything else is not a key."""
    if isinstance(key, str) and len(key) == 1:
        return key
    if _is_int(key) and 0 <= key <= 9:
        return str(key)
    return None


def _key_map_problems(
    where: str, what: str, mapping: Mapping[Any, Any], allowed: str, kind_of_key: str, leads_to: str = "a node name"
) -> list[str]:
    """``{key: value}`` maps of menus, prompts and survey answers: one key each, values are text."""
    problems = []
    seen: set[str] = set()
    for key, target in mapping.items():
        text = _key_text(key)
        if text is None or text not in allowed:
            problems.append(f"{where}: {what} {key!r} is not {kind_of_key}")
        elif text in seen:
            problems.append(f"{where}: {what} {text!r} is given twice")
        else:
            seen.add(text)
        if not isinstance(target, str):
            problems.append(f"{where}: {what} {key!r} must lead to {leads_to} (text), not {describe(target)}")
    return problems


def _survey_question_problems(where: str, fields: Mapping[str, Any]) -> list[str]:
    from ..surveys.model import ANSWERS, NO_RESPONSE

    problems = []
    question = fields.get("question")
    if question is not None and question not in ANSWERS:
        problems.append(f"{where}: question must be one of {', '.join(ANSWERS)}")
    elif question is not None and "answers" in fields:
        answers = fields["answers"]
        if not answers:
            problems.append(f"{where}: 'answers' must map keys to answers")
        problems.extend(
            _key_map_problems(where, "answer key", answers, "123456789", "one of the keys 1-9", leads_to="an answer")
        )
        for answer in answers.values():
            if isinstance(answer, str) and (answer not in ANSWERS[question] or answer == NO_RESPONSE):
                choices = ", ".join(a for a in ANSWERS[question] if a != NO_RESPONSE)
                problems.append(f"{where}: answer {answer!r} is not an answer to {question} ({choices})")
    decline = fields.get("decline_key")
    if (decline is None) != (fields.get("decline_next") is None):
        problems.append(f"{where}: 'decline_key' and 'decline_next' go together")
    elif decline is not None and str(decline) not in "123456789":
        problems.append(f"{where}: decline_key {decline!r} is not one of the keys 1-9")
    elif decline is not None and isinstance(fields.get("answers"), Mapping) and str(decline) in {
            _key_text(k) for k in fields["answers"]}:
        problems.append(f"{where}: decline_key {decline!r} is also an answer key")
    return problems


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or _is_number(value)


def _variables_problems(where: str, variables: Mapping[Any, Any]) -> list[str]:
    problems = []
    for name, value in variables.items():
        if not _is_name(name):
            problems.append(f"{where}: variables: {describe(name)} is not a name (letters, digits, _)")
        elif name in ENGINE_VARIABLES:
            problems.append(f"{where}: variables: {name!r} is kept by the engine and cannot be set")
        elif name == "priority" and not (_is_int(value) and 0 <= value <= 100):
            problems.append(f"{where}: variables: 'priority' must be an integer 0..100, not {describe(value)}")
        elif not _is_scalar(value):
            problems.append(f"{where}: variables: {name!r} must be text, a number or true/false, not {describe(value)}")
        elif isinstance(value, str) and not _is_one_line(value):
            problems.append(f"{where}: variables: {name!r} must be one line of text (a channel variable's value)")
    return problems


def _case_problems(where: str, case: Any) -> list[str]:
    """One branch case: ``{when: {condition: value, ...}, next: node}``."""
    if not isinstance(case, Mapping) or set(case) != {"when", "next"}:
        return [f"{where} must have exactly 'when' (a mapping) and 'next'"]
    problems = []
    if not isinstance(case["next"], str):
        problems.append(_type_problem(where, "next", TEXT, case["next"]))
    when = case["when"]
    if not isinstance(when, Mapping):
        return problems + [f"{where} must have exactly 'when' (a mapping) and 'next'"]
    unknown = [key for key in when if key not in CONDITION_TYPES]
    if unknown:
        problems.append(f"{where} has unknown condition(s) {', '.join(sorted(map(str, unknown)))}")
    for key, value in when.items():
        expected = CONDITION_TYPES.get(key)
        if expected is None:
            continue
        if not expected.accepts(value):
            problems.append(_type_problem(where, key, expected, value))
        elif key == "days" and not _is_days(value):
            problems.append(f"{where}: days must be workdays, holidays or [mon, ...]")
        elif key == "time" and not _is_time_window(value):
            problems.append(f"{where}: time must look like '08:00-18:00'")
        elif key in ("setting", "caller_in") and not value:
            problems.append(f"{where}: '{key}' must not be empty")
        elif key == "var_set" and not _is_name(value):
            problems.append(f"{where}: 'var_set' must be a variable name (letters, digits, _)")
        elif key == "var":
            for name, expected_value in value.items():
                if not _is_name(name) or not _is_scalar(expected_value):
                    problems.append(f"{where}: var must map variable names to text, numbers or true/false; "
                                    f"{describe(name)}: {describe(expected_value)} is not")
        elif key == "queue_wait_over" and value < 0:
            problems.append(f"{where}: 'queue_wait_over' must be a number of seconds, 0 or more")
    return problems


def _is_days(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("workdays", "holidays")
    return bool(value) and all(
        isinstance(day, str) and (day.lower() in _DAY_NAMES or day.lower() in _FULL_DAY_NAMES) for day in value
    )


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
                    problems.append(f"{source}: settings.speech.{language}.{question}: {word!r} → {_shown(answer)} "
                                    "is not a word and an answer")
    return problems


def _is_one_line(text: str) -> bool:
    """No line break or NUL: such text cannot travel as an AGI argument (a prompt, a channel variable)."""
    return not any(c in text for c in "\r\n\x00")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.replace("_", "a").isalnum() and value.isascii()


def _is_time_window(value: Any) -> bool:
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
