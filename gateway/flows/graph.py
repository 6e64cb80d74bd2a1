"""A flow as a graph: where each node can lead, what start cannot reach, loops that never wait for the caller."""
from __future__ import annotations

from collections.abc import Mapping

from .model import Node
from .schema import NODE_SCHEMAS, where_in


def successors(node: Node) -> list[str]:
    out = [node.get(f) for f in NODE_SCHEMAS[node.type][2] if node.get(f) is not None]
    if node.type == "menu":
        out.extend(str(v) for v in (node.get("options") or {}).values())
    if node.type == "prompt":
        out.extend(str(v) for v in (node.get("keys") or {}).values())
    if node.type == "branch":
        out.extend(str(case.get("next")) for case in node.get("cases") or [] if isinstance(case, Mapping))
    return out


def graph_problems(source: str, start: str, nodes: Mapping[str, Node]) -> list[str]:
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
            problems.append(f"{where_in(source, node_id)}: unreachable from start node {start!r}")
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
                problems.append(f"{where_in(source, nxt)}: loop with no caller input: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node_id] = 2

    for node_id in sorted(no_input):
        if node_id not in state:
            visit(node_id, [node_id])
    return problems
