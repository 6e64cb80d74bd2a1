"""Load and validate flow files; a broken flow fails at start-up, not mid-call.

Every problem is reported as ``FILE: node NODE: PROBLEM`` and all problems of
a file are reported at once. Every field has a type (:data:`.schema.FIELD_TYPES`,
:data:`.schema.CONDITION_TYPES`) checked before its value is looked at (:mod:`.fields`), so a
wrong-typed field is a :class:`FlowError` at load — never a crash at load or mid-call. The graph
checks (unknown, unreachable, loops with no input) are in :mod:`.graph`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .fields import field_problems, speech_problems
from .graph import graph_problems, successors
from .model import Flow, Node
from .schema import (
    CONDITION_TYPES, DEFAULT_TRANSFER_TARGETS, FIELD_TYPES, NODE_SCHEMAS, describe, is_number, is_one_line,
    type_problem, where_in,
)

__all__ = [
    "CONDITION_TYPES", "DEFAULT_TRANSFER_TARGETS", "FIELD_TYPES", "NODE_SCHEMAS", "UNCHECKED", "FlowError",
    "build_flow", "load_flow", "load_flows",
]


class FlowError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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
    if not (isinstance(version, str) or is_number(version)):
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
        elif not is_one_line(prompt) or not prompt:
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
        where = where_in(source, str(node_id))
        try:
            node, node_problems = _check_node(where, node_id, spec, prompts, targets, queues)
        except Exception as exc:  # a gap in the checks: this node's problem, named, never a traceback
            node, node_problems = None, [f"{where}: {UNCHECKED}: {type(exc).__name__}: {exc}"]
        problems.extend(node_problems)
        if node is not None:
            nodes[node.id] = node

    for node in nodes.values():
        if any(p.startswith(where_in(source, node.id) + ":") for p in problems):
            continue
        for target in successors(node):
            if target not in node_names:
                problems.append(f"{where_in(source, node.id)}: points to unknown node {target!r}")

    if any(n.type in ("order_status", "caller_lookup") for n in nodes.values()):
        from .engine import ORDER_STATUSES

        for needed in ("order_intro", "status_unknown", *(f"status_{key}" for key in ORDER_STATUSES)):
            if needed not in prompts:
                problems.append(f"{source}: work-order status is spoken, so prompt {needed!r} needs a text")
    if any(n.type == "survey_intro" for n in nodes.values()):
        for needed in ("topic_other", "date_month", "date_day"):
            if needed not in prompts:
                problems.append(
                    f"{source}: survey introductions name topic and date, so prompt {needed!r} needs a text")
    if not problems:
        problems.extend(graph_problems(source, start, nodes))
    if problems:
        raise FlowError(problems)
    settings = data.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise FlowError([f"{source}: 'settings' must be a mapping, not {describe(settings)}"])
    settings_problems = speech_problems(source, settings.get("speech"))
    topics = settings.get("topics")
    if topics is not None and not (
        isinstance(topics, Mapping) and all(isinstance(v, str) and f"topic_{v}" in prompts for v in topics.values())
    ):
        settings_problems.append(f"{source}: settings.topics must map topic names to keys with a topic_<key> prompt")
    if settings_problems:
        raise FlowError(settings_problems)
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
    if not node_id or not is_one_line(node_id):
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
            problems.append(type_problem(where, name, expected, value))
    problems.extend(field_problems(where, kind, typed, prompts, targets, queues))
    return Node(node_id, kind, fields), problems


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
