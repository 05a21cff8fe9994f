"""The studio's map of the flows: the readable model drawn as SVG (engine.flows.readable and
engine.flows.map_svg; each node carries data-state, data-file and data-line for the page).

The only module of the studio that knows where the map comes from.
"""

from __future__ import annotations

from typing import Any

from engine.flows.map_svg import render_svg
from engine.flows.model import FlowSet
from engine.flows.readable import readable_model


def map_of(flow_set: FlowSet, flow: str | None = None) -> dict[str, Any]:
    """{"svg": the map's markup for the page}: one flow, or all of them."""
    return {"svg": render_svg(readable_model(flow_set), flow)}
