"""The flow set as a diagram: Mermaid through transitions' diagram extension, or Graphviz DOT."""

from __future__ import annotations

import re
from typing import Any

from transitions.extensions.diagrams import HierarchicalGraphMachine
from transitions.extensions.nesting import NestedState

from engine.flows.model import RETURN, FlowSet

ANY_STATE = "any_state"
RETURN_NODE = "return_to_caller"
SEP = "__"  # state names contain "_" (transitions' default separator), so nest with "__"
_STYLE = re.compile(r"^\s*(classDef|Class) ")


class _State(NestedState):
    separator = SEP


class _Machine(HierarchicalGraphMachine):
    state_cls = _State


class _Model:
    pass


def _node(name: str) -> str:
    return RETURN_NODE if name == RETURN else name.replace(".", SEP)


def edges(flow_set: FlowSet) -> list[tuple[str, str, str]]:
    """(source, event, dest) for every transition; global events start from one 'any state' node."""
    out: list[tuple[str, str, str]] = []
    for name, st in flow_set.states.items():
        for event, alternatives in st.on.items():
            for t in alternatives:
                out.append((name, event, t.to))
                if t.then and t.to != RETURN:
                    # After the called state returns, the user goes on to `then`.
                    out.append((t.to, "then", t.then))
    for event, alternatives in flow_set.bot.global_on.items():
        for t in alternatives:
            out.append((ANY_STATE, event, t.to))
    return out


def mermaid(flow_set: FlowSet) -> str:
    states: list[Any] = [{"name": flow, "children": [s.split(".", 1)[1] for s in spec.states]}
                         for flow, spec in flow_set.flows.items()]
    states += [ANY_STATE, RETURN_NODE]
    machine = _Machine(model=_Model(), states=states, initial=_node(flow_set.bot.start),
                       auto_transitions=False, graph_engine="mermaid", show_state_attributes=False)
    for source, event, dest in edges(flow_set):
        machine.add_transition(event, _node(source), _node(dest))
    graph: Any = machine.get_combined_graph(title="supportbot flows")
    # Styling marks the model's "current" state; a diagram of flows has none, so drop it all.
    lines = [line for line in str(graph.source).splitlines() if not _STYLE.match(line)]
    return "\n".join(lines) + "\n"


def dot(flow_set: FlowSet) -> str:
    lines = ["digraph flows {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="sans-serif"];']
    for flow, spec in flow_set.flows.items():
        lines.append(f'  subgraph "cluster_{flow}" {{')
        lines.append(f'    label="{flow}";')
        for name in spec.states:
            lines.append(f'    "{_node(name)}" [label="{name.split(".", 1)[1]}"];')
        lines.append("  }")
    lines.append(f'  "{ANY_STATE}" [shape=ellipse, label="any state"];')
    lines.append(f'  "{RETURN_NODE}" [shape=ellipse, label="return"];')
    lines.append(f'  start [shape=point]; start -> "{_node(flow_set.bot.start)}";')
    for source, event, dest in edges(flow_set):
        lines.append(f'  "{_node(source)}" -> "{_node(dest)}" [label="{event}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
