"""A ticket's conversation under its details (tickets.conversation, tickets.conversation_earlier)
and the user's recently closed tickets (tickets.list_closed), against the SimpleOne emulator over
HTTP through the real client."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulators.simpleone.state import ManualClock
from engine.actions import ticket_conversation, tickets
from engine.actions.context import ActionContext
from engine.actions.sign_in_draft import SignInDraft
from engine.ports import Upload
from tests.conftest import Harness

TABLE = "itsm_incident"
TAIL = "\n\n(добавлено через бот ВКонтакте)"  # what flows' `comment:` ends the user's comments with
JOURNAL_PATH = "/rest/v1/table/sys_activity_feed_item"


def context(harness: Harness, slots: dict[str, Any] | None = None) -> ActionContext:
    return ActionContext(harness.peer, slots if slots is not None else {}, harness.engine.flows.current,
                         harness.engine.services, SignInDraft(harness.storage, harness.peer))


async def own_ticket(harness: Harness, email: str = "anna@ranepa.ru") -> tuple[str, dict[str, Any]]:
    """The signed-in user's ticket in the emulator, and the slot `ticket` as the list gives it."""
    await harness.sign_in(email)
    binding = await harness.storage.get_binding(harness.peer)
    assert binding is not None
    sys_id = harness.world.emulator.state.add_record(TABLE, {"caller": binding.caller_id, "subject": "Почта"})
    return sys_id, {"table": TABLE, "sys_id": sys_id, "number": "INC0000001"}


async def test_the_newest_comments_of_both_sides_then_the_page_before(harness: Harness) -> None:
    state = harness.world.emulator.state
    clock = ManualClock(datetime(2026, 12, 4, 8, 0, tzinfo=UTC))
    state.clock = clock
    sys_id, ticket = await own_ticket(harness)

    async def agent(text: str) -> None:
        clock.advance(60)
        state.act_as_agent("comment", sys_id, text)

    async def user(text: str) -> None:
        clock.advance(60)
        await harness.world.tickets.add_comment(TABLE, sys_id, "additional_comments", text + TAIL)

    await agent("С какого адреса?")
    await user("С адреса dekanat@ranepa.ru")
    clock.advance(60)
    state.act_as_agent("note", sys_id, "Внутреннее: квота ящика")
    await agent("Проверяем.")
    await user("Жду")
    await agent("<p>Квоту <b>увеличили</b>.</p>")

    ctx = context(harness, {"ticket": ticket})
    assert await ticket_conversation.conversation(ctx) == "shown"
    # Newest last, in Moscow time (UTC+3), the user's own without the bot's tail.
    assert ctx.slots["talk"] == [
        {"date": "04.12.2026, 11:04", "text": "Проверяем.", "mine": False},
        {"date": "04.12.2026, 11:05", "text": "Жду", "mine": True},
        {"date": "04.12.2026, 11:06", "text": "Квоту увеличили.", "mine": False},
    ]
    assert ctx.slots["talk_more"] is True and ctx.slots["talk_earlier"] is False
    assert ctx.slots["ticket_files"] == [] and "talk_failed" not in ctx.slots

    assert await ticket_conversation.conversation_earlier(ctx) == "shown"
    # The work note between them is never read for the user.
    assert ctx.slots["talk"] == [
        {"date": "04.12.2026, 11:01", "text": "С какого адреса?", "mine": False},
        {"date": "04.12.2026, 11:02", "text": "С адреса dekanat@ranepa.ru", "mine": True},
    ]
    assert ctx.slots["talk_more"] is False and ctx.slots["talk_earlier"] is True
    assert "ticket_files" not in ctx.slots  # files go with the newest page only

    # Back to the newest: the earlier page's slots do not linger.
    assert await ticket_conversation.conversation(ctx) == "shown"
    assert [c["text"] for c in ctx.slots["talk"]] == ["Проверяем.", "Жду", "Квоту увеличили."]


async def test_the_users_own_comment_written_in_the_portal_is_theirs(harness: Harness) -> None:
    state = harness.world.emulator.state
    sys_id, ticket = await own_ticket(harness)
    state.act_as_agent("comment", sys_id, "Добавила скриншот на портале", author="anna@ranepa.ru")
    state.act_as_agent("comment", sys_id, "Спасибо, посмотрим.")
    ctx = context(harness, {"ticket": ticket})
    assert await ticket_conversation.conversation(ctx) == "shown"
    assert [(c["text"], c["mine"]) for c in ctx.slots["talk"]] == [
        ("Добавила скриншот на портале", True), ("Спасибо, посмотрим.", False)]


async def test_a_ticket_without_comments_shows_its_files(harness: Harness, tmp_path: Path) -> None:
    sys_id, ticket = await own_ticket(harness)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8" + b"0" * 100)
    await harness.world.tickets.upload_files(TABLE, sys_id, [Upload("photo.jpg", "image/jpeg", photo)])
    ctx = context(harness, {"ticket": ticket})
    assert await ticket_conversation.conversation(ctx) == "shown"
    assert ctx.slots["talk"] == [] and ctx.slots["talk_more"] is False
    assert ctx.slots["ticket_files"] == ["photo.jpg"]


async def test_a_journal_that_cannot_be_read_still_shows_the_ticket(harness: Harness) -> None:
    sys_id, ticket = await own_ticket(harness)
    state = harness.world.emulator.state
    state.act_as_agent("comment", sys_id, "Проверяем.")
    state.faults.fail_next(10, path_prefix=JOURNAL_PATH)
    ctx = context(harness, {"ticket": ticket, "talk": [{"date": "", "text": "старое", "mine": False}]})
    assert await ticket_conversation.conversation(ctx) == "shown"
    assert ctx.slots["talk_failed"] is True and "talk" not in ctx.slots and "talk_more" not in ctx.slots
    # On an earlier page, «Показать ещё» stays to try that page again.
    ctx.slots["talk_before"] = "999999999999999999"
    assert await ticket_conversation.conversation_earlier(ctx) == "shown"
    assert ctx.slots["talk_failed"] is True and ctx.slots["talk_more"] is True
    assert ctx.slots["talk_before"] == "999999999999999999"


async def test_only_the_users_own_ticket_is_read(harness: Harness) -> None:
    state = harness.world.emulator.state
    other = state.add_user("victim@ranepa.ru", "Вера", "Чужая")
    foreign = state.add_record(TABLE, {"caller": other, "subject": "чужая"})
    state.act_as_agent("comment", foreign, "Секрет")
    slots: dict[str, Any] = {"ticket": {"table": TABLE, "sys_id": foreign, "number": "X"}}
    assert await ticket_conversation.conversation(context(harness, slots)) == "signed_out"
    await harness.sign_in("attacker@ranepa.ru")
    ctx = context(harness, slots)  # a step reads the binding once
    assert await ticket_conversation.conversation(ctx) == "not_found"
    assert "talk" not in ctx.slots
    ctx.slots["ticket"] = {"table": "sys_user", "sys_id": foreign}
    assert await ticket_conversation.conversation_earlier(ctx) == "not_found"


async def test_closed_tickets_of_the_last_90_days(harness: Harness) -> None:
    state = harness.world.emulator.state
    await harness.sign_in("anna@ranepa.ru")
    binding = await harness.storage.get_binding(harness.peer)
    assert binding is not None

    def ticket(caller: str, active: str, days_ago: int, subject: str) -> str:
        """Days before the bot's clock (not the emulator's): 90 days are counted from the bot's."""
        updated = datetime.fromtimestamp(harness.now[0] - days_ago * 86400, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return state.add_record(TABLE, {"caller": caller, "subject": subject, "active": active, "state": "10",
                                        "sys_created_at": updated, "sys_updated_at": updated})

    ticket(binding.caller_id, "0", 100, "давно закрыта")
    ticket(binding.caller_id, "1", 1, "открыта")
    ticket(state.add_user("other@ranepa.ru", "Олег", "Другой"), "0", 1, "чужая")
    ctx = context(harness)
    assert await tickets.list_closed(ctx) == "empty"
    assert ctx.slots["closed_tickets"] == [] and ctx.slots["closed_days"] == 90

    ticket(binding.caller_id, "0", 89, "закрыта раньше")
    ticket(binding.caller_id, "0", 2, "закрыта недавно")
    assert await tickets.list_closed(ctx) == "listed"
    assert [t["subject"] for t in ctx.slots["closed_tickets"]] == ["закрыта недавно", "закрыта раньше"]
    assert all(t["active"] is False and t["status"] == "Закрыт" for t in ctx.slots["closed_tickets"])
    assert ctx.slots["closed_more"] is False
    assert ctx.watch == []  # closed tickets are not followed for notices


async def test_closed_tickets_when_simpleone_is_down_or_signed_out(harness: Harness) -> None:
    ctx = context(harness)
    assert await tickets.list_closed(ctx) == "signed_out"
    await harness.sign_in("anna@ranepa.ru")
    harness.world.emulator.state.faults.set_outage(True)
    assert await tickets.list_closed(context(harness)) == "unavailable"
