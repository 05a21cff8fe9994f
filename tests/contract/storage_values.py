"""Values and shortcuts the storage contract suites share (not a test module)."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.ports import (
    OUTBOX_DONE,
    Binding,
    Notice,
    OutboxItem,
    OutboxOutcome,
    PendingCode,
    Session,
    SignInWrites,
    StepCommit,
    WatchedTicket,
)


def make_session(peer: str, state: str = "start", slots: dict[str, Any] | None = None) -> Session:
    return Session(peer, state, {} if slots is None else slots, "flows-v1", 1_700_000_000.5)


async def commit(
    storage: Any, peer: str, expected: int, state: str = "start", event_id: str | None = None
) -> bool:
    ok: bool = await storage.commit_step(StepCommit(make_session(peer, state), expected, event_id))
    return ok


def make_code(peer: str = "vk:1", email: str = "a@ranepa.ru", **kw: Any) -> PendingCode:
    fields: dict[str, Any] = {
        "code_hash": bytes(range(32)),
        "salt": b"\x00\xffsalt",
        "created_at": 1000.0,
        "expires_at": 1600.0,
    } | kw
    return PendingCode(peer, email, **fields)


PAYLOAD: dict[str, Any] = {
    "table": "itsm_incident",
    "fields": {"subject": "Не печатает принтер 🖨", "description": "ауд. 305\n\"срочно\""},
    "files": [{"id": "vk_1.ab", "name": "скан.pdf", "mime": "application/pdf", "size": 10}],
}


def make_item(item_id: str, peer: str = "vk:1", **kw: Any) -> OutboxItem:
    fields: dict[str, Any] = {"created_at": 1000.0, "next_at": 1000.0, "updated_at": 1000.0} | kw
    return OutboxItem(item_id, peer, fields.pop("kind", "ticket.create"), fields.pop("payload", PAYLOAD), **fields)


def ended(item: OutboxItem, state: str = OUTBOX_DONE, at: float = 2000.0, **kw: Any) -> OutboxItem:
    """The item as the worker finishes it: the engine stamps updated_at with its clock."""
    result = {"number": "INC0001"} if state == OUTBOX_DONE else {"error": "rejected"}
    fields: dict[str, Any] = {"state": state, "updated_at": at, "attempts": item.attempts + 1,
                              "result": result} | kw
    return dataclasses.replace(item, **fields)


def make_notice(notice_id: str, peer: str = "vk:1", text: str = "Заявка INC0001 создана") -> Notice:
    return Notice(notice_id, peer, text, 1500.0)


def make_ticket(sys_id: str, table: str = "itsm_incident", **kw: Any) -> WatchedTicket:
    fields: dict[str, Any] = {"number": f"INC-{sys_id}", "peer": "vk:1", "state": "new",
                              "updated_at": "2025-01-01 10:00:00"} | kw
    return WatchedTicket(table, sys_id, **fields)


async def step(storage: Any, peer: str, expected: int, **kw: Any) -> bool:
    ok: bool = await storage.commit_step(StepCommit(make_session(peer, f"s{expected + 1}"), expected, **kw))
    return ok


async def finish(storage: Any, item: OutboxItem, **kw: Any) -> None:
    await storage.outbox_finish(OutboxOutcome(item, **kw))


async def ids(items: Any) -> list[str]:
    return [i.id for i in await items]


async def claim(storage: Any, now: float, until: float) -> list[str]:
    """Take what is due at `now` for one attempt, hidden until `until`: outbox_take with one lease
    (a kind not named gets the longest)."""
    return [i.id for i in await storage.outbox_take(now, {"ticket.create": until - now})]


async def sign_in_step(storage: Any, writes: SignInWrites) -> bool:
    """Commit a step of writes.peer's session that changes only its sign-in."""
    session = await storage.load_session(writes.peer)
    expected = 0 if session is None else session.version
    return await step(storage, writes.peer, expected, sign_in=writes)


async def put_code(storage: Any, code: PendingCode) -> None:
    assert await sign_in_step(storage, SignInWrites(code.peer, code_changed=True, code=code))


async def drop_code(storage: Any, peer: str) -> None:
    assert await sign_in_step(storage, SignInWrites(peer, code_changed=True))


async def code_sent(storage: Any, peer: str, email: str, at: float) -> None:
    assert await storage.reserve_send(peer, email, at, 0.0, peer_cap=1000, others_cap=1000)


async def bind(storage: Any, peer: str, binding: Binding | None) -> None:
    assert await sign_in_step(storage, SignInWrites(peer, binding_changed=True, binding=binding))
