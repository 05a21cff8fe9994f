"""The Storage port's contract: every storage backend must pass all of it.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
`prune` is not in the engine's port yet but every backend provides it, so it is tested here.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ports import Binding, PendingCode, SendStats, Session, StepCommit


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

    async def test_a_refused_step_keeps_no_replies(self, storage: Any) -> None:
        assert await storage.commit_step(StepCommit(make_session("vk:1"), 5, event_id="e", replies="[]")) is False
        assert await storage.replies_unsent() == []

    async def test_events_can_be_closed_without_a_step(self, storage: Any) -> None:
        await storage.inbox_add("old", "vk:1", "{}")
        await storage.inbox_add("new", "vk:1", "{}")
        await storage.inbox_mark_handled(["old"])
        assert [e.event_id for e in await storage.inbox_pending()] == ["new"]
        assert await storage.seen_event("old") is True


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
