"""Flows' drafts (`draft:` in a flow file): forgotten when the user leaves the flow with no way
back, and on `forget_draft: true`; kept across detours that come back (help, signing in).

The rules are the machine's (engine/dialogue/machine.py); the last tests run them through the
engine, across a restart, with files in the spool."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.actions import REGISTRY
from engine.dialogue.machine import RETURN_SLOT, forgotten_flows, machine_of
from engine.dialogue.model import Dialogue
from engine.dialogue.runtime import Engine
from engine.dialogue.turn import Turn
from engine.flows.model import FlowSet
from engine.load import load_flow_set
from engine.ports import NULL_TELEMETRY, Incoming, Session
from tests.conftest import Harness

FLOWS = Path(__file__).resolve().parents[3] / "flows"
FILES = [{"id": "f1", "name": "a.png"}, {"id": "f2", "name": "b.png"}]


@pytest.fixture(scope="module")
def shipped() -> FlowSet:
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    return flow_set


def ticket_draft() -> dict[str, Any]:
    return {"service": {"id": "x"}, "description": "Не работает Word", "files": list(FILES), "offer_hint": True}


def step(flow_set: FlowSet, state: str, event: str, slots: dict[str, Any]) -> Dialogue:
    dialogue = Dialogue(flow_set, state, slots)
    assert machine_of(flow_set).trigger(dialogue, event), (state, event)
    return dialogue


def test_the_shipped_flows_declare_their_drafts(shipped: FlowSet) -> None:
    assert shipped.flows["create_ticket"].draft == ("service", "description", "files", "offer_hint", "from_free_text")
    assert shipped.flows["add_to_ticket"].draft == ("comment", "comment_files", "answering", "direct")
    assert shipped.flows["feedback"].draft == ("rating", "reason")


def test_a_global_event_forgets_every_draft_and_its_files(shipped: FlowSet) -> None:
    slots = {**ticket_draft(), "comment": "к заявке", "reason": "причина", "ticket": {"number": "INC1"}}
    dialogue = step(shipped, "create_ticket.attach", "menu", slots)
    assert dialogue.state == "main.menu"
    assert slots == {"ticket": {"number": "INC1"}}  # what is no draft stays
    assert dialogue.discard == ["f1", "f2"]


def test_cancel_says_there_was_a_draft_before_forgetting_it(shipped: FlowSet) -> None:
    slots = ticket_draft()
    dialogue = step(shipped, "create_ticket.confirm", "cancel", slots)
    assert "Черновик заявки удалён" in dialogue.said[0] and "description" not in slots


def test_help_is_a_detour_and_keeps_the_draft_there_and_back(shipped: FlowSet) -> None:
    slots = ticket_draft()
    step(shipped, "create_ticket.attach", "help", slots)
    assert slots["description"] and slots["files"] == FILES and slots[RETURN_SLOT] == ["create_ticket.attach"]
    dialogue = step(shipped, "main.help", "back", slots)
    assert dialogue.state == "create_ticket.attach" and slots["files"] == FILES and dialogue.discard == []


def test_signing_in_on_the_way_keeps_the_draft(shipped: FlowSet) -> None:
    slots = ticket_draft()
    dialogue = step(shipped, "create_ticket.submit", "signed_out", slots)  # to auth.gate, then: confirm
    assert dialogue.state == "auth.gate" and slots["description"]
    step(shipped, "auth.ask_email", "ok", slots)  # a step within signing in
    dialogue = step(shipped, "auth.gate", "signed_in", slots)
    assert dialogue.state == "create_ticket.confirm" and slots["files"] == FILES


def test_arriving_at_the_menu_forgets_every_draft_unless_back_from_a_detour(shipped: FlowSet) -> None:
    slots = ticket_draft()
    dialogue = step(shipped, "create_ticket.choose_service", "back", slots)  # the flow's own Назад
    assert dialogue.state == "main.menu" and "description" not in slots and dialogue.discard == ["f1", "f2"]
    # A screenshot sent at the menu waits there for the ticket; help opened there and closed keeps it.
    slots = {"files": list(FILES)}
    step(shipped, "main.menu", "help", slots)
    dialogue = step(shipped, "main.help", "back", slots)
    assert dialogue.state == "main.menu" and slots == {"files": FILES}


def test_leaving_a_flow_for_another_forgets_that_flows_draft_only(shipped: FlowSet) -> None:
    slots = {"reason": "передумал", "description": "с главного меню", "ticket": {"number": "INC1"}}
    dialogue = step(shipped, "feedback.withdraw_ask", "back", slots)
    assert dialogue.state == "my_tickets.open"
    assert slots == {"description": "с главного меню", "ticket": {"number": "INC1"}}


def test_forget_draft_ends_the_flows_draft_where_it_is_sent(shipped: FlowSet) -> None:
    # tickets.create took the files already (the outbox owns them): nothing is discarded.
    slots = {"service": {"id": "x"}, "description": "Не работает Word", "ticket": {"number": ""}}
    dialogue = step(shipped, "create_ticket.submit", "queued", slots)
    assert dialogue.state == "create_ticket.queued" and slots == {"ticket": {"number": ""}}
    slots = {"comment": "ещё", "comment_files": list(FILES), "answering": True, "ticket": {"number": "INC1"}}
    dialogue = step(shipped, "add_to_ticket.send", "queued", slots)
    assert slots == {"ticket": {"number": "INC1"}} and dialogue.discard == ["f1", "f2"]


def test_starting_again_after_a_pause_forgets_the_draft_left(shipped: FlowSet) -> None:
    slots = {"comment": "недописанное", "answering": True, RETURN_SLOT: ["add_to_ticket.compose"]}
    dialogue = step(shipped, "main.resume", "restart", slots)
    assert dialogue.state == "main.menu" and slots == {}


def test_which_flows_a_move_leaves() -> None:
    drafts = {"a": ("x",), "b": ("y",), "c": ("z",)}
    assert forgotten_flows(drafts, "a", [], "b", []) == ["a"]
    assert forgotten_flows(drafts, "a", [], "auth", ["a.s"]) == []  # then: back to a
    assert forgotten_flows(drafts, "auth", ["a.s", "b.t"], "a", ["a.s"]) == ["b"]
    assert forgotten_flows(drafts, "main", [], "c", []) == []  # c was not open: entering it forgets nothing


class NoOne:
    async def get_binding(self, peer: str) -> None:
        return None


class KeptDiscards:
    def __init__(self) -> None:
        self.discarded: list[str] = []

    async def discard(self, file_id: str) -> None:
        self.discarded.append(file_id)


async def test_text_after_a_finished_dialogue_starts_afresh_without_old_drafts(shipped: FlowSet) -> None:
    """A step with free_text hands typed text to the start: as a move to the start, it forgets
    the drafts (left over here only by an older flow set)."""
    spool = KeptDiscards()
    services = SimpleNamespace(clock=lambda: 100.0, idle_timeout=1e9, spool=spool, storage=NoOne(),
                               telemetry=NULL_TELEMETRY)
    host = SimpleNamespace(services=services, registry=REGISTRY, sessions=None, entered=Counter())
    slots = {"comment": "старое", "files": list(FILES)}
    t = Turn(host, shipped, "test:1", Session("test:1", "my_tickets.empty", slots, shipped.version,  # type: ignore[arg-type]
                                               100.0, 1))
    await t.consume(Incoming(text="..."))  # no words for a problem: the menu asks again
    assert t.session.state == "main.menu" and "comment" not in t.slots and "files" not in t.slots
    assert spool.discarded == []  # the files go once the step is committed, not before
    await t.committed()
    assert spool.discarded == ["f1", "f2"]


async def test_after_a_restart_the_next_event_forgets_the_persisted_draft_and_its_files(harness: Harness) -> None:
    await harness.describe("drafts@ranepa.ru", "Не открывается сетевая папка бухгалтерии")
    reply = await harness.attach("screen.png")
    assert "screen.png" in reply.text
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and session.state == "create_ticket.attach"
    spooled = harness.world.spool.path(session.slots["files"][0]["id"])
    assert spooled.exists()
    # A new engine over the same storage, as after a crash: the draft is read back, and the rule
    # applies to the next event as to any other.
    fresh = Engine(harness.engine.flows, harness.engine.services)
    out = await fresh.handle(harness.peer, Incoming(text="Главное меню"))
    assert "Главное меню" in out[-1].text
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and session.state == "main.menu"
    assert not {"service", "description", "files"} & set(session.slots)
    assert not spooled.exists()


async def test_after_a_restart_a_detour_still_keeps_the_persisted_draft(harness: Harness) -> None:
    await harness.describe("drafts2@ranepa.ru", "Не открывается сетевая папка бухгалтерии")
    await harness.attach("screen.png")
    fresh = Engine(harness.engine.flows, harness.engine.services)
    await fresh.handle(harness.peer, Incoming(text="Помощь"))
    again = Engine(harness.engine.flows, harness.engine.services)
    out = await again.handle(harness.peer, Incoming(text="Назад"))
    assert "Уже прикреплено" in out[-1].text and "screen.png" in out[-1].text
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and harness.world.spool.path(session.slots["files"][0]["id"]).exists()
