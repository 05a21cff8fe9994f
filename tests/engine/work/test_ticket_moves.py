"""The user's moves on a ticket (confirm, reopen, withdraw, rate) through the outbox, against the
SimpleOne emulator over HTTP while it answers badly: each lands once, ownership is checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulators.simpleone.faults import FaultKind
from engine.actions.ticket_items import MOVE
from engine.flows.model import FlowSet
from engine.ports import OutboxItem
from engine.work.outbox import WorkFailed
from engine.work.ticket_moves import move_executors
from supportbot.conversation_world import EmulatorWorld
from tests.outbox_world import Rig, User

HANG = 1.0


@pytest.fixture
async def rig(world: EmulatorWorld, flow_set: FlowSet, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await Rig.open(world, flow_set, tmp_path / "bot.db")
    yield r
    world.emulator.faults.clear()
    await r.close()


async def finished_ticket(rig: Rig) -> tuple[User, str]:
    """A user's ticket the agent has finished, opened in «Мои заявки»."""
    (user,) = await rig.sign_in_all(1)
    await rig.create_all([user])
    await rig.settle()
    (ticket,) = rig.tickets()
    rig.world.emulator.state.act_as_agent("state", ticket["number"], "7")
    await rig.advance(60)
    await rig.say(user, "Мои заявки")
    reply = await rig.say(user, "1")
    assert "Да, решена" in reply.labels(), reply.labels()
    return user, ticket["sys_id"]


def public(rig: Rig, sys_id: str) -> list[str]:
    state = rig.world.emulator.state
    return [e.text for e in state.journal("itsm_incident", sys_id) if e.field == "additional_comments"]


@pytest.mark.parametrize("mode", ["hang", "error", "drop"])
async def test_a_confirm_answered_badly_lands_once(rig: Rig, mode: FaultKind) -> None:
    user, sys_id = await finished_ticket(rig)
    rig.world.emulator.faults.fail_after_write(1, mode=mode, method="PATCH", seconds=HANG)
    reply = await rig.press(user, "Да, решена")
    assert "Оцените" in reply.text
    await rig.settle()
    record = rig.world.emulator.state.record("itsm_incident", sys_id)
    assert record is not None and record["state"] == "10"
    confirms = [c for c in public(rig, sys_id) if "Проблема решена, спасибо" in c]
    assert len(confirms) == 1, public(rig, sys_id)


async def test_a_confirm_whose_state_the_instance_refuses_writes_the_comment_alone(rig: Rig) -> None:
    user, sys_id = await finished_ticket(rig)
    rig.world.emulator.faults.fail_next(1, status=403, method="PATCH")
    await rig.press(user, "Да, решена")
    await rig.settle()
    record = rig.world.emulator.state.record("itsm_incident", sys_id)
    assert record is not None and record["state"] == "7"  # not the caller's to close here
    assert sum("Проблема решена, спасибо" in c for c in public(rig, sys_id)) == 1
    assert [i.state for i in await rig.storage.outbox_list(limit=100) if i.kind == "ticket.move"] == ["done"]


@pytest.mark.parametrize("mode", ["hang", "drop"])
async def test_a_reopen_answered_badly_lands_once_with_the_users_words(rig: Rig, mode: FaultKind) -> None:
    user, sys_id = await finished_ticket(rig)
    await rig.press(user, "Нет, не решена")
    rig.world.emulator.faults.fail_after_write(1, mode=mode, method="PATCH", seconds=HANG)
    await rig.say(user, "Папка так и не открывается")
    await rig.settle()
    record = rig.world.emulator.state.record("itsm_incident", sys_id)
    assert record is not None and record["state"] == "2"
    assert sum("Папка так и не открывается" in c for c in public(rig, sys_id)) == 1


async def test_a_ticket_that_is_no_longer_the_users_is_not_moved(rig: Rig) -> None:
    user, sys_id = await finished_ticket(rig)
    await rig.press(user, "Нет, не решена")
    # Between two steps, the ticket passes to another caller: checked against SimpleOne.
    rig.world.emulator.state.set_field("itsm_incident", sys_id, "caller", "someone-else")
    reply = await rig.say(user, "Всё ещё не работает")
    assert "не найдена среди ваших" in reply.text
    await rig.settle()
    assert not any("Всё ещё не работает" in c for c in public(rig, sys_id))


async def test_the_worker_checks_ownership_again_before_it_writes(rig: Rig) -> None:
    (user,) = await rig.sign_in_all(1)
    await rig.create_all([user])
    await rig.settle()
    (ticket,) = rig.tickets()
    item = OutboxItem("mv-1", user.peer, MOVE, {
        "table": "itsm_incident", "sys_id": ticket["sys_id"], "number": ticket["number"],
        "caller_id": "someone-else", "move": "withdraw", "fields": {"state": "10"},
        "field": "additional_comments", "text": "Отозвана", "vars": {}, "gave_up": "move_failed"}, 0.0)

    async def checkpoint(_: OutboxItem) -> None:
        return None

    with pytest.raises(WorkFailed) as failed:
        await move_executors(rig.client)[MOVE](item, checkpoint)
    assert failed.value.result["notice"] == "move_failed"
    record = rig.world.emulator.state.record("itsm_incident", ticket["sys_id"])
    assert record is not None and record["state"] != "10"
