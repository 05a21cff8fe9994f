"""The outbox port's contract (OutboxStore), and outbox work written with steps.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ports import (
    OUTBOX_DONE,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    OutboxOutcome,
    StepCommit,
)
from tests.contract.storage_values import (
    claim,
    ended,
    finish,
    ids,
    make_item,
    make_notice,
    make_session,
    make_ticket,
    step,
)


class TestOutboxSummary:
    async def test_counts_pending_and_failed_and_the_oldest_pending(self, storage: Any) -> None:
        empty = await storage.outbox_summary()
        assert (empty.pending, empty.failed, empty.oldest_pending_at) == (0, 0, None)
        items = [make_item("ob-1", "vk:1", created_at=100.0), make_item("ob-2", "vk:2", created_at=50.0),
                 make_item("ob-3", "vk:3", created_at=10.0), make_item("ob-4", "vk:4", created_at=5.0)]
        assert await step(storage, "vk:1", 0, outbox=items) is True
        await finish(storage, ended(items[2], OUTBOX_FAILED))
        await finish(storage, ended(items[3], OUTBOX_DONE))
        summary = await storage.outbox_summary()
        assert (summary.pending, summary.failed, summary.oldest_pending_at) == (2, 1, 50.0)


class TestOutboxInSteps:
    async def test_items_are_committed_with_their_step(self, storage: Any) -> None:
        a, b = make_item("ob-a"), make_item("ob-b", kind="ticket.comment", payload={"text": "ещё"})
        assert await step(storage, "vk:1", 0, event_id="ev-1", outbox=[a, b]) is True
        assert await storage.outbox_get("ob-a") == a  # every field round-trips
        assert await storage.outbox_get("ob-b") == b
        assert await storage.outbox_get("ob-none") is None
        assert await storage.outbox_list() == [a, b]

    async def test_a_stale_step_writes_none_of_its_items(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0) is True
        assert await step(storage, "vk:1", 0, outbox=[make_item("ob-stale")]) is False
        assert await step(storage, "vk:2", 3, outbox=[make_item("ob-ahead")]) is False
        assert await storage.outbox_list() == []
        assert await storage.outbox_due(1e12) == []

    async def test_a_step_whose_event_was_handled_writes_none_of_its_items(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0, event_id="ev-1", outbox=[make_item("ob-1")]) is True
        # The same event stepped again (a duplicate that raced past seen_event): nothing written.
        assert await step(storage, "vk:1", 1, event_id="ev-1", outbox=[make_item("ob-dup")]) is False
        assert await ids(storage.outbox_list()) == ["ob-1"]
        assert (await storage.load_session("vk:1")).version == 1

    async def test_racing_steps_of_one_event_leave_the_winners_items_only(self, storage: Any) -> None:
        results = await asyncio.gather(
            *(step(storage, f"vk:{i}", 0, event_id="ev-1", outbox=[make_item(f"ob-{i}", f"vk:{i}")])
              for i in range(5))
        )
        assert sorted(results) == [False] * 4 + [True]
        assert await ids(storage.outbox_list()) == [f"ob-{results.index(True)}"]

    async def test_a_refused_step_does_not_fail_its_neighbours_items(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0) is True
        results = await asyncio.gather(
            step(storage, "vk:2", 0, outbox=[make_item("ob-2", "vk:2")]),
            step(storage, "vk:1", 0, outbox=[make_item("ob-1", "vk:1")]),  # stale
            step(storage, "vk:3", 0, outbox=[make_item("ob-3", "vk:3")]),
        )
        assert results == [True, False, True]
        assert await ids(storage.outbox_list()) == ["ob-2", "ob-3"]

    async def test_a_step_records_the_outcomes_handed_to_it(self, storage: Any) -> None:
        a = make_item("ob-a")
        assert await step(storage, "vk:1", 0, outbox=[a]) is True
        done = ended(a, told=True)
        outcome = OutboxOutcome(done, follow_ups=[make_item("ob-a/up0", kind="ticket.upload")],
                                watch=[make_ticket("s1")])
        # A refused step records nothing of it.
        assert await step(storage, "vk:1", 0, finish=[outcome]) is False
        assert (await storage.outbox_get("ob-a")).state == OUTBOX_PENDING
        assert await storage.watch_list() == []
        assert await step(storage, "vk:1", 1, finish=[outcome]) is True
        assert await storage.outbox_get("ob-a") == done
        assert await ids(storage.outbox_list()) == ["ob-a", "ob-a/up0"]
        assert await storage.watch_list() == [make_ticket("s1")]
        assert await storage.outbox_untold(1e12) == []
        # Recorded once: the worker's own outbox_finish afterwards changes nothing.
        assert await storage.outbox_finish(outcome) is False

    async def test_a_step_whose_outcome_was_recorded_meanwhile_fails_whole(self, storage: Any) -> None:
        a = make_item("ob-a")
        assert await step(storage, "vk:1", 0, outbox=[a], event_id="ev-1", replies="[]") is True
        assert await storage.outbox_finish(OutboxOutcome(ended(a, told=True), notices=[make_notice("n-a")]))
        late = OutboxOutcome(ended(a, at=3000.0, told=True))
        assert await step(storage, "vk:1", 1, finish=[late], reply_of="ev-1",
                          replies='[{"t":"x"}]') is False
        assert (await storage.load_session("vk:1")).version == 1  # the step is undone
        assert (await storage.outbox_get("ob-a")).updated_at == 2000.0
        assert [r.replies for r in await storage.replies_unsent()] == ["[]"]  # not replaced

    async def test_items_on_one_record_are_due_in_order(self, storage: Any) -> None:
        first = make_item("ob-1", kind="ticket.comment", record="itsm_incident/1")
        other = make_item("ob-2", kind="ticket.comment", record="itsm_incident/2")
        second = make_item("ob-3", kind="ticket.comment", record="itsm_incident/1")
        create = make_item("ob-4")
        assert await step(storage, "vk:1", 0, outbox=[first, other, second, create]) is True
        assert await ids(storage.outbox_due(1e12)) == ["ob-1", "ob-2", "ob-4"]
        # Waiting out a backoff, the first still holds the second back; others go on.
        await storage.outbox_save(dataclasses.replace(first, attempts=1, next_at=5000.0))
        assert await ids(storage.outbox_due(1200.0)) == ["ob-2", "ob-4"]
        await finish(storage, ended(first))
        assert await ids(storage.outbox_due(1200.0)) == ["ob-2", "ob-3", "ob-4"]
        assert (await storage.outbox_get("ob-3")).record == "itsm_incident/1"

    async def test_a_follow_up_replaces_the_kept_replies_of_its_event(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0, event_id="ev-1", replies='[{"t":"wait"}]') is True
        follow_up = '[{"t":"wait"},{"t":"INC0001"}]'
        assert await step(storage, "vk:1", 1, reply_of="ev-1", replies=follow_up) is True
        assert [(u.event_id, u.peer, u.replies) for u in await storage.replies_unsent()] == [
            ("ev-1", "vk:1", follow_up)]
        assert await storage.seen_event("ev-1") is True

    async def test_a_follow_up_leaves_sent_replies_alone(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0, event_id="ev-1", replies='[{"t":"wait"}]') is True
        await storage.replies_sent(["ev-1"])
        # Sent already: the follow-up still commits, and nothing is kept to be sent again.
        assert await step(storage, "vk:1", 1, reply_of="ev-1", replies='[{"t":"late"}]') is True
        assert await step(storage, "vk:1", 2, reply_of="ev-unknown", replies='[{"t":"x"}]') is True
        assert await storage.replies_unsent() == []
        assert (await storage.load_session("vk:1")).version == 3

    async def test_a_refused_follow_up_replaces_nothing(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0, event_id="ev-1", replies='[{"t":"wait"}]') is True
        assert await step(storage, "vk:1", 0, reply_of="ev-1", replies='[{"t":"stale"}]') is False
        assert [u.replies for u in await storage.replies_unsent()] == ['[{"t":"wait"}]']

    async def test_a_follow_up_without_replies_keeps_the_earlier_ones(self, storage: Any) -> None:
        assert await step(storage, "vk:1", 0, event_id="ev-1", replies='[{"t":"wait"}]') is True
        assert await step(storage, "vk:1", 1, reply_of="ev-1") is True
        assert [u.replies for u in await storage.replies_unsent()] == ['[{"t":"wait"}]']


class TestOutboxQueue:
    async def test_due_items_come_in_insertion_order_once_their_time_has_come(self, storage: Any) -> None:
        items = [
            make_item("ob-1", created_at=500.0, next_at=300.0),
            make_item("ob-2", created_at=100.0, next_at=100.0),  # older timestamp, inserted later
            make_item("ob-3", created_at=100.0, next_at=250.0),
            make_item("ob-4", created_at=100.0, next_at=200.0),
        ]
        for expected, item in enumerate(items):
            assert await step(storage, "vk:1", expected, outbox=[item]) is True
        assert await storage.outbox_due(99.0) == []
        assert await ids(storage.outbox_due(200.0)) == ["ob-2", "ob-4"]  # next_at <= now, inclusive
        assert await ids(storage.outbox_due(300.0)) == ["ob-1", "ob-2", "ob-3", "ob-4"]
        assert await ids(storage.outbox_due(300.0, limit=2)) == ["ob-1", "ob-2"]

        await finish(storage, ended(items[1]))
        await finish(storage, ended(items[2], OUTBOX_FAILED))
        assert await ids(storage.outbox_due(1e12)) == ["ob-1", "ob-4"]  # finished items are not due

    async def test_save_keeps_a_pending_items_progress(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        tried = dataclasses.replace(
            item, attempts=2, next_at=1600.0, updated_at=1100.0, last_error="timeout: ещё раз",
            progress={"ticket": {"table": "itsm_incident", "sys_id": "s1", "number": "INC1"}, "uploaded": ["f1"]},
            # save stores attempts, next_at, updated_at, last_error, progress: nothing else.
            payload={"changed": True}, kind="other", state=OUTBOX_DONE, result={"x": 1}, told=True,
        )
        await storage.outbox_save(tried)
        expected = dataclasses.replace(item, attempts=2, next_at=1600.0, updated_at=1100.0,
                                       last_error="timeout: ещё раз", progress=tried.progress)
        assert await storage.outbox_get("ob-1") == expected
        assert await storage.outbox_due(1599.0) == []
        assert await storage.outbox_due(1600.0) == [expected]
        await storage.outbox_save(make_item("ob-missing"))  # nothing to save: no error, no row
        assert await storage.outbox_get("ob-missing") is None

    async def test_save_does_not_touch_a_finished_item(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        done = ended(item)
        await finish(storage, done)
        await storage.outbox_save(dataclasses.replace(item, attempts=9, last_error="late", next_at=1.0))
        assert await storage.outbox_get("ob-1") == done

    async def test_finish_writes_the_outcome_and_what_follows_at_once(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        await storage.notices_add([make_notice("n-old", text="first text")])
        await storage.watch_add([make_ticket("s0", state="closed")])
        done = ended(item, progress={"ticket": {"sys_id": "s1"}}, last_error="")
        uploads = [make_item(f"ob-1/up{i}", kind="ticket.upload", created_at=2000.0, next_at=2000.0,
                             payload={"file": i}) for i in range(2)]
        watch = [make_ticket("s1"), make_ticket("s0", state="new")]
        await finish(storage, done, notices=[make_notice("n-1"), make_notice("n-old", text="second text")],
                     follow_ups=uploads, watch=watch)

        assert await storage.outbox_get("ob-1") == done
        assert await storage.outbox_list([OUTBOX_DONE]) == [done]
        assert await storage.outbox_due(1e12) == uploads
        # A notice whose id exists is ignored; a ticket followed already keeps what was seen.
        assert [(n.id, n.text) for n in await storage.notices_unsent()] == [
            ("n-old", "first text"), ("n-1", "Заявка INC0001 создана")]
        assert await storage.watch_list() == [make_ticket("s0", state="closed"), make_ticket("s1")]

    async def test_finish_written_twice_adds_its_follow_ups_once(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        outcome = OutboxOutcome(ended(item), follow_ups=[make_item("ob-1/up0", kind="ticket.upload")],
                                notices=[make_notice("n-1")])
        assert await storage.outbox_finish(outcome) is True
        assert await storage.outbox_finish(outcome) is False  # finished already: nothing follows again
        assert await ids(storage.outbox_list()) == ["ob-1", "ob-1/up0"]
        assert await ids(storage.notices_unsent()) == ["n-1"]

    async def test_an_outcome_of_a_dropped_item_writes_nothing(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        assert await storage.outbox_drop("ob-1") is not None
        outcome = OutboxOutcome(ended(item), follow_ups=[make_item("ob-1/up0", kind="ticket.upload")],
                                notices=[make_notice("n-1")], watch=[make_ticket("s1")])
        assert await storage.outbox_finish(outcome) is False
        assert await storage.outbox_list() == [] and await storage.notices_unsent() == []
        assert await storage.watch_list() == []

    async def test_a_lease_is_moved_only_by_the_worker_that_holds_it(self, storage: Any) -> None:
        item = make_item("ob-1", next_at=100.0)
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        assert await claim(storage, 100.0, 200.0) == ["ob-1"]
        assert await storage.outbox_lease("ob-1", 150.0, 400.0) is False  # not the lease held
        assert await storage.outbox_lease("ob-1", 200.0, 300.0) is True  # renewed
        claimed = await storage.outbox_get("ob-1")
        assert claimed is not None and (claimed.next_at, claimed.attempts) == (300.0, item.attempts + 1)
        # Given back, its attempt uncounted; then another worker's claim wins over the old holder.
        assert await storage.outbox_lease("ob-1", 300.0, 120.0, attempts=-1) is True
        given_back = await storage.outbox_get("ob-1")
        assert given_back is not None and (given_back.next_at, given_back.attempts) == (120.0, item.attempts)
        assert await claim(storage, 130.0, 500.0) == ["ob-1"]
        assert await storage.outbox_lease("ob-1", 300.0, 130.0, attempts=-1) is False
        await finish(storage, ended(item))
        assert await storage.outbox_lease("ob-1", 500.0, 600.0) is False  # done

    async def test_a_take_counts_the_attempt_and_hides_the_item_until_its_lease_ends(self, storage: Any) -> None:
        item = make_item("ob-1", next_at=100.0)
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        assert await claim(storage, 99.0, 200.0) == []  # not due yet
        assert await claim(storage, 100.0, 200.0) == ["ob-1"]
        assert await claim(storage, 150.0, 300.0) == []  # another worker has it
        assert await storage.outbox_due(150.0) == []
        claimed = await storage.outbox_get("ob-1")
        assert claimed is not None and claimed.attempts == item.attempts + 1 and claimed.next_at == 200.0
        assert [i.id for i in await storage.outbox_due(200.0)] == ["ob-1"]  # the lease ran out
        assert await claim(storage, 200.0, 300.0) == ["ob-1"]
        await finish(storage, ended(item))
        assert await claim(storage, 1e12, 1e12 + 1) == []  # done

    async def test_take_claims_the_due_items_at_once_with_a_lease_per_kind(self, storage: Any) -> None:
        items = [make_item("ob-1", next_at=100.0), make_item("ob-2", kind="ticket.upload", next_at=100.0),
                 make_item("ob-3", kind="ticket.comment", next_at=100.0), make_item("ob-4", next_at=500.0),
                 make_item("ob-5", kind="ticket.comment", record="itsm_incident:s1", next_at=100.0),
                 make_item("ob-6", kind="ticket.comment", record="itsm_incident:s1", next_at=100.0)]
        assert await step(storage, "vk:1", 0, outbox=items) is True
        leases = {"ticket.create": 40.0, "ticket.upload": 130.0}
        taken = await storage.outbox_take(150.0, leases, limit=3)
        assert [(i.id, i.attempts, i.next_at) for i in taken] == [
            ("ob-1", 1, 190.0), ("ob-2", 1, 280.0), ("ob-3", 1, 280.0)]  # a kind not named: the longest
        assert taken == [await storage.outbox_get(i) for i in ("ob-1", "ob-2", "ob-3")]
        # Taken items are hidden until their lease ends; not yet due, or behind an older one on
        # the same record, are not taken at all.
        assert await ids(storage.outbox_take(150.0, leases)) == ["ob-5"]
        assert await storage.outbox_take(150.0, leases) == []
        assert await ids(storage.outbox_take(190.0, leases)) == ["ob-1"]  # its lease ran out
        await finish(storage, ended(items[4]))
        assert await ids(storage.outbox_take(500.0, leases)) == ["ob-1", "ob-2", "ob-3", "ob-4", "ob-6"]

    async def test_concurrent_takes_never_hand_out_one_item_twice(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("each open of an in-memory database is a database of its own")
        workers = [await storage_backend.open() for _ in range(3)]
        try:
            first = workers[0]
            for n in range(4):
                batch = [make_item(f"ob-{n}-{i}", peer=f"vk:{n}", next_at=100.0) for i in range(25)]
                assert await step(first, f"vk:{n}", 0, outbox=batch) is True
            rounds = await asyncio.gather(*(w.outbox_take(150.0, {"ticket.create": 60.0}, limit=20)
                                            for w in workers for _ in range(3)))
            taken = [i.id for r in rounds for i in r]
            assert len(taken) == len(set(taken)) == 100
        finally:
            for w in workers:
                await w.close()

    async def test_on_shared_storage_an_item_held_by_a_process_that_is_gone_is_due_at_once(
            self, storage: Any, storage_backend: Any) -> None:
        """Before: a killed worker's items waited out their leases (minutes for a ticket)."""
        if not storage.shared:
            pytest.skip("one process at a time: an earlier run's items wait out their leases")
        other = await storage_backend.open()
        assert await step(storage, "vk:1", 0, outbox=[make_item("ob-1", next_at=100.0)]) is True
        assert await ids(other.outbox_take(150.0, {"ticket.create": 300.0})) == ["ob-1"]
        assert await storage.outbox_take(160.0, {"ticket.create": 300.0}) == []  # in the other's hands
        # One a step wrote in hand (the worker that took the user's «Отправить» runs it at once)
        # is its writer's while the writer lives. Before: taken by another worker at once, and
        # the user heard both the number and "принята, номер придёт позже".
        in_hand = make_item("ob-2", peer="vk:2", next_at=400.0, held=True, updated_at=100.0)
        assert await step(other, "vk:2", 0, outbox=[in_hand]) is True
        assert await storage.outbox_take(165.0, {"ticket.create": 300.0}) == []
        # That step's answer, kept and not sent yet when its process died.
        kept = StepCommit(make_session("vk:2"), 1, event_id="ev-submit", replies='[{"t":"принята"}]')
        assert await other.commit_step(kept) is True
        await other.close()  # gone, as a killed process is
        # Not in the first 15 s after its holder last touched it: a presence that blinked (a
        # database restart) comes back within them, and an attempt in flight is not run twice.
        assert await storage.outbox_take(164.0, {"ticket.create": 300.0}) == []
        [item] = await storage.outbox_take(170.0, {"ticket.create": 300.0})
        assert (item.id, item.attempts, item.next_at) == ("ob-1", 2, 470.0)  # the attempt counted
        # The user's kept answer goes first (the sweep sends it within seconds), the outcome after.
        assert await storage.outbox_take(175.0, {"ticket.create": 300.0}) == []
        await storage.replies_sent(["ev-submit"])
        assert await ids(storage.outbox_take(180.0, {"ticket.create": 300.0})) == ["ob-2"]
        assert await storage.outbox_take(190.0, {"ticket.create": 300.0}) == []  # now in this one's

    async def test_a_failed_item_keeps_its_error_and_result(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        failed = ended(item, OUTBOX_FAILED, last_error="400: поле subject обязательно")
        await finish(storage, failed)
        assert await storage.outbox_get("ob-1") == failed
        assert await storage.outbox_list([OUTBOX_FAILED]) == [failed]
        assert await storage.outbox_list([OUTBOX_PENDING, OUTBOX_DONE]) == []

    async def test_list_filters_by_state_oldest_first(self, storage: Any) -> None:
        items = [make_item(f"ob-{i}", created_at=1000.0 - i) for i in range(5)]
        assert await step(storage, "vk:1", 0, outbox=items) is True
        await finish(storage, ended(items[1]))
        await finish(storage, ended(items[3], OUTBOX_FAILED))
        assert await ids(storage.outbox_list()) == ["ob-0", "ob-1", "ob-2", "ob-3", "ob-4"]
        assert await ids(storage.outbox_list(limit=2)) == ["ob-0", "ob-1"]
        assert await ids(storage.outbox_list([OUTBOX_PENDING])) == ["ob-0", "ob-2", "ob-4"]
        assert await ids(storage.outbox_list([OUTBOX_FAILED, OUTBOX_DONE])) == ["ob-1", "ob-3"]
        assert await ids(storage.outbox_list(["unknown"])) == []

    async def test_untold_lists_finished_items_not_told_yet(self, storage: Any) -> None:
        items = [make_item(f"ob-{i}") for i in range(5)]
        assert await step(storage, "vk:1", 0, outbox=items) is True
        await finish(storage, ended(items[0], at=3000.0))
        await finish(storage, ended(items[1], OUTBOX_FAILED, at=2000.0))
        await finish(storage, ended(items[2], at=2500.0))
        await finish(storage, ended(items[3], at=2000.0, told=True))  # told as it finished
        # items[4] is still pending.
        assert await storage.outbox_untold(1999.0) == []
        assert await ids(storage.outbox_untold(2000.0)) == ["ob-1"]  # finished_at <= the bound
        assert await ids(storage.outbox_untold(1e12)) == ["ob-1", "ob-2", "ob-0"]  # by finish time
        assert await ids(storage.outbox_untold(1e12, limit=1)) == ["ob-1"]
        assert await storage.outbox_tell("ob-2", None) is True
        assert await ids(storage.outbox_untold(1e12)) == ["ob-1", "ob-0"]

    async def test_tell_is_once_only_with_its_notice(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        await finish(storage, ended(item))
        assert await storage.outbox_tell("ob-1", make_notice("n-1")) is True
        assert await storage.outbox_tell("ob-1", make_notice("n-2")) is False
        assert await storage.outbox_tell("ob-1", None) is False
        assert await storage.notices_unsent() == [make_notice("n-1")]
        assert (await storage.outbox_get("ob-1")).told is True
        assert await storage.outbox_tell("ob-missing", make_notice("n-3")) is False
        assert await ids(storage.notices_unsent()) == ["n-1"]

    async def test_concurrent_tells_have_one_winner(self, storage: Any) -> None:
        item = make_item("ob-1")
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        await finish(storage, ended(item))
        results = await asyncio.gather(*(storage.outbox_tell("ob-1", make_notice(f"n-{i}")) for i in range(10)))
        assert results.count(True) == 1
        assert await ids(storage.notices_unsent()) == [f"n-{results.index(True)}"]

    async def test_retry_starts_a_failed_item_again(self, storage: Any) -> None:
        item = make_item("ob-1", progress={"ticket": {"sys_id": "s1"}})
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        failed = ended(item, OUTBOX_FAILED, attempts=5, last_error="503", progress={"ticket": {"sys_id": "s1"}})
        await finish(storage, failed)
        assert await storage.outbox_tell("ob-1", make_notice("n-fail")) is True

        assert await storage.outbox_retry("ob-1", 9000.0) is True
        again = dataclasses.replace(failed, state=OUTBOX_PENDING, next_at=9000.0, updated_at=9000.0,
                                    result=None, told=False, retried_at=9000.0)
        assert await storage.outbox_get("ob-1") == again  # attempts, last_error and progress are kept
        assert await storage.outbox_due(8999.0) == []
        assert await storage.outbox_due(9000.0) == [again]
        assert await storage.outbox_untold(1e12) == []
        # Its next outcome is told afresh.
        await finish(storage, ended(again, at=9100.0))
        assert await storage.outbox_tell("ob-1", make_notice("n-done")) is True
        assert await ids(storage.notices_unsent()) == ["n-fail", "n-done"]

    async def test_retry_makes_a_pending_item_due_and_refuses_done_or_missing_ones(self, storage: Any) -> None:
        pending, done = make_item("ob-p"), make_item("ob-d")
        assert await step(storage, "vk:1", 0, outbox=[pending, done]) is True
        await storage.outbox_save(dataclasses.replace(pending, attempts=3, next_at=5000.0, last_error="timeout"))
        finished = ended(done)
        await finish(storage, finished)

        assert await storage.outbox_retry("ob-p", 1200.0) is True
        assert await storage.outbox_get("ob-p") == dataclasses.replace(
            pending, attempts=3, next_at=1200.0, updated_at=1200.0, last_error="timeout", retried_at=1200.0)
        assert await storage.outbox_retry("ob-d", 1200.0) is False
        assert await storage.outbox_get("ob-d") == finished
        assert await storage.outbox_retry("ob-missing", 1200.0) is False
        assert await storage.outbox_get("ob-missing") is None

    async def test_retry_leaves_an_item_a_worker_holds_until_its_lease_runs_out(self, storage: Any) -> None:
        item = make_item("ob-1", next_at=100.0)
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        assert await claim(storage, 100.0, 200.0) == ["ob-1"]
        claimed = await storage.outbox_get("ob-1")
        assert claimed is not None and claimed.held
        assert await storage.outbox_retry("ob-1", 150.0) is False  # it may be running
        assert await storage.outbox_retry("ob-1", 200.0) is True  # the lease ran out (its worker died)
        retried = await storage.outbox_get("ob-1")
        assert retried is not None and (retried.held, retried.next_at) == (False, 200.0)
        # Taken, then its attempt ended in a backoff: not held, so it can be brought forward.
        [taken] = await storage.outbox_take(200.0, {"ticket.create": 45.0})
        assert taken.held and taken == await storage.outbox_get("ob-1")
        await storage.outbox_save(dataclasses.replace(taken, held=False, next_at=900.0, last_error="503"))
        assert await storage.outbox_retry("ob-1", 210.0) is True
        # Given back untried: not held either.
        assert await claim(storage, 210.0, 300.0) == ["ob-1"]
        assert await storage.outbox_lease("ob-1", 300.0, 210.0, attempts=-1) is True
        given_back = await storage.outbox_get("ob-1")
        assert given_back is not None and not given_back.held

    async def test_drop_deletes_items_that_are_not_done(self, storage: Any) -> None:
        pending, failed, done = make_item("ob-p"), make_item("ob-f"), make_item("ob-d")
        assert await step(storage, "vk:1", 0, outbox=[pending, failed, done]) is True
        failed_now, done_now = ended(failed, OUTBOX_FAILED), ended(done)
        await finish(storage, failed_now)
        await finish(storage, done_now)

        assert await storage.outbox_drop("ob-p") == pending
        assert await storage.outbox_drop("ob-f") == failed_now
        assert await storage.outbox_drop("ob-d") is None
        assert await storage.outbox_drop("ob-p") is None  # gone already
        assert await storage.outbox_drop("ob-missing") is None
        assert await storage.outbox_list() == [done_now]
        assert await storage.outbox_retry("ob-p", 1.0) is False


# --------------------------------------------------------------------------- telling property

TELL_OPS = st.lists(
    st.tuples(st.sampled_from(["finish", "fail", "tell", "retry", "step_tell"]), st.integers(0, 1),
              st.integers(1, 3)),
    min_size=1,
    max_size=14,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=TELL_OPS)
async def test_each_outcome_is_told_once(storage: Any, ops: list[tuple[str, int, int]]) -> None:
    """Any interleaving of finishing, telling (racing tells included), retrying and steps that
    tell: an outcome is told at most once until a retry starts it again, and each tell that wins
    stores its notice exactly once. Model: told flips only from False, a retry resets it."""
    prefix = uuid.uuid4().hex[:8]  # the storage outlives examples: fresh ids for each one
    peer = f"vk:{prefix}"
    items = [make_item(f"{prefix}-ob{i}", peer) for i in range(2)]
    assert await step(storage, peer, 0, outbox=items) is True
    version = 1
    state = {i.id: OUTBOX_PENDING for i in items}
    told = {i.id: False for i in items}
    notices: list[str] = []

    for n, (op, which, racers) in enumerate(ops):
        item = items[which]
        if op in ("finish", "fail"):
            ending = OUTBOX_DONE if op == "finish" else OUTBOX_FAILED
            finished = await storage.outbox_finish(OutboxOutcome(ended(item, ending, at=2000.0 + n)))
            assert finished == (state[item.id] == OUTBOX_PENDING)  # only a pending item ends
            if finished:
                state[item.id] = ending
        elif op == "tell":
            results = await asyncio.gather(
                *(storage.outbox_tell(item.id, make_notice(f"{prefix}-n{n}.{r}", peer)) for r in range(racers)))
            assert results.count(True) == (0 if told[item.id] else 1)
            if not told[item.id]:
                notices.append(f"{prefix}-n{n}.{results.index(True)}")
                told[item.id] = True
        elif op == "retry":
            ok = await storage.outbox_retry(item.id, 3000.0 + n)
            assert ok == (state[item.id] != OUTBOX_DONE)
            if ok:
                state[item.id], told[item.id] = OUTBOX_PENDING, False
        else:  # a step that tells the outcome handed to it: only while the item is pending
            told_now = await step(storage, peer, version, finish=[OutboxOutcome(ended(item, at=2500.0 + n, told=True))])
            assert told_now == (state[item.id] == OUTBOX_PENDING)
            if told_now:
                version += 1
                state[item.id], told[item.id] = OUTBOX_DONE, True

        stored = {i.id: await storage.outbox_get(i.id) for i in items}
        assert {k: (v.state, v.told) for k, v in stored.items()} == {k: (state[k], told[k]) for k in state}
        untold = [i.id for i in await storage.outbox_untold(1e12, limit=10_000) if i.peer == peer]
        assert sorted(untold) == sorted(k for k in state if state[k] != OUTBOX_PENDING and not told[k])
        unsent = [x.id for x in await storage.notices_unsent(limit=10_000) if x.peer == peer]
        assert unsent == notices
