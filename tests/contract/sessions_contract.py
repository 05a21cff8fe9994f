"""The sessions port's contract (SessionStore): load a session, commit a step, versioning.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ports import (
    Session,
    StepCommit,
)
from tests.contract.storage_values import (
    commit,
)


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

    async def test_stale_write_is_refused_and_changes_nothing(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 0, "a") is True
        assert await commit(storage, "vk:1", 1, "b") is True

        assert await commit(storage, "vk:1", 1, "stale") is False
        assert await commit(storage, "vk:1", 0, "as-new") is False
        assert await commit(storage, "vk:1", 7, "ahead") is False

        loaded = await storage.load_session("vk:1")
        assert (loaded.state, loaded.version) == ("b", 2)


class TestConcurrentCommits:
    async def test_many_peers_all_commit_and_persist(self, storage: Any) -> None:
        peers = [f"vk:{i}" for i in range(100)]

        async def dialogue(peer: str) -> list[bool]:
            return [await commit(storage, peer, v, f"step{v + 1}") for v in range(5)]

        results = await asyncio.gather(*(dialogue(p) for p in peers))
        assert all(all(r) for r in results)
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
