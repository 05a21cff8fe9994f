"""A turn runs what the machine's transitions name, and tells an outcome only if it is taken."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from engine.actions import REGISTRY
from engine.dialogue.turn import Turn
from engine.flows.model import FlowSet
from engine.ports import NULL_TELEMETRY, OutboxItem, Session


class NoSpool:
    async def discard(self, file_id: str) -> None:
        pass


def turn(flow_set: FlowSet, state: str, slots: dict[str, Any]) -> Turn:
    services = SimpleNamespace(clock=lambda: 100.0, idle_timeout=1e9, spool=NoSpool(), storage=None,
                               telemetry=NULL_TELEMETRY)
    host = SimpleNamespace(services=services, registry=REGISTRY, sessions=None, entered=Counter())
    return Turn(host, flow_set, "test:1", Session("test:1", state, slots, flow_set.version, 100.0, 1))  # type: ignore[arg-type]


async def test_an_outcome_whose_guard_fails_is_left_for_the_notice(zz: FlowSet) -> None:
    t = turn(zz, "zz.b", {})
    item = OutboxItem("i1", "test:1", "ticket.create", {}, 0.0,
                      result={"event": "signed_in", "vars": {"ticket": {"number": "INC1"}}})
    assert await t.settle([item]) is None
    assert t.settled == [] and t.session.state == "zz.b" and "ticket" not in t.slots
    assert t.texts == []  # no "not understood" for something the user did not do


async def test_an_outcome_whose_guard_holds_is_told(zz: FlowSet) -> None:
    t = turn(zz, "zz.b", {"description": "черновик"})
    item = OutboxItem("i1", "test:1", "ticket.create", {}, 0.0,
                      result={"event": "signed_in", "vars": {"ticket": {"number": "INC1"}}})
    reply = await t.settle([item])
    assert reply is not None and reply.text == "C"
    assert t.settled == ["i1"] and t.session.state == "zz.c" and t.slots["ticket"] == {"number": "INC1"}
