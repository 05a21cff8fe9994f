"""Every conversation test shipped in flows/tests, one pytest case each."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.convtest import Conversation, Runner, load_conversations, run_all
from engine.flows.model import FlowSet
from supportbot.conversation_world import EmulatorWorld

FLOWS = Path(__file__).resolve().parents[2] / "flows"
CONVERSATIONS, PROBLEMS = load_conversations([FLOWS / "tests"])


def test_conversation_files_are_valid() -> None:
    assert PROBLEMS == []


async def test_conversations_go_through_every_state(flow_set: FlowSet, world: EmulatorWorld) -> None:
    entered: set[str] = set()
    for outcome in await run_all(flow_set, CONVERSATIONS, world):
        entered |= outcome.entered
    assert set(flow_set.states) - entered == set()


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=lambda c: f"{Path(c.path).stem}: {c.name}")
async def test_conversation(conversation: Conversation, flow_set: FlowSet, world: EmulatorWorld) -> None:
    outcome = await Runner(flow_set, world).run(conversation)
    assert outcome.passed, "\n".join(str(f) for f in outcome.failures)


async def test_a_conversation_can_have_an_agent_comment_and_note_on_the_newest_ticket(world: EmulatorWorld) -> None:
    table = world.ticket_tables[0]
    await world.tickets.create_ticket(table, {"subject": "Старая"})
    ref = await world.tickets.create_ticket(table, {"subject": "Новая"})
    await world.control({"agent_comment": "Уточните номер аудитории", "work_note": "звонил, не ответил"})
    assert [c.text for c in await world.tickets.list_comments(table, ref.sys_id)] == ["Уточните номер аудитории"]
    assert [e.field for e in world.emulator.state.journal(table, ref.sys_id)] == ["additional_comments", "work_notes"]
