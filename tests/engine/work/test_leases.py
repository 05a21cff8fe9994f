"""JobLease: one process at a time for a named job on a shared storage, none of it on SQLite."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.sqlite import open_sqlite
from engine.work.leases import JobLease, process_holder
from tests.postgres_db import kill_presence


async def test_on_storage_of_one_process_the_job_is_always_its_own(tmp_path: Path) -> None:
    storage = await open_sqlite(tmp_path / "bot.db")
    try:
        first = JobLease(storage, "status_watch", ttl=30, holder="a")
        second = JobLease(storage, "status_watch", ttl=30, holder="b")
        assert await first.hold() and await second.hold()
        await first.release()
        # Nothing was written.
        assert await storage._run(lambda conn: conn.execute("SELECT count(*) FROM leases").fetchone()[0]) == 0
    finally:
        await storage.close()


async def test_on_shared_storage_one_holder_at_a_time_and_a_dead_one_is_replaced(
        scratch_postgres: str, caplog: pytest.LogCaptureFixture) -> None:
    from adapters.storage.postgres import open_postgres

    now = [1000.0]
    one, two = await open_postgres(scratch_postgres), await open_postgres(scratch_postgres)
    try:
        first = JobLease(one, "status_watch", ttl=30, clock=lambda: now[0])
        second = JobLease(two, "status_watch", ttl=30, clock=lambda: now[0])
        with caplog.at_level(logging.INFO, logger="engine.work.leases"):
            assert await first.hold() is True
            assert await second.hold() is False
            now[0] += 20
            assert await first.hold() is True  # renewed until 1050
            now[0] += 29
            assert await second.hold() is False
            now[0] += 1  # the first stopped renewing (stuck, yet there): its lease ran out
            assert await second.hold() is True
            assert await first.hold() is False
        assert f"lease status_watch lost by {one.process}" in caplog.text
        await second.release()  # a clean stop hands the job over at once
        assert await first.hold() is True
    finally:
        await one.close()
        await two.close()


async def test_a_storage_failure_skips_the_round(scratch_postgres: str) -> None:
    from adapters.storage.postgres import open_postgres

    storage = await open_postgres(scratch_postgres)
    lease = JobLease(storage, "vk:notices", ttl=15)
    await storage.close()
    assert await lease.hold() is False


async def test_a_killed_holder_s_successor_takes_the_lease_at_once(scratch_postgres: str) -> None:
    """Before: a process killed and started again waited out its predecessor's lease (45 s for
    the long poll)."""
    from adapters.storage.postgres import open_postgres

    killed = await open_postgres(scratch_postgres)
    assert await JobLease(killed, "vk:1:longpoll", ttl=45).hold() is True
    await kill_presence(killed, scratch_postgres)  # as kill -9 leaves it: the connection drops, nothing else
    successor = await open_postgres(scratch_postgres)
    try:
        assert await JobLease(successor, "vk:1:longpoll", ttl=45).hold() is True
    finally:
        await successor.close()
        await killed.close()


def test_holders_differ_between_processes_and_restarts() -> None:
    assert process_holder() != process_holder()
    with pytest.raises(ValueError):
        JobLease(Any, "x", ttl=0)  # type: ignore[arg-type]
