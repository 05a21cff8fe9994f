"""One sqlite3 connection and the one thread that uses it, for asyncio.

A call hands the thread a function of the connection and awaits its result: one hop, however
many statements the function runs (a whole group commit is one). aiosqlite does the same with a
hop per statement, fetch and commit, and has no public way to run a function of the connection:
the SQLite adapter used its private one, pinned to the versions that had it. This is the same
mechanism (a queue to the thread, the answer posted back with call_soon_threadsafe), in the
standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

_Job = tuple[asyncio.Future[Any], Callable[[sqlite3.Connection], Any]]


class SqliteWorker:
    """Make one with `await SqliteWorker.open(path)`; close() ends the thread."""

    def __init__(self, path: str | Path, connect: dict[str, Any]) -> None:
        self._path = path
        self._connect = connect
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # A daemon: a program that never closes its storage still exits (SQLite rolls back what
        # was not committed).
        self._thread = threading.Thread(target=self._work, name=f"sqlite {path}", daemon=True)

    @classmethod
    async def open(cls, path: str | Path, **connect: Any) -> SqliteWorker:
        """Start the thread and connect on it (sqlite3.connect's keywords)."""
        worker = cls(path, connect)
        worker._thread.start()
        try:
            await worker.run(lambda _: None)
        except BaseException:
            worker._jobs.put(None)
            raise
        return worker

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) on the thread. Jobs run one at a time, in the order they were given."""
        if self._closed:
            raise ValueError("SQLite connection closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn))
        return await future

    async def close(self) -> None:
        """Close the connection after the jobs given before, and end the thread."""
        if self._closed:
            return
        try:
            await self.run(lambda conn: conn.close())
        finally:
            self._closed = True
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(self._path, **self._connect)
                result = fn(self._conn)
            except BaseException as exc:  # the caller's to see, whatever it is
                _post(future, _fail, exc)
            else:
                _post(future, _succeed, result)


def _post(future: asyncio.Future[Any], settle: Callable[[asyncio.Future[Any], Any], None], outcome: Any) -> None:
    try:
        future.get_loop().call_soon_threadsafe(settle, future, outcome)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        log.debug("SQLite job finished after its event loop closed")


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
