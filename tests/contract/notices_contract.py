"""The notices port's contract (Notices, TicketWatches): notices and watched tickets.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from engine.ports import (
    Notice,
    WatchedTicket,
)
from engine.replies import Button
from tests.contract.storage_values import (
    ids,
    make_notice,
    make_ticket,
)


class TestNotices:
    async def test_unsent_notices_wait_in_order_until_sent(self, storage: Any) -> None:
        await storage.notices_add([make_notice("n-1", "vk:1", "Статус: в работе"),
                                   make_notice("n-2", "vk:2", "Заявка закрыта ✅")])
        await storage.notices_add([make_notice("n-3"), make_notice("n-1", "vk:9", "a duplicate")])
        await storage.notices_add([])
        assert await storage.notices_unsent() == [make_notice("n-1", "vk:1", "Статус: в работе"),
                                                  make_notice("n-2", "vk:2", "Заявка закрыта ✅"),
                                                  make_notice("n-3")]
        assert await ids(storage.notices_unsent(limit=2)) == ["n-1", "n-2"]

        await storage.notices_sent(["n-2", "n-unknown"])
        await storage.notices_sent([])
        assert await ids(storage.notices_unsent()) == ["n-1", "n-3"]
        # A sent notice's id still dedupes: the same change is never told twice.
        await storage.notices_add([make_notice("n-2")])
        assert await ids(storage.notices_unsent()) == ["n-1", "n-3"]


class TestWatchedTickets:
    async def test_list_pages_through_every_ticket_in_key_order(self, storage: Any) -> None:
        keys = [(table, f"{n:03d}") for table in ("itsm_request", "itsm_incident") for n in range(12, 0, -1)]
        await storage.watch_add([make_ticket(sys_id, table) for table, sys_id in keys])
        pages: list[list[WatchedTicket]] = []
        after = ("", "")
        for _ in range(10):  # bounded: a scan that does not move on must fail, not hang
            page = await storage.watch_list(after, limit=5)
            if not page:
                break
            pages.append(page)
            after = (page[-1].table, page[-1].sys_id)
        assert [len(p) for p in pages] == [5, 5, 5, 5, 4]
        seen = [(t.table, t.sys_id) for page in pages for t in page]
        assert seen == sorted(keys)
        assert pages[0][0] == make_ticket("001", "itsm_incident")
        assert await storage.watch_list(("itsm_incident", "011"), limit=3) == [
            make_ticket("012", "itsm_incident"), make_ticket("001", "itsm_request"),
            make_ticket("002", "itsm_request")]

    async def test_add_keeps_what_was_seen_of_a_followed_ticket(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1", state="in_progress", updated_at="2025-02-01 09:00:00")])
        await storage.watch_add([make_ticket("s1"), make_ticket("s2", active=False)])
        assert await storage.watch_list() == [
            make_ticket("s1", state="in_progress", updated_at="2025-02-01 09:00:00"),
            make_ticket("s2", active=False)]

    async def test_add_moves_a_followed_ticket_to_the_chat_that_follows_it_now(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1", peer="vk:100", state="in_progress")])
        await storage.watch_add([make_ticket("s1", peer="vk:300")])  # its owner signed in there
        assert await storage.watch_list() == [make_ticket("s1", peer="vk:300", state="in_progress")]

    async def test_update_records_what_was_seen_and_its_notices(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1"), make_ticket("s2"), make_ticket("s3")])
        await storage.watch_drop([("itsm_incident", "s2"), ("itsm_incident", "s-unknown")])
        await storage.watch_drop([])
        seen = [
            make_ticket("s1", number="INC0042", state="resolved", updated_at="2025-03-01 12:00:00", active=False),
            make_ticket("s2", state="closed"),  # dropped meanwhile: stays dropped
            make_ticket("s9", state="new"),  # never followed: not added
        ]
        await storage.watch_update(seen, [make_notice("n-s1", text="Заявка INC0042 решена")])
        assert await storage.watch_list() == [seen[0], make_ticket("s3")]
        assert await storage.notices_unsent() == [make_notice("n-s1", text="Заявка INC0042 решена")]
        # Seen again (a scan that was repeated): the notice is not added twice.
        await storage.watch_update(seen[:1], [make_notice("n-s1", text="again")])
        assert await ids(storage.notices_unsent()) == ["n-s1"]
        assert (await storage.watch_list())[0] == seen[0]


class TestTwoWay:
    """What two-way support keeps: a notice's buttons, and each ticket's journal cursor and
    when an agent's message on it was told."""

    async def test_a_notice_keeps_its_buttons_each_naming_its_ticket(self, storage: Any) -> None:
        grid = ((Button("Ответить", "answer", color="primary", number="INC0000123"),
                 Button("Открыть заявку", "by_number", number="INC0000123")),)
        await storage.notices_add([Notice("c-1", "vk:1", "Сообщение по заявке INC0000123: «Какой кабинет?»", 5.0,
                                          grid),
                                   make_notice("n-2")])
        told = await storage.notices_unsent()
        assert told == [Notice("c-1", "vk:1", "Сообщение по заявке INC0000123: «Какой кабинет?»", 5.0, grid),
                        make_notice("n-2")]
        assert told[0].buttons[0][0].payload == '{"e":"answer","n":"INC0000123"}'
        assert told[1].buttons == ()

    async def test_the_journal_cursor_and_the_time_asked_are_kept_per_ticket(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1"), replace(make_ticket("s2"), comment_after="")])
        # Not known (None) and "from the first" ("") are two things.
        assert [t.comment_after for t in await storage.watch_list()] == [None, ""]
        seen = replace(make_ticket("s1"), comment_after="000000000000000042", asked_at=1_700_000_000.5)
        await storage.watch_update([seen], [])
        assert (await storage.watch_list())[0] == seen
        # Following it again keeps what was seen of it, the cursor included.
        await storage.watch_add([make_ticket("s1")])
        assert (await storage.watch_list())[0] == seen

    async def test_a_chats_tickets_come_the_one_asked_last_first(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1", peer="vk:1"), make_ticket("s2", peer="vk:1"),
                                 make_ticket("s3", peer="vk:2")])
        await storage.watch_update([replace(make_ticket("s2", peer="vk:1"), asked_at=50.0),
                                    replace(make_ticket("s1", peer="vk:1"), asked_at=70.0)], [])
        assert [t.sys_id for t in await storage.watch_of_peer("vk:1")] == ["s1", "s2"]
        assert [t.sys_id for t in await storage.watch_of_peer("vk:2")] == ["s3"]
        assert await storage.watch_of_peer("vk:nobody") == []


class TestPokes:
    """Push: SimpleOne says a ticket changed (watch_poke); the poller reads the poked tickets
    (watch_poked) and a round that looked at them clears the pokes it answered (watch_update)."""

    async def test_only_a_followed_ticket_is_poked(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1"), make_ticket("s2", "itsm_request")])
        assert await storage.watch_poked() == []
        before = time.time()
        assert await storage.watch_poke("itsm_incident", "s1") is True
        # A forged or foreign id, or a followed id under another table: nothing changes.
        assert await storage.watch_poke("itsm_incident", "s-unknown") is False
        assert await storage.watch_poke("itsm_incident", "s2") is False
        assert await storage.watch_poke("x'); DROP TABLE ticket_watch; --", "s1") is False
        (poked,) = await storage.watch_poked()
        assert replace(poked, poked_at=None) == make_ticket("s1")
        assert poked.poked_at is not None and before <= poked.poked_at <= time.time()
        # The list shows the poke too; nothing else about the tickets changed.
        assert [t.poked_at is not None for t in await storage.watch_list()] == [True, False]

    async def test_poked_tickets_come_the_longest_waiting_first_and_a_poke_again_keeps_one_row(
            self, storage: Any) -> None:
        await storage.watch_add([make_ticket(s) for s in ("s1", "s2", "s3")])
        for sys_id in ("s3", "s1", "s3"):
            assert await storage.watch_poke("itsm_incident", sys_id)
            later_than((await storage.watch_poked())[-1].poked_at)
        assert [t.sys_id for t in await storage.watch_poked()] == ["s1", "s3"]
        assert [t.sys_id for t in await storage.watch_poked(limit=1)] == ["s1"]

    async def test_a_round_clears_the_pokes_it_answered_and_keeps_a_later_one(self, storage: Any) -> None:
        await storage.watch_add([make_ticket(s) for s in ("s1", "s2", "s3", "s4")])
        for sys_id in ("s1", "s2", "s3"):
            await storage.watch_poke("itsm_incident", sys_id)
        started = later_than(max(t.poked_at or 0.0 for t in await storage.watch_poked()))
        # During the round, after its reads: s2 is poked again, s4 for the first time.
        later_than(started)
        await storage.watch_poke("itsm_incident", "s2")
        await storage.watch_poke("itsm_incident", "s4")
        seen = [make_ticket("s1", state="in_progress"), make_ticket("s2", state="in_progress")]
        await storage.watch_update(seen, [make_notice("n-1")], started=started,
                                   checked=[("itsm_incident", "s3"), ("itsm_incident", "s4"),
                                            ("itsm_incident", "s-unknown")])
        # s1 (recorded) and s3 (looked at, nothing new) are answered; s2's and s4's pokes came
        # after the round began: what they announce may be newer than what it read.
        assert [t.sys_id for t in await storage.watch_poked()] == ["s2", "s4"]
        assert [t.state for t in await storage.watch_list()] == ["in_progress", "in_progress", "new", "new"]
        assert await ids(storage.notices_unsent()) == ["n-1"]
        # The next round answers them.
        await storage.watch_update([], [], started=time.time(), checked=[("itsm_incident", "s2"),
                                                                          ("itsm_incident", "s4")])
        assert await storage.watch_poked() == []

    async def test_an_update_without_the_round_start_leaves_pokes_alone(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1"), make_ticket("s2")])
        await storage.watch_poke("itsm_incident", "s1")
        await storage.watch_poke("itsm_incident", "s2")
        await storage.watch_update([make_ticket("s1", state="closed")], [], checked=[("itsm_incident", "s2")])
        assert [t.sys_id for t in await storage.watch_poked()] == ["s1", "s2"]
        assert (await storage.watch_list())[0].state == "closed"

    async def test_a_dropped_ticket_is_no_longer_poked(self, storage: Any) -> None:
        await storage.watch_add([make_ticket("s1")])
        await storage.watch_poke("itsm_incident", "s1")
        await storage.watch_drop([("itsm_incident", "s1")])
        assert await storage.watch_poked() == []
        assert await storage.watch_poke("itsm_incident", "s1") is False


def later_than(moment: float | None) -> float:
    """A time.time() strictly after `moment` (the clock watch_poke stamps with; it moves on
    within microseconds)."""
    assert moment is not None
    while (now := time.time()) <= moment:
        pass
    return now


class TestLaterSights:
    async def test_a_round_never_overwrites_a_later_sight_recorded_meanwhile(self, storage: Any) -> None:
        """A round read the ticket at 10:00 (state 7); meanwhile the user's move recorded it as
        it left it at 10:05 (state 10): the round's older sight must not bring 7 back."""
        await storage.watch_add([make_ticket("s1", state="7", updated_at="2026-01-01 10:00:00")])
        await storage.watch_add([make_ticket("s1", state="10", updated_at="2026-01-01 10:05:00", active=False)])
        seen = replace(make_ticket("s1", state="7", updated_at="2026-01-01 10:00:00"), comment_after="0042",
                       asked_at=5.0)
        await storage.watch_update([seen], [])
        (row,) = await storage.watch_list()
        assert (row.state, row.updated_at, row.active) == ("10", "2026-01-01 10:05:00", False)
        assert (row.comment_after, row.asked_at) == ("0042", 5.0)  # the round's own, always
        later = replace(make_ticket("s1", state="2", updated_at="2026-01-01 10:09:00"), comment_after="0042")
        await storage.watch_update([later], [])
        assert (await storage.watch_list())[0].state == "2"
