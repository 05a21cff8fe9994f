"""The inbox port's contract (Inbox, Cursors): events handled once, kept replies, cursors.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.ports import (
    StepCommit,
)
from tests.contract.storage_values import (
    commit,
    make_session,
)


class TestInbox:
    async def test_event_is_seen_after_its_step_commits(self, storage: Any) -> None:
        assert await storage.seen_event("ev-1") is False
        assert await commit(storage, "vk:1", 0, event_id="ev-1") is True
        assert await storage.seen_event("ev-1") is True
        assert await storage.seen_event("ev-2") is False

    async def test_refused_step_records_no_event(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 3, event_id="ev-1") is False
        assert await storage.seen_event("ev-1") is False

    async def test_an_event_is_handled_by_one_step_only(self, storage: Any) -> None:
        # The engine drops duplicates with seen_event before a step; one that races past the
        # check (another writer, the same batch) must not step a session a second time.
        results = await asyncio.gather(*(commit(storage, f"vk:{i}", 0, event_id="ev-1") for i in range(5)))
        assert sorted(results) == [False] * 4 + [True]
        winner = results.index(True)
        for i in range(5):
            stored = await storage.load_session(f"vk:{i}")
            assert (stored is not None) == (i == winner)  # the losers' steps were undone
        assert await commit(storage, f"vk:{winner}", 1, event_id="ev-1") is False
        assert await commit(storage, f"vk:{winner}", 1, event_id="ev-2") is True
        assert await storage.seen_event("ev-1") is True

    async def test_received_events_wait_in_order_until_handled(self, storage: Any) -> None:
        body = '{"type":"message_new","text":"Привет"}'
        assert await storage.inbox_add("ev-1", "vk:1", body) is True
        assert await storage.inbox_add("ev-2", "vk:2", "{}") is True
        assert await storage.inbox_add("ev-3", "vk:1", "{}") is True
        assert await storage.inbox_add("ev-1", "vk:1", body) is False  # a resend: drop it
        # Received is not handled: the engine must still handle them.
        assert await storage.seen_event("ev-1") is False
        pending = await storage.inbox_pending()
        assert [(e.event_id, e.peer) for e in pending] == [("ev-1", "vk:1"), ("ev-2", "vk:2"), ("ev-3", "vk:1")]
        assert pending[0].body == body
        assert await commit(storage, "vk:1", 0, event_id="ev-1") is True
        assert [e.event_id for e in await storage.inbox_pending()] == ["ev-2", "ev-3"]
        assert [e.event_id for e in await storage.inbox_pending(limit=1)] == ["ev-2"]
        assert await storage.seen_event("ev-1") is True
        assert await storage.inbox_add("ev-1", "vk:1", body) is False  # handled: still a duplicate

    async def test_prune_keeps_events_not_yet_handled(self, storage: Any) -> None:
        await storage.inbox_add("ev-waiting", "vk:1", "{}")
        await storage.prune(time.time() + 60)
        assert [e.event_id for e in await storage.inbox_pending()] == ["ev-waiting"]


class TestKeptReplies:
    async def test_replies_wait_with_their_event_until_marked_sent(self, storage: Any) -> None:
        await storage.inbox_add("ev-cb", "vk:2", "{}")  # received first (a callback)
        step = StepCommit(make_session("vk:1"), 0, event_id="ev-lp", replies='[{"t":"one"}]')
        assert await storage.commit_step(step) is True
        step = StepCommit(make_session("vk:2"), 0, event_id="ev-cb", replies='[{"t":"two"}]')
        assert await storage.commit_step(step) is True
        assert await commit(storage, "vk:3", 0, event_id="ev-none") is True  # nothing kept
        unsent = await storage.replies_unsent()
        assert [(u.event_id, u.peer, u.replies) for u in unsent] == [
            ("ev-cb", "vk:2", '[{"t":"two"}]'), ("ev-lp", "vk:1", '[{"t":"one"}]')]
        await storage.replies_sent(["ev-lp"])
        assert [u.event_id for u in await storage.replies_unsent()] == ["ev-cb"]
        await storage.replies_sent(["ev-cb", "ev-unknown"])
        assert await storage.replies_unsent() == []

    async def test_kept_replies_say_whether_a_later_step_of_the_peer_overtook_them(self, storage: Any) -> None:
        one = StepCommit(make_session("vk:1"), 0, event_id="ev-1", replies='[{"t":"one"}]')
        assert await storage.commit_step(one) is True
        other_peer = StepCommit(make_session("vk:2"), 0, event_id="ev-x", replies='[{"t":"x"}]')
        assert await storage.commit_step(other_peer) is True
        assert [(u.event_id, u.overtaken) for u in await storage.replies_unsent()] == [("ev-1", False), ("ev-x", False)]
        # A follow-up of ev-1 (an outcome told within the wait) replaces its replies: still current.
        follow = StepCommit(make_session("vk:1"), 1, replies='[{"t":"one, settled"}]', reply_of="ev-1")
        assert await storage.commit_step(follow) is True
        first = (await storage.replies_unsent())[0]
        assert (first.replies, first.overtaken) == ('[{"t":"one, settled"}]', False)
        # The user's next event was handled (by another worker, say): ev-1's answer is overtaken.
        assert await commit(storage, "vk:1", 2, event_id="ev-2") is True
        assert [(u.event_id, u.overtaken) for u in await storage.replies_unsent()] == [("ev-1", True), ("ev-x", False)]

    async def test_a_refused_step_keeps_no_replies(self, storage: Any) -> None:
        assert await storage.commit_step(StepCommit(make_session("vk:1"), 5, event_id="e", replies="[]")) is False
        assert await storage.replies_unsent() == []

    async def test_events_can_be_closed_without_a_step(self, storage: Any) -> None:
        await storage.inbox_add("old", "vk:1", "{}")
        await storage.inbox_add("new", "vk:1", "{}")
        await storage.inbox_mark_handled(["old"])
        assert [e.event_id for e in await storage.inbox_pending()] == ["new"]
        assert await storage.seen_event("old") is True


class TestWhatAGoneProcessLeft:
    async def test_only_what_processes_that_are_gone_left_is_listed_as_theirs(
            self, storage: Any, storage_backend: Any) -> None:
        """A process that is gone: closed here (killed, in life); on SQLite, any earlier run."""
        if not storage_backend.persistent:
            pytest.skip("each open of an in-memory database is a database of its own")
        gone = await storage_backend.open()
        assert await gone.inbox_add("ev-gone", "vk:1", "{}")
        assert await gone.commit_step(StepCommit(make_session("vk:2"), 0, event_id="ev-gone-r", replies="[]"))
        await gone.close()
        assert await storage.inbox_add("ev-mine", "vk:3", "{}")
        assert await storage.commit_step(StepCommit(make_session("vk:4"), 0, event_id="ev-mine-r", replies="[]"))
        live = await storage_backend.open()
        try:
            if storage.shared:  # a live process's are its own (on SQLite there is only one)
                assert await live.inbox_add("ev-live", "vk:5", "{}")
            assert [e.event_id for e in await storage.inbox_pending(gone_only=True)] == ["ev-gone"]
            assert [u.event_id for u in await storage.replies_unsent(gone_only=True)] == ["ev-gone-r"]
            assert {e.event_id for e in await storage.inbox_pending()} >= {"ev-gone", "ev-mine"}
        finally:
            await live.close()


class TestCursors:
    async def test_put_get_replace(self, storage: Any) -> None:
        assert await storage.get_cursor("vk:longpoll:1") is None
        await storage.put_cursor("vk:longpoll:1", "41")
        await storage.put_cursor("vk:longpoll:2", "7")
        await storage.put_cursor("vk:longpoll:1", "42")
        assert await storage.get_cursor("vk:longpoll:1") == "42"
        assert await storage.get_cursor("vk:longpoll:2") == "7"
