"""SqliteWorker: one connection, one thread, jobs in the order given."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from adapters.storage.sqlite_worker import SqliteWorker


async def test_jobs_run_in_order_on_one_thread_that_is_not_the_loop(tmp_path: Path) -> None:
    worker = await SqliteWorker.open(tmp_path / "w.db", isolation_level=None)
    try:
        await worker.run(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
        threads = await asyncio.gather(*(worker.run(lambda conn, n=n: (conn.execute("INSERT INTO t VALUES (?)", (n,)),
                                                                       threading.get_ident())[1])
                                         for n in range(50)))
        assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
        rows = await worker.run(lambda conn: conn.execute("SELECT n FROM t ORDER BY rowid").fetchall())
        assert [n for (n,) in rows] == list(range(50))
    finally:
        await worker.close()


async def test_a_failing_job_fails_its_caller_only(tmp_path: Path) -> None:
    worker = await SqliteWorker.open(tmp_path / "w.db")
    try:
        with pytest.raises(sqlite3.OperationalError):
            await worker.run(lambda conn: conn.execute("SELECT * FROM missing"))
        assert await worker.run(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        await worker.close()


async def test_closed_refuses_jobs_and_closing_again_is_fine(tmp_path: Path) -> None:
    worker = await SqliteWorker.open(tmp_path / "w.db")
    await worker.close()
    await worker.close()
    with pytest.raises(ValueError, match="closed"):
        await worker.run(lambda conn: None)


async def test_a_database_that_cannot_be_opened_fails_open(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        await SqliteWorker.open(tmp_path / "no such dir" / "w.db")
