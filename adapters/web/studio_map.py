"""The studio's map of the flows: the readable model drawn as SVG (engine.flows.readable and
engine.flows.map_svg; each node carries data-state, data-file and data-line for the page).

The only module of the studio that knows where the map comes from.
"""

from __future__ import annotations

import html
from typing import Any

from engine.flows.model import FlowSet

# FALLBACK (until engine/flows/map_svg.py and readable.py are merged): the try/except, the
# `is None` branch below and MAP_READY go then; the two imports stay.
try:
    from engine.flows import map_svg, readable  # type: ignore[attr-defined, unused-ignore]
except ImportError:
    map_svg = readable = None  # type: ignore[assignment, unused-ignore]

MAP_READY = map_svg is not None


def map_of(flow_set: FlowSet, flow: str | None = None) -> dict[str, Any]:
    """{"svg": markup for the page, "fallback": whether it is the stopgap text}."""
    if map_svg is None or readable is None:  # FALLBACK: `flowlint graph`'s Mermaid text
        from engine.flows.graph import mermaid

        note = "Схема пока в виде текста Mermaid: рисунок появится с модулем engine/flows/map_svg.py."
        return {"svg": f'<p class="map-note">{note}</p><pre class="map-text">{html.escape(mermaid(flow_set))}</pre>',
                "fallback": True}
    return {"svg": map_svg.render_svg(readable.readable_model(flow_set), flow), "fallback": False}
