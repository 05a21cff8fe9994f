"""The map of the flows (engine.flows.readable) as text: Mermaid for the README, DOT for Graphviz.

Steps are named by what they say, edges by the buttons or input that take them; `to: return`
and going back are dashed; events that work on every step are one legend, not edges.
"""

from __future__ import annotations

import re
from typing import Any

from engine.flows.readable import BACK

LEGEND = "any_step"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

# Mermaid node shapes by kind of step: open and close around the quoted title.
_SHAPES = {
    "ask": ("(", ")"), "pick": ("[[", "]]"), "buttons": ("[", "]"), "action": ("{{", "}}"),
    "end": ("([", "])"), "stub": (">", "]"), "return": (">", "]"),
}


def node_id(node: str) -> str:
    """An identifier Mermaid and DOT take: create_ticket.describe → create_ticket__describe."""
    return _UNSAFE.sub("_", node.replace(".", "__").replace(">", "_to_"))


def _flows(model: dict[str, Any], flow: str | None) -> list[dict[str, Any]]:
    if flow is None:
        return list(model["flows"].values())
    if flow not in model["flows"]:
        raise KeyError(flow)
    return [model["flows"][flow]]


def display_title(node: dict[str, Any]) -> str:
    if node["kind"] == "stub":
        return f"↗ {node['flow']}: {node['title']}"
    if node["kind"] == "return":
        return f"↩ {node['title']}"
    return str(node["title"])


def legend_lines(model: dict[str, Any]) -> list[str]:
    return [f"{', '.join(item['labels'])} → {item['title']}" for item in model.get("global", [])]


def _mq(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def mermaid(model: dict[str, Any], flow: str | None = None) -> str:
    """A Mermaid flowchart of every flow (or one), left to right."""
    lines = ["flowchart LR"]
    for spec in _flows(model, flow):
        lines.append(f"  subgraph flow_{node_id(spec['name'])}[{_mq(spec['name'])}]")
        for node in spec["nodes"]:
            opening, closing = _SHAPES.get(node["kind"], ("[", "]"))
            lines.append(f"    {node_id(node['id'])}{opening}{_mq(display_title(node))}{closing}")
        lines.append("  end")
        for e in spec["edges"]:
            arrow = "-.->" if e["kind"] == BACK else "-->"
            lines.append(f"  {node_id(e['from'])} {arrow}|{_mq(e['label'])}| {node_id(e['to'])}")
    legend = legend_lines(model)
    if legend and flow is None:
        lines.append(f"  subgraph {LEGEND}[{_mq('На любом шаге')}]")
        lines += [f"    {LEGEND}_{i}[{_mq(line)}]" for i, line in enumerate(legend, 1)]
        lines.append("  end")
    return "\n".join(lines) + "\n"


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_SHAPES = {"ask": "box", "pick": "box3d", "buttons": "box", "action": "hexagon", "end": "box",
               "stub": "cds", "return": "cds"}


def dot(model: dict[str, Any], flow: str | None = None) -> str:
    """Graphviz DOT of every flow (or one), a cluster per flow; back edges do not rank."""
    lines = ["digraph flows {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="sans-serif"];',
             '  edge [fontname="sans-serif", fontsize=10];']
    for spec in _flows(model, flow):
        lines.append(f'  subgraph "cluster_{spec["name"]}" {{')
        lines.append(f"    label={_dq(spec['name'])};")
        for node in spec["nodes"]:
            style = ', style="rounded,dashed"' if node["stub"] else ""
            lines.append(f'    {_dq(node_id(node["id"]))} [label={_dq(display_title(node))}, '
                         f"shape={_DOT_SHAPES.get(node['kind'], 'box')}{style}];")
        lines.append("  }")
        for e in spec["edges"]:
            extra = ", style=dashed, constraint=false" if e["kind"] == BACK else ""
            lines.append(f"  {_dq(node_id(e['from']))} -> {_dq(node_id(e['to']))} [label={_dq(e['label'])}{extra}];")
    legend = legend_lines(model)
    if legend and flow is None:
        text = "На любом шаге:\\l" + "".join(_dq(line)[1:-1] + "\\l" for line in legend)
        lines.append(f'  {LEGEND} [shape=note, label="{text}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
