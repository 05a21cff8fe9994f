"""Every conversation test shipped in flows/tests, one pytest case each."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.convtest import Conversation, Runner, load_conversations
from engine.model import FlowSet
from supportbot.conversation_world import EmulatorWorld

FLOWS = Path(__file__).resolve().parents[2] / "flows"
CONVERSATIONS, PROBLEMS = load_conversations([FLOWS / "tests"])


def test_conversation_files_are_valid() -> None:
    assert PROBLEMS == []
    covered = {c.path.rsplit("/", 1)[-1] for c in CONVERSATIONS}
    flows = {p.name for p in FLOWS.glob("*.yaml") if p.name not in ("bot.yaml", "catalog.yaml", "simpleone.yaml")}
    assert flows <= covered, f"flows without conversation tests: {flows - covered}"


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=lambda c: f"{Path(c.path).stem}: {c.name}")
async def test_conversation(conversation: Conversation, flow_set: FlowSet, world: EmulatorWorld) -> None:
    outcome = await Runner(flow_set, world).run(conversation)
    assert outcome.passed, "\n".join(str(f) for f in outcome.failures)
