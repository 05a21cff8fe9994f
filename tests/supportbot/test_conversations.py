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
