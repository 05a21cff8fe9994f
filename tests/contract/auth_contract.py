"""The sign-in port's contract (Bindings, SignInCodes): bindings, codes, send stats.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from engine.ports import (
    Binding,
    SendStats,
)
from tests.contract.storage_values import (
    make_code,
)


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
