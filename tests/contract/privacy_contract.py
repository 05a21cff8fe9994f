"""The forget contract (engine/ports/privacy.py) and retention's prune of sessions and codes: one
person's data goes, everyone else's stays.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

from typing import Any

from engine.ports import OUTBOX_FAILED, Binding, Session, StepCommit
from tests.contract.storage_values import (
    bind,
    code_sent,
    ended,
    finish,
    make_code,
    make_item,
    make_notice,
    make_session,
    make_ticket,
    put_code,
)

DRAFT_FILE = {"id": "vk_1.cd", "name": "фото.jpg", "mime": "image/jpeg", "size": 3}


async def seed(storage: Any, peer: str, email: str, *, item_id: str, event: str) -> None:
    """Everything the bot keeps about one person: a draft, a binding, a code and its sending, a
    notice, a followed ticket, a handled event with kept replies, and an outbox item."""
    await bind(storage, peer, Binding(peer, email, f"caller-{peer}", "Анна", 1000.0))
    await put_code(storage, make_code(peer, email, expires_at=9e12))
    await code_sent(storage, peer, email, 1000.0)
    session = await storage.load_session(peer)
    draft = Session(peer, "create_ticket.describe", {"description": "Не печатает принтер",
                                                      "files": [DRAFT_FILE]}, "v", 1000.0)
    assert await storage.commit_step(StepCommit(draft, session.version, event_id=event, replies='[{"t":"ok"}]',
                                                outbox=[make_item(item_id, peer)]))
    await storage.notices_add([make_notice(f"n-{peer}", peer)])
    await storage.watch_add([make_ticket(f"t-{peer}", peer=peer)])


async def test_forget_by_peer_deletes_their_data_and_leaves_others(storage: Any) -> None:
    await seed(storage, "vk:1", "anna@ranepa.ru", item_id="ob-1", event="ev-1")
    await seed(storage, "vk:2", "boris@ranepa.ru", item_id="ob-2", event="ev-2")
    item = await storage.outbox_get("ob-1")
    await finish(storage, ended(item, OUTBOX_FAILED, told=True))

    found = await storage.forget(peer="vk:1")
    assert found.peers == ("vk:1",) and not found.refused
    assert found.removed == {"sessions": 1, "bindings": 1, "codes": 1, "sign-in log": 2, "notices": 1,
                             "watched tickets": 1, "inbox events": 1, "outbox items": 1}
    assert set(found.files) == {"vk_1.ab", "vk_1.cd"}  # the item's file and the draft's
    assert await storage.load_session("vk:1") is None
    assert await storage.get_binding("vk:1") is None and await storage.get_code("vk:1") is None
    assert await storage.outbox_get("ob-1") is None
    assert await storage.watch_of_peer("vk:1") == []
    assert [n.peer for n in await storage.notices_unsent()] == ["vk:2"]
    assert [u.event_id for u in await storage.replies_unsent()] == ["ev-2"]
    assert (await storage.code_send_stats("vk:1", "anna@ranepa.ru", 0.0)).by_peer == 0
    # The event's id stays: VK sending it again must still find a duplicate.
    assert await storage.seen_event("ev-1") is True
    # The other person keeps everything.
    assert (await storage.get_binding("vk:2")) is not None and await storage.load_session("vk:2") is not None
    assert await storage.outbox_get("ob-2") is not None and await storage.watch_of_peer("vk:2") != []
    # Asked again: nothing left.
    assert (await storage.forget(peer="vk:1")).total == 0


async def test_an_unfinished_outbox_item_refuses_unless_forced(storage: Any) -> None:
    await seed(storage, "vk:1", "anna@ranepa.ru", item_id="ob-1", event="ev-1")
    found = await storage.forget(peer="vk:1")
    assert found.refused == ("ob-1",) and found.total == 0
    assert await storage.get_binding("vk:1") is not None and await storage.outbox_get("ob-1") is not None

    forced = await storage.forget(peer="vk:1", force=True)
    assert not forced.refused and forced.removed["outbox items"] == 1
    assert await storage.outbox_get("ob-1") is None


async def test_forget_by_address_deletes_its_person_and_only_the_address_of_others(storage: Any) -> None:
    await seed(storage, "vk:1", "anna@ranepa.ru", item_id="ob-1", event="ev-1")
    # Someone else once typed Anna's address by mistake (a code went there), then signed in as Boris.
    await code_sent(storage, "vk:3", "Anna@ranepa.ru", 1100.0)
    await seed(storage, "vk:3", "boris@ranepa.ru", item_id="ob-3", event="ev-3")
    found = await storage.forget(email=" ANNA@ranepa.ru", force=True)
    assert found.peers == ("vk:1",)
    assert found.removed["bindings"] == 1 and found.removed["outbox items"] == 1
    assert await storage.get_binding("vk:1") is None
    # vk:3 keeps its binding, its draft and its queued ticket; only its send to Anna's address goes.
    assert (await storage.get_binding("vk:3")) is not None and await storage.load_session("vk:3") is not None
    assert await storage.outbox_get("ob-3") is not None
    assert (await storage.code_send_stats("vk:3", "anna@ranepa.ru", 0.0)).by_pair == 0
    assert (await storage.code_send_stats("vk:3", "boris@ranepa.ru", 0.0)).by_pair == 1


async def test_the_delete_spares_pending_items_unless_forced(storage: Any) -> None:
    """forget checks for unfinished items, then deletes; an item a worker commits in between (on
    PostgreSQL nothing locks it out) must not go without force: the delete itself spares it."""
    await seed(storage, "vk:1", "anna@ranepa.ru", item_id="ob-1", event="ev-1")
    item = await storage.outbox_get("ob-1")
    await finish(storage, ended(item, told=True))
    session = await storage.load_session("vk:1")
    assert await storage.commit_step(StepCommit(make_session("vk:1", "s"), session.version,
                                                outbox=[make_item("ob-late", "vk:1")]))
    deleted = await storage._rows(storage.sql.forget_outbox, "vk:1", False)  # the statement as forget runs it
    assert len(deleted) == 1  # ob-1, finished
    assert await storage.outbox_get("ob-late") is not None and await storage.outbox_get("ob-1") is None


async def test_the_bots_own_step_keeps_its_session_the_event_and_the_send_log(storage: Any) -> None:
    await seed(storage, "vk:1", "anna@ranepa.ru", item_id="ob-1", event="ev-1")
    item = await storage.outbox_get("ob-1")
    await finish(storage, ended(item, told=True))
    await storage.inbox_add("ev-now", "vk:1", "{}")  # the event being handled
    found = await storage.forget(peer="vk:1", keep_session=True, keep_send_log=True)
    # The peer ↔ address link goes (one row); the record of codes mailed stays (below).
    assert found.removed["sessions"] == 0 and found.removed["sign-in log"] == 1
    assert found.removed["bindings"] == 1 and found.removed["outbox items"] == 1
    session = await storage.load_session("vk:1")
    assert session is not None
    # The step then commits and marks its event handled, as any other.
    assert await storage.commit_step(StepCommit(make_session("vk:1", "main.menu"), session.version,
                                                event_id="ev-now"))
    assert await storage.seen_event("ev-now") is True
    assert (await storage.code_send_stats("vk:1", "anna@ranepa.ru", 0.0)).by_peer == 1


async def test_a_person_is_named_once(storage: Any) -> None:
    import pytest

    with pytest.raises(ValueError, match="a peer or an e-mail"):
        await storage.forget()
    with pytest.raises(ValueError, match="a peer or an e-mail"):
        await storage.forget(peer="vk:1", email="a@ranepa.ru")


async def test_prune_deletes_idle_sessions_and_expired_codes_when_asked(storage: Any) -> None:
    assert await storage.commit_step(StepCommit(Session("vk:old", "s", {"description": "x"}, "v", 1000.0), 0))
    assert await storage.commit_step(StepCommit(Session("vk:new", "s", {}, "v", 5000.0), 0))
    await put_code(storage, make_code("vk:c1", expires_at=1500.0))
    await put_code(storage, make_code("vk:c2", expires_at=9000.0))
    await storage.prune(0.0)  # no horizon for them: nothing of theirs goes
    assert await storage.load_session("vk:old") is not None and await storage.get_code("vk:c1") is not None
    await storage.prune(0.0, sessions_before=3000.0, codes_before=2000.0)
    assert await storage.load_session("vk:old") is None and await storage.load_session("vk:new") is not None
    assert await storage.get_code("vk:c1") is None and await storage.get_code("vk:c2") is not None
