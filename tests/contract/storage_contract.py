"""The Storage port's contract: every storage backend must pass all of it.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ports import (
    OUTBOX_DONE,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    Binding,
    Notice,
    OutboxItem,
    OutboxOutcome,
    PendingCode,
    SendStats,
    Session,
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


# --------------------------------------------------------------------------- sessions


class TestSessions:
    async def test_missing_session_is_none(self, storage: Any) -> None:
        assert await storage.load_session("vk:1") is None

    async def test_round_trip_keeps_unicode_and_nested_slots(self, storage: Any) -> None:
        slots = {
            "тема": "Не работает принтер в ауд. 305 🖨",
            "nested": {"list": [1, 2.5, None, True, "ё"], "deep": {"empty": [], "obj": {}}},
            "quotes": "\"'\\\n\t",
            "files": [{"id": "vk_1.ab", "name": "скан.pdf", "mime": "application/pdf", "size": 10}],
        }
        step = StepCommit(Session("vk:1", "ask_topic", slots, "v2", 1234.25), expected_version=0)
        assert await storage.commit_step(step) is True

        loaded = await storage.load_session("vk:1")
        assert loaded == Session("vk:1", "ask_topic", slots, "v2", 1234.25, version=1)

    async def test_each_commit_bumps_the_version(self, storage: Any) -> None:
        for expected, state in enumerate(["a", "b", "c"]):
            assert await commit(storage, "vk:1", expected, state) is True
        loaded = await storage.load_session("vk:1")
        assert (loaded.state, loaded.version) == ("c", 3)

    async def test_new_session_needs_expected_version_zero(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 2) is False
        assert await storage.load_session("vk:1") is None
        assert await storage.count_sessions() == 0

    async def test_stale_write_is_refused_and_changes_nothing(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 0, "a") is True
        assert await commit(storage, "vk:1", 1, "b") is True

        assert await commit(storage, "vk:1", 1, "stale") is False
        assert await commit(storage, "vk:1", 0, "as-new") is False
        assert await commit(storage, "vk:1", 7, "ahead") is False

        loaded = await storage.load_session("vk:1")
        assert (loaded.state, loaded.version) == ("b", 2)

    async def test_count_and_delete(self, storage: Any) -> None:
        for peer in ("vk:1", "vk:2", "console:alice"):
            assert await commit(storage, peer, 0) is True
        assert await storage.count_sessions() == 3

        await storage.delete_session("vk:2")
        await storage.delete_session("vk:404")  # deleting nothing is fine
        assert await storage.count_sessions() == 2
        assert await storage.load_session("vk:2") is None
        # A deleted session starts again from version 0.
        assert await commit(storage, "vk:2", 0, "again") is True
        assert (await storage.load_session("vk:2")).version == 1


class TestConcurrentCommits:
    async def test_many_peers_all_commit_and_persist(self, storage: Any) -> None:
        peers = [f"vk:{i}" for i in range(100)]

        async def dialogue(peer: str) -> list[bool]:
            return [await commit(storage, peer, v, f"step{v + 1}") for v in range(5)]

        results = await asyncio.gather(*(dialogue(p) for p in peers))
        assert all(all(r) for r in results)
        assert await storage.count_sessions() == 100
        for peer in peers:
            loaded = await storage.load_session(peer)
            assert (loaded.state, loaded.version) == ("step5", 5)

    async def test_conflicting_updates_of_one_peer_have_one_winner(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 0, "first") is True
        results = await asyncio.gather(*(commit(storage, "vk:1", 1, f"w{i}") for i in range(20)))

        assert results.count(True) == 1
        loaded = await storage.load_session("vk:1")
        assert (loaded.state, loaded.version) == (f"w{results.index(True)}", 2)

    async def test_conflicting_creations_of_one_peer_have_one_winner(self, storage: Any) -> None:
        results = await asyncio.gather(*(commit(storage, "vk:1", 0, f"w{i}") for i in range(20)))

        assert results.count(True) == 1
        assert (await storage.load_session("vk:1")).state == f"w{results.index(True)}"

    async def test_a_refused_step_does_not_fail_its_neighbours(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 0) is True
        results = await asyncio.gather(
            commit(storage, "vk:2", 0), commit(storage, "vk:1", 5), commit(storage, "vk:3", 0)
        )
        assert results == [True, False, True]


# --------------------------------------------------------------------------- inbox


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

    async def test_seen_events_answers_for_a_batch(self, storage: Any) -> None:
        for i in range(3):
            assert await commit(storage, f"vk:{i}", 0, event_id=f"ev-{i}") is True
        await storage.inbox_add("ev-received", "vk:9", "{}")
        ids = [f"ev-{i}" for i in range(1200)] + ["ev-received", "ev-0"]
        assert await storage.seen_events(ids) == {"ev-0", "ev-1", "ev-2"}
        assert await storage.seen_events([]) == set()

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


class TestOneAtATime:
    async def test_a_lease_is_held_by_one_holder_until_it_runs_out_or_is_released(self, storage: Any) -> None:
        assert await storage.lease_acquire("status", "w1", 100.0, 130.0) is True
        assert await storage.lease_acquire("status", "w2", 110.0, 140.0) is False
        assert await storage.lease_acquire("notices", "w2", 110.0, 140.0) is True  # another job
        assert await storage.lease_acquire("status", "w1", 120.0, 150.0) is True  # renewed
        assert await storage.lease_acquire("status", "w2", 140.0, 170.0) is False
        assert await storage.lease_acquire("status", "w2", 150.0, 180.0) is True  # ran out: taken over
        assert await storage.lease_acquire("status", "w1", 160.0, 190.0) is False
        await storage.lease_release("status", "w1")  # not w1's any more: nothing happens
        assert await storage.lease_acquire("status", "w1", 160.0, 190.0) is False
        await storage.lease_release("status", "w2")
        assert await storage.lease_acquire("status", "w1", 160.0, 190.0) is True

    async def test_racing_holders_get_a_lease_once(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("each open of an in-memory database is a database of its own")
        workers = [await storage_backend.open() for _ in range(3)]
        try:
            won = await asyncio.gather(*(w.lease_acquire("status", f"w{n}-{k}", 100.0, 130.0)
                                         for n, w in enumerate(workers) for k in range(4)))
            assert won.count(True) == 1
        finally:
            for w in workers:
                await w.close()

    async def test_a_peer_lock_is_held_for_a_step(self, storage: Any) -> None:
        async with storage.peer_lock("vk:1"), storage.peer_lock("vk:2"):
            assert await commit(storage, "vk:1", 0) is True
        async with storage.peer_lock("vk:1"):  # released: taken again
            assert await commit(storage, "vk:1", 1) is True

    async def test_received_events_and_kept_replies_can_be_asked_for_by_age(self, storage: Any) -> None:
        await storage.inbox_add("ev-old", "vk:1", "{}")
        assert await commit(storage, "vk:2", 0, event_id="ev-done") is True  # handled: never pending
        await asyncio.sleep(0.05)
        middle = time.time()
        await asyncio.sleep(0.05)
        await storage.inbox_add("ev-new", "vk:1", "{}")
        assert [e.event_id for e in await storage.inbox_pending(received_before=middle)] == ["ev-old"]
        assert [e.event_id for e in await storage.inbox_pending()] == ["ev-old", "ev-new"]
        assert await storage.commit_step(StepCommit(make_session("vk:3"), 0, event_id="ev-r", replies="[]")) is True
        assert await storage.replies_unsent(handled_before=middle) == []
        assert [u.event_id for u in await storage.replies_unsent(handled_before=time.time() + 1)] == ["ev-r"]


class TestCursors:
    async def test_put_get_replace(self, storage: Any) -> None:
        assert await storage.get_cursor("vk:longpoll:1") is None
        await storage.put_cursor("vk:longpoll:1", "41")
        await storage.put_cursor("vk:longpoll:2", "7")
        await storage.put_cursor("vk:longpoll:1", "42")
        assert await storage.get_cursor("vk:longpoll:1") == "42"
        assert await storage.get_cursor("vk:longpoll:2") == "7"


# --------------------------------------------------------------------------- bindings and codes


class TestBindings:
    async def test_put_get_replace_delete(self, storage: Any) -> None:
        assert await storage.get_binding("vk:1") is None
        first = Binding("vk:1", "ivanov-ii@ranepa.ru", "sys-1", "Иванов Иван", 100.0)
        await storage.put_binding(first)
        assert await storage.get_binding("vk:1") == first

        second = Binding("vk:1", "petrova@ranepa.ru", "sys-2", "Петрова Анна", 200.0)
        await storage.put_binding(second)
        assert await storage.get_binding("vk:1") == second

        await storage.delete_binding("vk:1")
        await storage.delete_binding("vk:1")
        assert await storage.get_binding("vk:1") is None

    async def test_bindings_are_per_peer(self, storage: Any) -> None:
        a = Binding("vk:1", "same@ranepa.ru", "sys-1", "A", 1.0)
        b = Binding("console:alice", "same@ranepa.ru", "sys-1", "A", 2.0)
        await storage.put_binding(a)
        await storage.put_binding(b)
        await storage.delete_binding("vk:1")
        assert await storage.get_binding("console:alice") == b


def make_code(peer: str = "vk:1", email: str = "a@ranepa.ru", **kw: Any) -> PendingCode:
    fields: dict[str, Any] = {
        "code_hash": bytes(range(32)),
        "salt": b"\x00\xffsalt",
        "created_at": 1000.0,
        "expires_at": 1600.0,
    } | kw
    return PendingCode(peer, email, **fields)


class TestCodes:
    async def test_put_get_delete(self, storage: Any) -> None:
        assert await storage.get_code("vk:1") is None
        code = make_code()
        await storage.put_code(code)
        assert await storage.get_code("vk:1") == code

        await storage.delete_code("vk:1")
        await storage.delete_code("vk:1")
        assert await storage.get_code("vk:1") is None

    async def test_put_replaces_the_earlier_code(self, storage: Any) -> None:
        await storage.put_code(make_code())
        await storage.add_code_attempt("vk:1")
        fresh = make_code(email="b@ranepa.ru", code_hash=b"\x01" * 32, created_at=2000.0, expires_at=2600.0)
        await storage.put_code(fresh)
        assert await storage.get_code("vk:1") == fresh  # attempts start again at the new code's 0

    async def test_a_code_keeps_the_step_that_wrote_it_and_whether_it_was_used(self, storage: Any) -> None:
        sent = make_code(step=7)
        await storage.put_code(sent)
        assert await storage.get_code("vk:1") == sent
        mailed = dataclasses.replace(sent, mailed=True)
        await storage.put_code(mailed)
        assert await storage.get_code("vk:1") == mailed
        spent = dataclasses.replace(mailed, step=9, used=True, attempts=2)
        await storage.put_code(spent)
        assert await storage.get_code("vk:1") == spent

    async def test_attempts_are_counted(self, storage: Any) -> None:
        assert await storage.add_code_attempt("vk:1") == 0  # no code: nothing to count
        await storage.put_code(make_code())
        await storage.put_code(make_code(peer="vk:2"))
        assert [await storage.add_code_attempt("vk:1") for _ in range(3)] == [1, 2, 3]
        assert (await storage.get_code("vk:1")).attempts == 3
        assert (await storage.get_code("vk:2")).attempts == 0


class TestSendStats:
    async def test_nothing_sent(self, storage: Any) -> None:
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", 0.0) == SendStats(0, 0, 0, None)

    @pytest.mark.parametrize(
        ("since", "expected"),
        [
            (0.0, SendStats(by_peer=2, by_email=2, by_pair=1, last_pair_at=100.0)),
            (100.0, SendStats(by_peer=2, by_email=2, by_pair=1, last_pair_at=100.0)),  # since is inclusive
            (150.0, SendStats(by_peer=1, by_email=1, by_pair=0, last_pair_at=None)),
            (250.0, SendStats(by_peer=0, by_email=1, by_pair=0, last_pair_at=None)),
            (350.0, SendStats(by_peer=0, by_email=0, by_pair=0, last_pair_at=None)),
        ],
    )
    async def test_counts_by_peer_and_by_email_since(
        self, storage: Any, since: float, expected: SendStats
    ) -> None:
        await storage.record_code_sent("vk:1", "a@ranepa.ru", 100.0)
        await storage.record_code_sent("vk:1", "b@ranepa.ru", 200.0)
        await storage.record_code_sent("vk:2", "a@ranepa.ru", 300.0)  # another peer, same address
        await storage.record_code_sent("vk:3", "c@ranepa.ru", 400.0)  # unrelated
        # by_pair and last_pair_at count only vk:1's sends to a@.
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", since) == expected


# --------------------------------------------------------------------------- upkeep and lifetime


class TestPrune:
    async def test_prune_drops_old_rows_only(self, storage: Any) -> None:
        await storage.record_code_sent("vk:1", "a@ranepa.ru", 100.0)
        await storage.record_code_sent("vk:1", "a@ranepa.ru", 5000.0)
        await storage.put_code(make_code(peer="vk:1", expires_at=500.0))
        await storage.put_code(make_code(peer="vk:2", expires_at=9000.0))
        assert await commit(storage, "vk:1", 0, event_id="ev-1") is True

        assert await storage.prune(1000.0) == 2  # one send, one expired code; the event is new
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", 0.0) == SendStats(1, 1, 1, 5000.0)
        assert await storage.get_code("vk:1") is None
        assert await storage.get_code("vk:2") is not None
        assert await storage.seen_event("ev-1") is True

        assert await storage.prune(time.time() + 60) == 3
        assert await storage.seen_event("ev-1") is False
        # Sessions are not the business of prune.
        assert await storage.count_sessions() == 1


class TestLifetime:
    async def test_everything_survives_close_and_reopen(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("this backend keeps nothing after close")
        first = await storage_backend.open()
        assert await commit(first, "vk:1", 0, "a", event_id="ev-1") is True
        assert await commit(first, "vk:1", 1, "b", event_id="ev-2") is True
        binding = Binding("vk:1", "a@ranepa.ru", "sys-1", "Иван", 1.0)
        await first.put_binding(binding)
        await first.put_code(make_code())
        await first.record_code_sent("vk:1", "a@ranepa.ru", 100.0)
        await first.close()

        second = await storage_backend.open()
        try:
            loaded = await second.load_session("vk:1")
            assert (loaded.state, loaded.version) == ("b", 2)
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
                assert await reopened.count_sessions() == 50
                assert (await reopened.load_session("vk:49")).state == "s49"
            finally:
                await reopened.close()

    async def test_close_twice_is_fine(self, storage: Any) -> None:
        await storage.close()
        await storage.close()


# --------------------------------------------------------------------------- versioning property

ROUNDS = st.lists(
    # One round: calls made together (concurrently), each (peer index, expected version).
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4)), min_size=1, max_size=5),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=ROUNDS)
async def test_versioning_matches_a_serial_model(storage: Any, rounds: list[list[tuple[int, int]]]) -> None:
    """Concurrent commit_step calls behave as if run one by one in some order.

    Model: a write succeeds iff expected_version equals the stored version (0 when absent),
    and then stores version + 1. Each round's results and the sessions after it must match
    the model for at least one order of that round's calls.
    """
    prefix = uuid.uuid4().hex[:8]  # the storage outlives examples: fresh peers for each one
    peers = [f"vk:{prefix}-{i}" for i in range(3)]
    model: dict[str, tuple[int, str]] = {}  # peer -> (version, state)

    for round_no, calls in enumerate(rounds):
        states = [f"r{round_no}c{i}" for i in range(len(calls))]
        results = await asyncio.gather(
            *(commit(storage, peers[p], v, states[i]) for i, (p, v) in enumerate(calls))
        )
        actual = {}
        for peer in peers:
            loaded = await storage.load_session(peer)
            if loaded is not None:
                actual[peer] = (loaded.version, loaded.state)

        for order in itertools.permutations(range(len(calls))):
            trial = dict(model)
            outcome = [False] * len(calls)
            for i in order:
                peer, expected = peers[calls[i][0]], calls[i][1]
                if trial.get(peer, (0, ""))[0] == expected:
                    trial[peer] = (expected + 1, states[i])
                    outcome[i] = True
            if outcome == results and trial == actual:
                model = trial
                break
        else:
            pytest.fail(f"round {round_no} {calls}: results {results}, sessions {actual}, model {model}")


# --------------------------------------------------------------------------- outbox, notices, watched tickets

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
        assert await storage.outbox_claim("ob-1", 100.0, 200.0) is True
        assert await storage.outbox_lease("ob-1", 150.0, 400.0) is False  # not the lease held
        assert await storage.outbox_lease("ob-1", 200.0, 300.0) is True  # renewed
        claimed = await storage.outbox_get("ob-1")
        assert claimed is not None and (claimed.next_at, claimed.attempts) == (300.0, item.attempts + 1)
        # Given back, its attempt uncounted; then another worker's claim wins over the old holder.
        assert await storage.outbox_lease("ob-1", 300.0, 120.0, attempts=-1) is True
        given_back = await storage.outbox_get("ob-1")
        assert given_back is not None and (given_back.next_at, given_back.attempts) == (120.0, item.attempts)
        assert await storage.outbox_claim("ob-1", 130.0, 500.0) is True
        assert await storage.outbox_lease("ob-1", 300.0, 130.0, attempts=-1) is False
        await finish(storage, ended(item))
        assert await storage.outbox_lease("ob-1", 500.0, 600.0) is False  # done

    async def test_a_claim_counts_the_attempt_and_hides_the_item_until_its_lease_ends(self, storage: Any) -> None:
        item = make_item("ob-1", next_at=100.0)
        assert await step(storage, "vk:1", 0, outbox=[item]) is True
        assert await storage.outbox_claim("ob-1", 99.0, 200.0) is False  # not due yet
        assert await storage.outbox_claim("ob-1", 100.0, 200.0) is True
        assert await storage.outbox_claim("ob-1", 150.0, 300.0) is False  # another worker has it
        assert await storage.outbox_due(150.0) == []
        claimed = await storage.outbox_get("ob-1")
        assert claimed is not None and claimed.attempts == item.attempts + 1 and claimed.next_at == 200.0
        assert [i.id for i in await storage.outbox_due(200.0)] == ["ob-1"]  # the lease ran out
        assert await storage.outbox_claim("ob-1", 200.0, 300.0) is True
        await finish(storage, ended(item))
        assert await storage.outbox_claim("ob-1", 1e12, 1e12 + 1) is False  # done

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
        assert await storage.outbox_claim("ob-1", 100.0, 200.0) is True
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
        assert await storage.outbox_claim("ob-1", 210.0, 300.0) is True
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
