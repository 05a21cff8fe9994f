"""Where the engine's parts read the flow set in force: a hot reload swaps it between events.

A port of its own so that notices, the ticket outbox and the status watch need not import the
runtime for it (they would close an import cycle through the actions).
"""

from __future__ import annotations

from typing import Protocol

from engine.flows.model import FlowSet

__all__ = ["FlowSource", "StaticFlows"]


class FlowSource(Protocol):
    """Where the engine reads the flow set for each event (hot reload swaps it)."""

    @property
    def current(self) -> FlowSet: ...


class StaticFlows:
    """A flow set that never changes (tests, flowlint's conversation tests)."""

    def __init__(self, flow_set: FlowSet) -> None:
        self._flow_set = flow_set

    @property
    def current(self) -> FlowSet:
        return self._flow_set
