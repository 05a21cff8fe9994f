"""The compiled machine does the routing: `transitions` takes each event, its conditions are
the flows' guards and its callbacks their slot effects, the return stack and the pick list.

Each test triggers a flow set's machine directly, with no engine around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transitions import Machine

from engine.dialogue import picker
from engine.dialogue.machine import RETURN_SLOT, DialogueMachine, machine_of
from engine.dialogue.model import Dialogue
from engine.flows.model import FlowSet
from engine.load import LoadResult, load_flow_set

FLOWS = Path(__file__).resolve().parents[3] / "flows"


@pytest.fixture(scope="module")
def shipped() -> FlowSet:
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    return flow_set


def step(flow_set: FlowSet, state: str, event: str, slots: dict[str, Any] | None = None,
         index: int | None = None) -> tuple[bool, Dialogue]:
    dialogue = Dialogue(flow_set, state, {} if slots is None else slots)
    return machine_of(flow_set).trigger(dialogue, event, index), dialogue


def test_one_transitions_machine_with_no_model_routes_every_flow(shipped: FlowSet) -> None:
    assert isinstance(machine_of(shipped), DialogueMachine) and machine_of(shipped) is machine_of(shipped)
    machine = machine_of(shipped).machine
    assert isinstance(machine, Machine) and machine.models == []
    assert set(machine.states) == set(shipped.states)
    taken, dialogue = step(shipped, "main.menu", "help")
    assert taken and dialogue.state == "main.help" and dialogue.arrived == "main.help" and dialogue.show_state
    assert machine.models == []  # the throw-away model was never added


def test_a_transition_sets_clears_and_pushes_its_then_in_callbacks(shipped: FlowSet) -> None:
    slots: dict[str, Any] = {"service": {"id": "x"}, "description": "старое", "keep": 1,
                             "files": [{"id": "f1", "name": "a.png"}, {"id": "f2", "name": "b.png"}]}
    taken, dialogue = step(shipped, "main.menu", "create", slots)
    assert taken and dialogue.state == "auth.gate"
    assert slots == {"keep": 1, RETURN_SLOT: ["create_ticket.choose_service"]}
    assert dialogue.discard == ["f1", "f2"]  # the files of a cleared file slot, for the engine to discard


def test_return_goes_to_the_top_of_the_stack_or_else(shipped: FlowSet) -> None:
    slots: dict[str, Any] = {RETURN_SLOT: ["create_ticket.confirm"]}
    taken, dialogue = step(shipped, "auth.gate", "signed_in", slots)
    assert taken and dialogue.state == "create_ticket.confirm" and RETURN_SLOT not in slots
    taken, dialogue = step(shipped, "auth.gate", "signed_in", {})
    assert taken and dialogue.state == "main.menu"  # else
    stale: dict[str, Any] = {RETURN_SLOT: ["gone.state"]}  # from an older flow set
    taken, dialogue = step(shipped, "auth.gate", "signed_in", stale)
    assert taken and dialogue.state == "main.menu" and RETURN_SLOT not in stale


def test_a_global_event_drops_the_return_stack_and_loses_to_a_states_own(shipped: FlowSet) -> None:
    slots: dict[str, Any] = {RETURN_SLOT: ["create_ticket.confirm"], "description": "черновик"}
    taken, dialogue = step(shipped, "create_ticket.describe", "cancel", slots)
    assert taken and dialogue.state == "main.menu"
    assert RETURN_SLOT not in slots and "description" not in slots
    # Said about the draft there was: its conditions see the slots before the transition clears them.
    assert dialogue.said == ["Действие отменено.\nЧерновик заявки удалён; созданные заявки остались в системе."]
    # create_ticket.choose_service has its own 'back' (to the menu), global 'back' would too:
    # the own one is the one taken, which the pick list's own 'back' precedes inside a group.
    taken, dialogue = step(shipped, "create_ticket.choose_service", "back", {})
    assert taken and dialogue.state == "main.menu"


def test_a_pick_list_pages_by_itself_and_a_choice_reaches_the_machine_as_chosen(shipped: FlowSet) -> None:
    machine = machine_of(shipped)
    assert not any(machine.handles(name, event) for name in shipped.states for event in picker.NAVIGATION)
    slots: dict[str, Any] = {"service": {"id": "x"}}
    taken, dialogue = step(shipped, "create_ticket.choose_service", "chosen", slots)
    assert taken and dialogue.state == "create_ticket.describe" and dialogue.arrived == "create_ticket.describe"


def test_an_event_the_state_does_not_handle_is_not_taken(shipped: FlowSet) -> None:
    taken, dialogue = step(shipped, "main.menu", "no_such_event")
    assert not taken and dialogue.state == "main.menu" and dialogue.arrived is None
    assert machine_of(shipped).handles("create_ticket.choose_service", "chosen")
    assert not machine_of(shipped).handles("main.menu", "chosen")


GUARDED = """
      create:
        - {to: create_ticket.choose_service, when: user.email, clear: [service], set: {route: fast}}
        - {to: auth.gate, unless: description, then: create_ticket.choose_service, set: {route: gate}}
        - {to: help, say: "Создание заявок для вас закрыто."}
"""


@pytest.fixture
def guarded(flows: Path) -> FlowSet:
    result = with_menu_on(flows, GUARDED.lstrip("\n"))
    assert result.errors == [], result.errors
    assert result.flow_set is not None
    return result.flow_set


def with_menu_on(flows: Path, on: str) -> LoadResult:
    """The flows with `on:` transitions of main.menu's own (they win over bot.yaml's global ones)."""
    path = flows / "main.yaml"
    text = path.read_text(encoding="utf-8")
    assert "    on:\n" in text  # the menu's own transitions come first in main.yaml
    path.write_text(text.replace("    on:\n", "    on:\n" + on, 1), encoding="utf-8")
    return load_flow_set([flows])


def test_when_and_unless_are_the_machines_conditions(guarded: FlowSet) -> None:
    slots: dict[str, Any] = {"user": {"email": "a@ranepa.ru"}, "service": {"id": "x"}}
    taken, dialogue = step(guarded, "main.menu", "create", slots)
    assert taken and dialogue.state == "create_ticket.choose_service"
    assert slots["route"] == "fast" and "service" not in slots
    slots = {}
    taken, dialogue = step(guarded, "main.menu", "create", slots)
    assert taken and dialogue.state == "auth.gate" and slots["route"] == "gate"
    assert slots[RETURN_SLOT] == ["create_ticket.choose_service"]
    slots = {"description": "черновик"}
    taken, dialogue = step(guarded, "main.menu", "create", slots)
    assert taken and dialogue.state == "main.help" and "route" not in slots
    assert dialogue.said == ["Создание заявок для вас закрыто."]


def with_mine(flows: Path, alternatives: str) -> LoadResult:
    """The flows with main.menu's own 'mine' as a list of alternatives, loaded."""
    return with_menu_on(flows, "      mine:\n" + alternatives)


def test_an_unguarded_alternative_before_others_is_reported(flows: Path) -> None:
    result = with_mine(flows, "        - {to: auth.gate, then: my_tickets.load}\n"
                              "        - {to: help, when: user.email}\n")
    assert [f.code for f in result.findings] == ["F015"]
    assert "never taken" in result.findings[0].message


def test_a_guard_on_an_unknown_slot_is_reported(flows: Path) -> None:
    result = with_mine(flows, "        - {to: help, when: no_such_slot}\n"
                              "        - {to: auth.gate, then: my_tickets.load}\n")
    assert result.flow_set is None
    assert [(f.code, f.message) for f in result.findings] == [("F030", "unknown slot 'no_such_slot'")]


def test_return_reaches_a_state_no_then_names_any_more(shipped: FlowSet) -> None:
    # Pushed by an older flow set whose 'then' a reload renamed: the state still exists.
    slots: dict[str, Any] = {RETURN_SLOT: ["create_ticket.confirm", "main.help"]}
    taken, dialogue = step(shipped, "auth.gate", "signed_in", slots)
    assert taken and dialogue.state == "main.help" and slots[RETURN_SLOT] == ["create_ticket.confirm"]


def test_a_plain_target_may_close_a_list_of_alternatives(zz: FlowSet) -> None:
    assert step(zz, "zz.a", "go", {"user": {"email": "a@ranepa.ru"}})[1].state == "zz.b"
    assert step(zz, "zz.a", "go", {"user": {}})[1].state == "zz.c"


def test_a_global_event_applies_when_the_states_own_guards_all_fail(zz: FlowSet) -> None:
    taken, dialogue = step(zz, "zz.a", "cancel", {"description": "черновик"})
    assert taken and dialogue.state == "zz.c"  # its own, guarded
    taken, dialogue = step(zz, "zz.a", "cancel", {})
    assert taken and dialogue.state == "main.menu"  # bot.global's
    assert dialogue.said == ["Действие отменено."]  # no draft to speak of


def test_a_pick_list_offers_back_only_where_back_is_handled(flows: Path) -> None:
    bot = flows / "bot.yaml"
    bot.write_text(bot.read_text(encoding="utf-8").replace("    back: main.menu\n", "", 1), encoding="utf-8")
    mine = flows / "my_tickets.yaml"
    mine.write_text(mine.read_text(encoding="utf-8").replace("      back: main.menu\n", "", 1), encoding="utf-8")
    flow_set = load_flow_set([flows]).flow_set
    assert flow_set is not None
    from engine.dialogue.render import state_buttons

    st = flow_set.states["my_tickets.list"]
    slots: dict[str, Any] = {"tickets": [{"number": "INC1", "status": "x", "sys_id": "1", "subject": "s"}]}
    assert not machine_of(flow_set).handles(st.name, "back")
    assert "back" not in [b.event for row in state_buttons(flow_set, st, slots) for b in row]
    assert machine_of(flow_set).handles("create_ticket.choose_service", "back")


def test_a_machine_lives_as_long_as_its_flow_set() -> None:
    import gc
    import weakref

    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    machine = weakref.ref(machine_of(flow_set))
    assert machine() is not None
    del flow_set
    gc.collect()
    assert machine() is None  # after a reload the old flow set and its machine both go
