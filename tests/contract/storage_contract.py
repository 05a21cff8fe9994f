"""The whole Storage port's contract: what spans every concern (prune, close and reopen).

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.ports import (
    OUTBOX_FAILED,
    Binding,
    OutboxOutcome,
    SendStats,
    StepCommit,
)
from tests.contract.storage_values import (
    code_sent,
    commit,
    ended,
    finish,
    ids,
    make_code,
    make_item,
    make_notice,
    make_session,
    make_ticket,
    put_code,
    step,
)


class TestPrune:
    async def test_prune_drops_old_rows_only(self, storage: Any) -> None:
        await code_sent(storage, "vk:1", "a@ranepa.ru", 100.0)
        await code_sent(storage, "vk:1", "a@ranepa.ru", 5000.0)
        await put_code(storage, make_code(peer="vk:1", expires_at=500.0))
        await put_code(storage, make_code(peer="vk:2", expires_at=9000.0))
        assert await commit(storage, "vk:3", 0, event_id="ev-1") is True

        assert await storage.prune(1000.0) == 2  # one send, one expired code; the event is new
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", 0.0) == SendStats(1, 1, 1, 5000.0, 5000.0)
        assert await storage.get_code("vk:1") is None
        assert await storage.get_code("vk:2") is not None
        assert await storage.seen_event("ev-1") is True

        assert await storage.prune(time.time() + 60) == 3
        assert await storage.seen_event("ev-1") is False
        # Sessions are not the business of prune.
        assert await storage.load_session("vk:3") is not None


class TestLifetime:
    async def test_everything_survives_close_and_reopen(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("this backend keeps nothing after close")
        first = await storage_backend.open()
        assert await commit(first, "vk:1", 0, "a", event_id="ev-1") is True
        assert await commit(first, "vk:1", 1, "b", event_id="ev-2") is True
        binding = Binding("vk:1", "a@ranepa.ru", "sys-1", "Иван", 1.0)
        await first.put_binding(binding)
        await put_code(first, make_code())
        await code_sent(first, "vk:1", "a@ranepa.ru", 100.0)
        await first.close()

        second = await storage_backend.open()
        try:
            loaded = await second.load_session("vk:1")
            assert loaded.version == 3  # two steps, and the code's
            assert await second.seen_event("ev-2") is True
            assert await second.get_binding("vk:1") == binding
            assert await second.get_code("vk:1") == make_code()
            assert (await second.code_send_stats("vk:1", "x", 0.0)).by_peer == 1
        finally:
            await second.close()

    async def test_close_commits_queued_steps_first(self, storage_backend: Any) -> None:
        storage = await storage_backend.open()
        tasks = [asyncio.create_task(commit(storage, f"vk:{i}", 0, f"s{i}")) for i in range(50)]
        await asyncio.sleep(0)  # every task has now called commit_step
        await storage.close()
        assert await asyncio.gather(*tasks) == [True] * 50

        if storage_backend.persistent:
            reopened = await storage_backend.open()
            try:
                states = [(await reopened.load_session(f"vk:{i}")).state for i in range(50)]
                assert states == [f"s{i}" for i in range(50)]
            finally:
                await reopened.close()

    async def test_close_twice_is_fine(self, storage: Any) -> None:
        await storage.close()
        await storage.close()


class TestOutboxPrune:
    async def test_prune_forgets_only_what_is_done_with(self, storage: Any) -> None:
        names = ["old-told", "new-told", "old-untold", "old-failed-told", "pending"]
        items = {name: make_item(name) for name in names}
        assert await step(storage, "vk:1", 0, outbox=list(items.values())) is True
        await finish(storage, ended(items["old-told"], at=100.0, told=True))
        await finish(storage, ended(items["new-told"], at=5000.0, told=True))
        await finish(storage, ended(items["old-untold"], at=100.0))
        await finish(storage, ended(items["old-failed-told"], OUTBOX_FAILED, at=100.0, told=True))
        await storage.outbox_save(dataclasses.replace(items["pending"], updated_at=50.0, next_at=50.0))
        await storage.notices_add([make_notice("n-sent"), make_notice("n-unsent")])
        await storage.notices_sent(["n-sent"])

        assert await storage.prune(1000.0) == 1  # old-told; the notice was sent just now
        assert await ids(storage.outbox_list()) == ["new-told", "old-untold", "old-failed-told", "pending"]
        assert await ids(storage.notices_unsent()) == ["n-unsent"]

        assert await storage.prune(time.time() + 60) == 2  # new-told and the sent notice
        assert await ids(storage.outbox_list()) == ["old-untold", "old-failed-told", "pending"]
        assert await ids(storage.notices_unsent()) == ["n-unsent"]
        # Pruned, the sent notice's id is forgotten too.
        await storage.notices_add([make_notice("n-sent")])
        assert await ids(storage.notices_unsent()) == ["n-unsent", "n-sent"]


class TestOutboxLifetime:
    async def test_outbox_notices_and_watch_survive_close_and_reopen(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("this backend keeps nothing after close")
        a, b, c = make_item("ob-a"), make_item("ob-b"), make_item("ob-c")
        first = await storage_backend.open()
        assert await step(first, "vk:1", 0, event_id="ev-1", outbox=[a, b, c], replies='[{"t":"wait"}]') is True
        done = ended(a, progress={"ticket": {"sys_id": "s1"}}, told=True)
        outcome = OutboxOutcome(done, notices=[make_notice("n-a")], watch=[make_ticket("s1")],
                                follow_ups=[make_item("ob-a/up0", kind="ticket.upload")])
        assert await step(first, "vk:1", 1, finish=[outcome], reply_of="ev-1", replies='[{"t":"INC0001"}]') is True
        saved = dataclasses.replace(b, attempts=1, next_at=1300.0, updated_at=1100.0, last_error="timeout")
        await first.outbox_save(saved)
        await first.notices_add([make_notice("n-sent")])
        await first.notices_sent(["n-sent"])
        await first.close()

        second = await storage_backend.open()
        try:
            assert await second.outbox_list() == [done, saved, c, make_item("ob-a/up0", kind="ticket.upload")]
            assert await second.outbox_untold(1e12) == []
            assert await second.notices_unsent() == [make_notice("n-a")]
            assert await second.watch_list() == [make_ticket("s1")]
            assert [u.replies for u in await second.replies_unsent()] == ['[{"t":"INC0001"}]']
            assert await second.outbox_tell("ob-a", make_notice("n-again")) is False
        finally:
            await second.close()


class TestCounters:
    async def test_counts_are_written_with_their_step_per_day(self, storage: Any) -> None:
        assert await storage.counts() == []
        day = make_session("vk:1").updated_at  # 2023-11-14, UTC
        assert await step(storage, "vk:1", 0, counts=["hint_helped"])
        assert await step(storage, "vk:1", 1, counts=["hint_helped", "hint_helped", "other"])
        # A refused step counts nothing.
        assert not await step(storage, "vk:1", 0, counts=["hint_helped"])
        found = [(c.name, c.day, c.count) for c in await storage.counts()]
        assert found == [("hint_helped", "2023-11-14", 3), ("other", "2023-11-14", 1)]
        assert await storage.counts("2023-11-15") == []
        assert datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d") == "2023-11-14"

    async def test_an_outcome_counts_on_its_own_day_whoever_records_it(self, storage: Any) -> None:
        # Recorded by the worker (outbox_finish), and handed to a waiting step (its commit): on
        # PostgreSQL the second goes through the commit function, which writes the step's counters.
        first, second = make_item("ob-1"), make_item("ob-2", peer="vk:2")
        assert await step(storage, "vk:1", 0, outbox=[first])
        assert await step(storage, "vk:2", 0, outbox=[second])
        at = datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp()
        await finish(storage, ended(first, at=at), counts=["ticket_created:network", "ticket_wait:2"])
        assert await step(storage, "vk:2", 1, counts=["free_text"],
                          finish=[OutboxOutcome(ended(second, at=at), counts=["ticket_created:network"])])
        found = [(c.name, c.day, c.count) for c in await storage.counts()]
        assert found == [("free_text", "2023-11-14", 1), ("ticket_created:network", "2026-12-01", 2),
                         ("ticket_wait:2", "2026-12-01", 1)]
        # An outcome recorded already writes nothing again, counters included.
        await finish(storage, ended(first, at=at), counts=["ticket_created:network"])
        assert [c.count for c in await storage.counts("2026-12-01")] == [2, 1]

    async def test_old_days_are_pruned_and_the_rest_kept(self, storage: Any) -> None:
        assert await storage.prune_counts("2000-01-01") == 0
        assert await step(storage, "vk:1", 0, counts=["hint_helped", "rating_5"])  # 2023-11-14
        other = dataclasses.replace(make_session("vk:2"), updated_at=datetime(2023, 11, 15, tzinfo=UTC).timestamp())
        assert await storage.commit_step(StepCommit(other, 0, counts=["hint_helped"]))
        assert await storage.prune_counts("2023-11-15") == 2
        assert [(c.name, c.day) for c in await storage.counts()] == [("hint_helped", "2023-11-15")]
        # Pruning is not the general prune's business: that one leaves counters alone.
        await storage.prune(time.time() + 10**9)
        assert len(await storage.counts()) == 1

    async def test_idle_sessions_are_counted_by_the_state_they_wait_at(self, storage: Any) -> None:
        assert await storage.idle_states(2e9) == {}
        for n, (state, at) in enumerate([("create_ticket.describe", 1000.0), ("create_ticket.describe", 2000.0),
                                         ("auth.ask_email", 1500.0), ("create_ticket.describe", 9000.0)]):
            session = dataclasses.replace(make_session(f"vk:{n}", state), updated_at=at)
            assert await storage.commit_step(StepCommit(session, 0))
        assert await storage.idle_states(5000.0) == {"create_ticket.describe": 2, "auth.ask_email": 1}
        assert await storage.idle_states(1000.0) == {}
