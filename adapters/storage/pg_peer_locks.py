"""Per-peer locks across processes on PostgreSQL advisory locks, without a connection per lock.

Every worker process that steps sessions takes the peer's lock for the step, so two processes
never step one peer at once: a sign-in code is mailed once, events are taken in turn, a redo on
a version conflict is the exception it should be.

Holding one pooled connection per step in flight would need as many connections as steps (each
may wait seconds for SimpleOne) and could starve the pool that commits need. Instead a few
dedicated connections (shards, by key) each hold the session-level locks of many peers. Requests
that arrive together go in one round trip (`pg_try_advisory_lock` over an array); a lock that
another process holds is tried again with a short backoff, up to a limit. Releases are queued
and sent with the next round trip (a try's, or on their own after 3 ms): releasing never delays
the step, and a worker stepping users one after another makes one round trip a lock.

With read_sessions (PostgresStorage), the round trip is a function call (pg_step_commit.py,
sb_peer_locks) that also reads the session of each peer whose lock it took, after taking it:
hold() yields it (its columns, or None: no session yet), so the step needs no read of its own.

If a lock connection is lost, PostgreSQL has dropped its locks: steps in flight go on unguarded
(the session version check still refuses a stale write) and new requests use a new connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, NamedTuple

from adapters.storage.pg_step_commit import LOCK_CALL

log = logging.getLogger(__name__)

# Tried again after these pauses while another process holds the lock, then every last one.
_BACKOFF: Final = (0.005, 0.01, 0.02, 0.05, 0.1)
_RECONNECT_DELAY: Final = 0.5
# A release alone waits this long for a try to ride with (the next step's, usually much sooner):
# one round trip a step instead of two. Another process waiting for the peer waits at most this
# much longer (its backoff starts at 5 ms).
_RELEASE_DELAY: Final = 0.003
# A round trip that takes this long means a connection that stopped answering without closing
# (a frozen host, a dropped network): it is dropped and the tries go out on a new one.
_ROUND_TIMEOUT: Final = 10.0
# Fairness: a process that keeps one peer's lock across back-to-back steps (re-taken within
# _STREAK_GAP of letting it go) pauses for _COURTESY, longer than the others' longest backoff,
# once the streak is older than _FAIR_SHARE, so a worker waiting for that peer gets a turn.
_STREAK_GAP: Final = 0.05
_FAIR_SHARE: Final = 0.5
_COURTESY: Final = 0.25

# One round trip: releases first (a peer released and asked for again in one batch gets it),
# then the tries. WITH ORDINALITY keeps the rows in the order they were sent.
_ROUND: Final = (
    "SELECT CASE WHEN t.take THEN pg_try_advisory_lock(t.k) ELSE pg_advisory_unlock(t.k) END"
    " FROM unnest($1::bigint[], $2::bool[]) WITH ORDINALITY AS t(k, take, n) ORDER BY t.n"
)


# What hold() yields when the session was not read with the lock (read_sessions off).
UNREAD: Final[Any] = object()


class LockedRead(NamedTuple):
    """What the lock's round trip read of its peer (read_sessions): the columns of its session
    and of its binding, each None if there is none."""

    session: tuple[Any, ...] | None
    binding: tuple[Any, ...] | None


class PeerLockTimeout(TimeoutError):
    """Another process held the peer's lock for longer than the wait limit."""


def peer_key(peer: str) -> int:
    """The advisory lock key of a peer: 64 bits of a hash (a collision only serialises two
    peers needlessly)."""
    return int.from_bytes(hashlib.blake2b(peer.encode(), digest_size=8).digest(), "big", signed=True)


Connect = Callable[[], Awaitable[Any]]


class _Shard:
    """One connection and the locks it holds; a runner task sends what is asked for in batches."""

    def __init__(self, connect: Connect, *, read_sessions: bool = False) -> None:
        self._connect = connect
        self._read_sessions = read_sessions
        self._conn: Any = None
        # Per key, who asks: the peer (whose session is read with the lock) and the answer's future.
        self._tries: dict[int, list[tuple[str, asyncio.Future[tuple[bool, Any]]]]] = {}
        self._releases: list[int] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._release_timer: asyncio.TimerHandle | None = None
        self.closed = False

    async def try_lock(self, key: int, peer: str) -> tuple[bool, Any]:
        """Whether the lock was taken, and the peer's session read with it (UNREAD if not read)."""
        if self.closed:
            raise ConnectionError("peer locks closed")
        future: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._tries.setdefault(key, []).append((peer, future))
        self._kick()
        try:
            return await future
        except asyncio.CancelledError:
            # Granted, but the asker was cancelled before it could know: let the lock go.
            if future.done() and not future.cancelled() and future.result()[0]:
                self.release(key)
            raise

    def release(self, key: int) -> None:
        if self.closed:
            return  # the connection is closing, and every lock with it
        self._releases.append(key)
        if self._release_timer is None and (self._runner is None or self._runner.done()):
            self._release_timer = asyncio.get_running_loop().call_later(_RELEASE_DELAY, self._kick)

    def _kick(self) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._tries or self._releases:
            self._wake.clear()
            tries, self._tries = self._tries, {}
            releases, self._releases = self._releases, []
            keys = [*releases, *(k for k, asks in tries.items() for _ in asks)]
            peers: list[str | None] = [*([None] * len(releases)), *(p for asks in tries.values() for p, _ in asks)]
            takes = [False] * len(releases) + [True] * (len(keys) - len(releases))
            try:
                answers = await self._round(keys, takes, peers)
            except asyncio.CancelledError:
                self._fail(tries, ConnectionError("peer locks closed"))
                raise
            except Exception as exc:
                # The connection is gone, and with it every lock it held: releases are moot,
                # tries are made again on a new connection.
                log.warning("peer lock connection failed (%s: %s); locks held on it are lost",
                            type(exc).__name__, exc)
                await self._drop()
                if self.closed:
                    self._fail(tries, exc)
                    return
                for key, asks in tries.items():
                    self._tries.setdefault(key, []).extend(asks)
                await asyncio.sleep(_RECONNECT_DELAY)
                continue
            got = iter(answers[len(releases):])
            for key, asks in tries.items():
                for _, future in asks:
                    answer = next(got)
                    if not future.done():
                        future.set_result(answer)
                    elif answer[0]:  # the asker gave up meanwhile: let the lock go again
                        self._releases.append(key)

    async def _round(self, keys: list[int], takes: list[bool], peers: list[str | None]) -> list[tuple[bool, Any]]:
        async with asyncio.timeout(_ROUND_TIMEOUT):
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            if not self._read_sessions:
                return [(bool(r[0]), UNREAD) for r in await self._conn.fetch(_ROUND, keys, takes)]
            rows = await self._conn.fetch(LOCK_CALL, keys, takes, peers)
        # A lock taken: its peer's session and binding as read with it; a lock not had: nothing read.
        return [(bool(r[0]), LockedRead(None if r[1] is None else tuple(r[1:7]),
                                        None if r[7] is None else tuple(r[7:12])) if r[0] else UNREAD)
                for r in rows]

    def _fail(self, tries: dict[int, list[tuple[str, asyncio.Future[tuple[bool, Any]]]]],
              exc: BaseException) -> None:
        for asks in tries.values():
            for _, future in asks:
                if not future.done():
                    future.set_exception(exc)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.terminate()
            except Exception as exc:  # it is being dropped as broken already
                log.debug("peer lock connection did not terminate cleanly: %r", exc)

    async def close(self) -> None:
        self.closed = True
        self._fail(self._tries, ConnectionError("peer locks closed"))
        self._tries = {}
        if self._release_timer is not None:
            self._kick()  # releases waiting for company go out now
        if self._runner is not None and not self._runner.done():
            # Queued releases go out first; a connection that is gone releases everything.
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), 5.0)
            except Exception as exc:
                log.warning("peer lock releases not sent before closing (%r); closing the connection drops the"
                            " locks", exc)
            self._runner.cancel()
            # Its end, cancelled or not, is all that is wanted here.
            await asyncio.gather(self._runner, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5.0)
            except Exception as exc:  # the server drops the locks with the connection anyway
                log.debug("peer lock connection did not close cleanly: %r", exc)


class AdvisoryPeerLocks:
    """Storage.peer_lock for PostgreSQL: see the module docstring."""

    def __init__(self, connect: Connect, *, shards: int = 2, wait_limit: float = 120.0,
                 read_sessions: bool = False) -> None:
        self._shards = [_Shard(connect, read_sessions=read_sessions) for _ in range(max(1, shards))]
        self._wait_limit = wait_limit
        # Per key: when this process's current streak of holding it began, when it last let go.
        self._streaks: dict[int, tuple[float, float]] = {}

    @asynccontextmanager
    async def hold(self, peer: str) -> AsyncIterator[Any]:
        """The peer's lock; yields the peer's session and binding as read with it (a LockedRead;
        UNREAD without read_sessions)."""
        key = peer_key(peer)
        shard = self._shards[key % len(self._shards)]
        loop = asyncio.get_running_loop()
        began = loop.time()
        streak = self._streaks.pop(key, None)
        if streak is not None and began - streak[1] < _STREAK_GAP:
            if began - streak[0] < _FAIR_SHARE:
                began = streak[0]  # the streak goes on
            else:
                await asyncio.sleep(_COURTESY)  # a turn for a worker that may be waiting
                began = loop.time()
        session = await self._acquire(shard, key, peer)
        try:
            yield session
        finally:
            shard.release(key)
            self._remember(key, began, loop.time())

    def _remember(self, key: int, began: float, released: float) -> None:
        self._streaks[key] = (began, released)
        if len(self._streaks) > 4096:  # forget the peers that did not come straight back
            self._streaks = {k: v for k, v in self._streaks.items() if released - v[1] < _STREAK_GAP}

    async def _acquire(self, shard: _Shard, key: int, peer: str) -> Any:
        tries = 0
        try:
            # The whole wait is bounded, a stalled round trip included: a try granted after the
            # deadline is let go by the shard (its asker is gone).
            async with asyncio.timeout(self._wait_limit):
                while True:
                    taken, session = await shard.try_lock(key, peer)
                    if taken:
                        break
                    await asyncio.sleep(_BACKOFF[min(tries, len(_BACKOFF) - 1)])
                    tries += 1
        except TimeoutError:
            raise PeerLockTimeout(f"peer {peer}: its lock could not be had within {self._wait_limit:.0f} s") from None
        if tries:
            log.debug("peer %s: lock taken after %d tries", peer, tries + 1)
        return session

    async def close(self) -> None:
        await asyncio.gather(*(shard.close() for shard in self._shards))
