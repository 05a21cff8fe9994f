"""The map of the flows as SVG, laid out in Python (no JS, no Graphviz).

A simple layered layout per flow: forward edges give the columns (longest path from the
roots), the main path (engine.flows.readable) runs straight along the top row, the other steps
go in the rows below, one box to a cell, so boxes never overlap. Back edges (`to: return`,
going back a step) are drawn as dashed curves under the flow.

Every step's group carries data-state, data-file, data-line and data-kind, for a page to show
the step's file:line, text and buttons when it is clicked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from engine.flows.readable import BACK

BOX_W, BOX_H = 190, 56
GAP_X, GAP_Y = 80, 44
PAD = 24
LINE_H = 15
TITLE_CHARS = 24  # a line of a box's title
HEADING_H = 34
BACK_STEP = 14  # each back edge curves a little lower than the one before

KIND_FILL = {
    "ask": "#e8f1fb", "pick": "#e9f6ec", "buttons": "#fdf5e3", "action": "#f1ecf8",
    "end": "#f3f3f3", "stub": "#ffffff", "return": "#ffffff",
}


@dataclass(frozen=True, slots=True)
class Box:
    id: str
    x: float
    y: float
    w: float = BOX_W
    h: float = BOX_H

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def layout(flow: dict[str, Any]) -> dict[str, Box]:
    """Boxes of one flow's nodes, with (0, 0) at the top left of the flow."""
    ids = [n["id"] for n in flow["nodes"]]
    forward = [(e["from"], e["to"]) for e in flow["edges"] if e["kind"] != BACK and e["from"] != e["to"]]
    layer = {i: 0 for i in ids}
    # Longest path along forward edges (they form no cycle: readable marks cycles' edges back).
    for _ in range(len(ids)):
        changed = False
        for source, dest in forward:
            if layer[dest] < layer[source] + 1:
                layer[dest] = layer[source] + 1
                changed = True
        if not changed:
            break
    main = [i for i in flow["main_path"] if i in layer]
    row: dict[str, int] = {i: 0 for i in main}
    taken = {(layer[i], 0) for i in main}
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for source, dest in forward:
        preds[dest].append(source)
    for i in sorted((i for i in ids if i not in row), key=lambda i: (layer[i], ids.index(i))):
        placed = [row[p] for p in preds[i] if p in row]
        r = max(1, min(placed)) if placed else 1
        while (layer[i], r) in taken:
            r += 1
        row[i] = r
        taken.add((layer[i], r))
    return {i: Box(i, layer[i] * (BOX_W + GAP_X), row[i] * (BOX_H + GAP_Y)) for i in ids}


def _lines(title: str) -> list[str]:
    lines: list[str] = []
    for word in title.split():
        if lines and len(lines[-1]) + 1 + len(word) <= TITLE_CHARS:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines[:3]


def _text(x: float, y: float, text: str, cls: str, anchor: str = "middle") -> str:
    return f'<text class="{cls}" x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}">{escape(text)}</text>'


def _node(node: dict[str, Any], box: Box, dx: float, dy: float) -> str:
    title = node["title"]
    if node["stub"] and node["kind"] == "stub":
        title = f"↗ {node['flow']}: {title}"
    elif node["kind"] == "return":
        title = f"↩ {title}"
    attrs = {"class": f"node kind-{node['kind']}", "data-state": node["id"] if not node["stub"] else node["state"],
             "data-kind": node["kind"], "data-file": node["file"] or "", "data-line": str(node["line"] or "")}
    if node["stub"]:
        attrs["data-stub"] = "true"
    head = "<g " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + ">"
    x, y = box.x + dx, box.y + dy
    dash = ' stroke-dasharray="5 3"' if node["stub"] else ""
    out = [head, f"<title>{escape(node['text'] or title)}</title>",
           f'<rect x="{x:.0f}" y="{y:.0f}" width="{box.w:.0f}" height="{box.h:.0f}" rx="10" ry="10" '
           f'fill="{KIND_FILL.get(node["kind"], "#fff")}" stroke="#667"{dash}/>']
    lines = _lines(title)
    top = y + box.h / 2 - (len(lines) - 1) * LINE_H / 2 + 4
    out += [_text(x + box.w / 2, top + k * LINE_H, line, "title") for k, line in enumerate(lines)]
    out.append("</g>")
    return "".join(out)


def _edge(edge: dict[str, Any], a: Box, b: Box, dx: float, dy: float, below: float) -> str:
    label = edge["label"]
    attrs = f'class="edge {edge["kind"]}" data-from={quoteattr(edge["from"])} data-to={quoteattr(edge["to"])}'
    if edge["kind"] == BACK or b.x <= a.x:
        x1, y1 = a.cx + dx + 12, a.y + a.h + dy
        x2, y2 = b.cx + dx - 12, b.y + b.h + dy
        if a.id == b.id:
            x2 = x1 - 24
        yb = below + dy
        d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{yb:.0f} {x2:.0f},{yb:.0f} {x2:.0f},{y2:.0f}"
        lx, ly = (x1 + x2) / 2, y1 + (yb - y1) * 0.75 - 3
        style = ' stroke-dasharray="6 4"'
    else:
        x1, y1 = a.x + a.w + dx, a.cy + dy
        x2, y2 = b.x + dx, b.cy + dy
        mid = (x1 + x2) / 2
        d = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 4
        style = ""
    return (f'<g {attrs}><path d="{d}" fill="none" stroke="#889"{style} marker-end="url(#flowmap-arrow)"/>'
            f"{_text(lx, ly, label, 'label')}</g>")


def _flow(flow: dict[str, Any], top: float) -> tuple[list[str], float, float]:
    """SVG parts of one flow drawn from y=top; its width and height."""
    boxes = layout(flow)
    width = max((b.x + b.w for b in boxes.values()), default=0)
    bottom = max((b.y + b.h for b in boxes.values()), default=0)
    dx, dy = PAD, top + HEADING_H
    backs = [e for e in flow["edges"] if e["kind"] == BACK or boxes[e["to"]].x <= boxes[e["from"]].x]
    out = [f'<g class="flow" data-flow={quoteattr(flow["name"])}>',
           _text(PAD, top + 20, f"{flow['name']} ({flow['file']})", "heading", "start")]
    n = 0
    for e in flow["edges"]:
        below = bottom + GAP_Y / 2 + BACK_STEP * n
        if e in backs:
            n += 1
        out.append(_edge(e, boxes[e["from"]], boxes[e["to"]], dx, dy, below))
    out += [_node(node, boxes[node["id"]], dx, dy) for node in flow["nodes"]]
    out.append("</g>")
    height = HEADING_H + bottom + GAP_Y / 2 + BACK_STEP * (len(backs) + 1)
    return out, width, height


STYLE = (
    "text{font-family:sans-serif;fill:#223}"
    " .title{font-size:12px} .label{font-size:10px;fill:#446;paint-order:stroke;stroke:#fff;stroke-width:3px}"
    " .heading{font-size:15px;font-weight:bold} .legend{font-size:12px}"
    " .node{cursor:pointer} .node:hover rect{stroke:#225;stroke-width:2}"
)


def render_svg(model: dict[str, Any], flow: str | None = None) -> str:
    """The map as one SVG document: one flow (by name), or every flow one under another with
    the legend of events that work on every step."""
    flows = [model["flows"][flow]] if flow is not None else list(model["flows"].values())
    parts: list[str] = []
    top, width = float(PAD), 0.0
    for spec in flows:
        drawn, w, h = _flow(spec, top)
        parts += drawn
        width = max(width, w)
        top += h + PAD
    if model.get("global"):
        parts.append('<g class="legend">')
        parts.append(_text(PAD, top + 20, "На любом шаге:", "heading", "start"))
        top += HEADING_H
        for item in model["global"]:
            line = f"{', '.join(item['labels'])} → {item['title']}"
            parts.append(_text(PAD, top + 14, line, "legend", "start"))
            top += LINE_H + 4
        parts.append("</g>")
        top += PAD
    total_w, total_h = width + 2 * PAD, top
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-map" width="{total_w:.0f}" '
            f'height="{total_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h:.0f}">'
            f"<style>{STYLE}</style>"
            '<defs><marker id="flowmap-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#889"/></marker></defs>')
    return head + "".join(parts) + "</svg>\n"
