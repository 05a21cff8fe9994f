"""This process, present on the database for as long as it lives.

Worker processes hold jobs (leases), kept answers and outbox items by name. When one dies
(kill -9, a crash, a lost machine) the others, or its own successor, should take over what it
held at once, not when its lease runs out. So each process holds a session-level advisory lock
keyed by its name on a connection of its own: PostgreSQL drops the lock with the connection, and
the kernel closes a dead process's sockets at once. A name whose lock nobody holds is a process
that is gone (`gone_sql`).

If the connection is lost while the process lives (the server restarted, the network), its
presence is taken again on a new connection; meanwhile others may take over its leases, which
is safe: every job under a lease may run twice (engine/work/leases.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

log = logging.getLogger(__name__)

# The first key of the two-key advisory lock form: presence locks, apart from every other lock.
PRESENCE_CLASS: Final = 7386
_ANNOUNCE_TIMEOUT: Final = 30.0
_CHECK_EVERY: Final = 5.0  # seconds between checks that the connection still answers
_RECONNECT_DELAYS: Final = (0.5, 1.0, 2.0, 5.0)

# The names of the processes present on this database (advisory locks are per database).
_PRESENT: Final = (
    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = " + str(PRESENCE_CLASS) +
    " AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def gone_sql(column: str) -> str:
    """SQL true when the process named in `column` is not present (NULL: a name from before
    processes announced themselves, gone by now). A hash collision with a present process makes
    a gone one look present: its holdings then run out by time, as they did before."""
    return f"coalesce(hashtext({column})::oid NOT IN ({_PRESENT}), TRUE)"


class Presence:
    def __init__(self, connect: Callable[[], Awaitable[Any]], name: str) -> None:
        self._connect = connect
        self.name = name
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Be present before anything is taken under this name."""
        await self._announce()
        self._task = asyncio.create_task(self._keep())

    async def _announce(self) -> None:
        conn = await self._connect()
        try:
            # Bounded: a half-open session of this name (names are unique per run, so hardly
            # ever) would otherwise hold the start until TCP keepalives end it.
            await asyncio.wait_for(
                conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", PRESENCE_CLASS, self.name), _ANNOUNCE_TIMEOUT)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _keep(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(_CHECK_EVERY if failures == 0 else _RECONNECT_DELAYS[min(failures, 3) - 1])
            try:
                if self._conn is not None and not self._conn.is_closed():
                    await asyncio.wait_for(self._conn.execute("SELECT 1"), _CHECK_EVERY)
                    failures = 0
                    continue
                if self._conn is not None:
                    log.warning("presence of %s on PostgreSQL lost (connection closed); taking it again", self.name)
            except Exception as exc:  # lost: the lock went with the connection
                log.warning("presence of %s on PostgreSQL lost (%s); taking it again", self.name, exc)
            await self._drop()
            try:
                await self._announce()
                log.info("presence of %s on PostgreSQL taken again", self.name)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("presence of %s on PostgreSQL could not be taken (%s); trying again", self.name, exc)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        """Leave: what this process still holds is free for others at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                # Unlocked before the connection closes: others see this process gone the moment
                # close() returns, not when the server gets round to ending the session.
                await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))",
                                                    PRESENCE_CLASS, self.name), 5)
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()
