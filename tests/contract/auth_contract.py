"""The sign-in port's contract (Bindings, SignInCodes, StepCommit.sign_in): bindings, codes and
sends, written with a step or not at all.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.ports import Binding, SendStats, SignInWrites
from tests.contract.storage_values import bind, code_sent, commit, drop_code, make_code, put_code, step


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


class TestBindingsInSteps:
    async def test_a_step_binds_and_unbinds_its_peer(self, storage: Any) -> None:
        binding = Binding("vk:1", "ivanov-ii@ranepa.ru", "sys-1", "Иванов Иван", 100.0)
        await bind(storage, "vk:1", binding)
        assert await storage.get_binding("vk:1") == binding
        await bind(storage, "vk:1", None)
        await bind(storage, "vk:1", None)  # unbinding an unbound peer is no failure
        assert await storage.get_binding("vk:1") is None

    async def test_a_refused_step_binds_nobody(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 0)
        binding = Binding("vk:1", "a@ranepa.ru", "sys-1", "A", 1.0)
        # A stale version: another writer got there first, so nothing of the step is written.
        assert not await step(storage, "vk:1", 0, sign_in=SignInWrites("vk:1", binding_changed=True, binding=binding))
        assert await storage.get_binding("vk:1") is None

    async def test_a_refused_step_leaves_the_binding_it_would_drop(self, storage: Any) -> None:
        binding = Binding("vk:1", "a@ranepa.ru", "sys-1", "A", 1.0)
        await bind(storage, "vk:1", binding)
        assert await storage.get_binding("vk:1") == binding  # read (and cached, where a backend caches)
        assert not await step(storage, "vk:1", 0, sign_in=SignInWrites("vk:1", binding_changed=True))
        assert await storage.get_binding("vk:1") == binding


class TestCodes:
    async def test_put_get_delete(self, storage: Any) -> None:
        assert await storage.get_code("vk:1") is None
        code = make_code()
        await put_code(storage, code)
        assert await storage.get_code("vk:1") == code

        await drop_code(storage, "vk:1")
        await drop_code(storage, "vk:1")
        assert await storage.get_code("vk:1") is None

    async def test_put_replaces_the_earlier_code(self, storage: Any) -> None:
        await put_code(storage, make_code(attempts=3))
        fresh = make_code(email="b@ranepa.ru", code_hash=b"\x01" * 32, created_at=2000.0, expires_at=2600.0)
        await put_code(storage, fresh)
        assert await storage.get_code("vk:1") == fresh  # attempts start again at the new code's 0

    async def test_codes_are_per_peer(self, storage: Any) -> None:
        await put_code(storage, make_code())
        await put_code(storage, make_code(peer="vk:2"))
        await put_code(storage, make_code(attempts=2))
        assert (await storage.get_code("vk:1")).attempts == 2
        assert (await storage.get_code("vk:2")).attempts == 0

    async def test_a_refused_step_writes_no_code(self, storage: Any) -> None:
        assert await commit(storage, "vk:1", 0)
        writes = SignInWrites("vk:1", code_changed=True, code=make_code())
        assert not await step(storage, "vk:1", 0, sign_in=writes)
        assert await storage.get_code("vk:1") is None

    async def test_one_step_writes_its_code_and_binding_together(self, storage: Any) -> None:
        binding = Binding("vk:1", "a@ranepa.ru", "sys-1", "A", 1.0)
        writes = SignInWrites("vk:1", True, binding, True, make_code())
        assert await step(storage, "vk:1", 0, sign_in=writes, event_id="ev-1")
        assert await storage.get_binding("vk:1") == binding
        assert await storage.get_code("vk:1") == make_code()


class TestReservedSends:
    async def test_a_send_is_counted_within_the_caps_and_taken_back(self, storage: Any) -> None:
        reserve = storage.reserve_send
        assert await reserve("vk:1", "a@ranepa.ru", 100.0, 0.0, peer_cap=2, others_cap=3)
        assert await reserve("vk:1", "b@ranepa.ru", 101.0, 0.0, peer_cap=2, others_cap=3)
        assert not await reserve("vk:1", "a@ranepa.ru", 102.0, 0.0, peer_cap=2, others_cap=3)  # peer's cap
        assert await reserve("vk:1", "a@ranepa.ru", 103.0, 101.5, peer_cap=2, others_cap=3)  # since: one left
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", 0.0) == SendStats(3, 2, 2, 103.0, 100.0)
        await storage.release_send("vk:1", "a@ranepa.ru", 103.0)
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", 0.0) == SendStats(2, 1, 1, 100.0, 100.0)

    async def test_strangers_share_one_cap_for_an_address(self, storage: Any) -> None:
        for n in range(3):
            assert await storage.reserve_send(f"vk:{n + 10}", "a@ranepa.ru", 100.0 + n, 0.0, peer_cap=5, others_cap=3)
        assert not await storage.reserve_send("vk:20", "a@ranepa.ru", 110.0, 0.0, peer_cap=5, others_cap=3)
        # A stranger that sent one already gets no more either: the cap is all strangers' together.
        assert not await storage.reserve_send("vk:10", "a@ranepa.ru", 111.0, 0.0, peer_cap=5, others_cap=3)
        # Four strangers taking turns cannot get past it.
        for n in range(12):
            await storage.reserve_send(f"vk:{30 + n % 4}", "b@ranepa.ru", 200.0 + n, 0.0, peer_cap=5, others_cap=10)
        assert (await storage.code_send_stats("vk:99", "b@ranepa.ru", 0.0)).by_email == 10

    async def test_strangers_cannot_lock_out_a_peer_that_signed_in_with_the_address(self, storage: Any) -> None:
        owner = Binding("vk:1", "owner@ranepa.ru", "sys-1", "Владелец", 50.0)
        await bind(storage, "vk:1", owner)
        await bind(storage, "vk:1", None)  # signed out since: still the one who proved the address
        for n in range(3):
            assert await storage.reserve_send(f"vk:{n + 10}", "owner@ranepa.ru", 100.0 + n, 0.0,
                                              peer_cap=5, others_cap=3)
        assert not await storage.reserve_send("vk:20", "owner@ranepa.ru", 110.0, 0.0, peer_cap=5, others_cap=3)
        # The strangers' cap is full; the owner has its own five.
        for n in range(5):
            assert await storage.reserve_send("vk:1", "owner@ranepa.ru", 120.0 + n, 0.0, peer_cap=5, others_cap=3)
        assert not await storage.reserve_send("vk:1", "owner@ranepa.ru", 130.0, 0.0, peer_cap=5, others_cap=3)
        # And the owner's letters do not use up the strangers' cap either.
        await storage.release_send("vk:12", "owner@ranepa.ru", 102.0)
        assert await storage.reserve_send("vk:21", "owner@ranepa.ru", 131.0, 0.0, peer_cap=5, others_cap=3)

    async def test_the_caps_hold_however_many_ask_at_once(self, storage: Any) -> None:
        """Forty users asking for a code for one address at the same moment: exactly the cap."""
        results = await asyncio.gather(*(
            storage.reserve_send(f"vk:{n}", "victim@ranepa.ru", 200.0 + n / 100, 0.0, peer_cap=5, others_cap=10)
            for n in range(40)))
        assert sum(results) == 10
        assert (await storage.code_send_stats("vk:999", "victim@ranepa.ru", 0.0)).by_email == 10


class TestSendStats:
    async def test_nothing_sent(self, storage: Any) -> None:
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", 0.0) == SendStats(0, 0, 0, None)

    @pytest.mark.parametrize(
        ("since", "expected"),
        [
            (0.0, SendStats(2, 2, 1, last_pair_at=100.0, first_peer_at=100.0, first_others_at=300.0)),
            (100.0, SendStats(2, 2, 1, 100.0, 100.0, 300.0)),  # since is inclusive
            (150.0, SendStats(1, 1, 0, None, 200.0, 300.0)),
            (250.0, SendStats(0, 1, 0, None, None, 300.0)),
            (350.0, SendStats(by_peer=0, by_email=0, by_pair=0, last_pair_at=None)),
        ],
    )
    async def test_counts_by_peer_and_by_email_since(
        self, storage: Any, since: float, expected: SendStats
    ) -> None:
        await code_sent(storage, "vk:1", "a@ranepa.ru", 100.0)
        await code_sent(storage, "vk:1", "b@ranepa.ru", 200.0)
        await code_sent(storage, "vk:2", "a@ranepa.ru", 300.0)  # another peer, same address
        await code_sent(storage, "vk:3", "c@ranepa.ru", 400.0)  # unrelated
        # by_pair and last_pair_at count only vk:1's sends to a@.
        assert await storage.code_send_stats("vk:1", "a@ranepa.ru", since) == expected
