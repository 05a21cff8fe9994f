"""Bots Long Poll: one poller per community.

The `ts` is kept in storage and moved on only past events that were handled, so a restart
neither replays handled events (a batch is checked against the inbox) nor skips new ones.
Polling goes on while earlier events are being handled; the saved ts trails behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from adapters.vk.api import FATAL_CODES, FatalVkError, VkApi, VkApiError, VkError, backoff_delay
from adapters.vk.bot import VkBot
from adapters.vk.updates import parse_update
from engine.ports import Storage
from engine.work.leases import JobLease

log = logging.getLogger(__name__)

DEFAULT_WAIT = 25  # seconds a long-poll request waits for events


@dataclass(slots=True)
class _Batch:
    ts: str
    open: int


@dataclass(slots=True)
class TsTracker:
    """Knows which ts is safe to save: the one after the last batch whose events are all done."""

    batches: deque[_Batch] = field(default_factory=deque)
    safe: str | None = None

    def add(self, ts: str, events: int) -> _Batch:
        batch = _Batch(ts, events)
        self.batches.append(batch)
        self._advance()
        return batch

    def done(self, batch: _Batch) -> None:
        batch.open -= 1
        self._advance()

    def _advance(self) -> None:
        while self.batches and self.batches[0].open == 0:
            self.safe = self.batches.popleft().ts


class _LeaseLost(Exception):
    """Another worker polls now."""


class LongPoller:
    def __init__(self, api: VkApi, storage: Storage, bot: VkBot, *, group_id: int, wait: int = DEFAULT_WAIT,
                 max_pending: int = 1000, backoff: float = 1.0, max_backoff: float = 60.0,
                 save_every: float = 1.0, lease: JobLease | None = None, lease_check_every: float = 5.0) -> None:
        self.api = api
        self.lease = lease
        self.lease_check_every = lease_check_every
        self.storage = storage
        self.bot = bot
        self.group_id = group_id
        self.wait = wait
        self.max_pending = max_pending
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cursor = f"vk:{group_id}:longpoll_ts"
        self.tracker = TsTracker()
        self._saved: str | None = None
        self._saving = asyncio.Lock()
        self.ready = asyncio.Event()  # set once the first long-poll server is known
        self.save_every = save_every
        self._save_task: asyncio.Task[None] | None = None

    async def server(self, ts: str | None) -> dict[str, Any]:
        answer = await self.api.call("groups.getLongPollServer", {"group_id": self.group_id})
        server = {"server": str(answer["server"]), "key": str(answer["key"]), "ts": str(answer["ts"])}
        if ts is not None:
            server["ts"] = ts
        return server

    async def run(self) -> None:
        """Poll until cancelled. With a lease (several workers on one database) only the holder
        polls; the others wait to take over, from the saved ts, if it stops renewing."""
        try:
            while True:
                if self.lease is not None and not await self.lease.hold():
                    await asyncio.sleep(self.lease_check_every)
                    continue
                try:
                    await self._poll()
                except _LeaseLost:
                    # What is in hand finishes here, but its ts is not saved (the new holder's
                    # may be ahead): the new holder went on from the ts saved before, and drops,
                    # as handled, what it fetched again.
                    await self.bot.dispatcher.drain()
                    self.ready.clear()
        finally:  # stopping: keep what is known to be handled (cancellation included)
            if self._save_task is not None:
                self._save_task.cancel()
            await self.save_now()
            if self.lease is not None:
                await self.lease.release()

    async def save_now(self) -> None:
        if self._save_task is not None and not self._save_task.done():
            self._save_task.cancel()
        try:
            await self._save()
        except Exception:
            log.exception("saving the long-poll ts failed")

    async def _poll(self) -> None:
        stored = await self.storage.get_cursor(self.cursor)
        self._saved = stored
        if stored is None:
            log.info("long poll starts fresh: events before now are not fetched")
        server = await self._retrying(self.server, stored)
        if stored is None:
            # Saved before anything is handled: a crash before the first periodic save must
            # resume from here, not start fresh again and skip what came in between.
            await self.storage.put_cursor(self.cursor, server["ts"])
            self._saved = server["ts"]
        self.ready.set()
        failures = 0
        while True:
            if self.lease is not None and not await self.lease.hold():
                raise _LeaseLost
            try:
                server = await self._step(server)
                failures = 0
            except FatalVkError:
                raise
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
                failures += 1
                delay = backoff_delay(failures, self.backoff, self.max_backoff)
                log.warning("long poll request failed (%s); again in %.1f s", exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
            except Exception:  # storage trouble: the ts stays where it was, the batch comes again
                failures += 1
                delay = backoff_delay(failures, self.backoff, self.max_backoff)
                log.exception("long poll batch failed; again in %.1f s", delay)
                await asyncio.sleep(delay)

    async def _step(self, server: dict[str, Any]) -> dict[str, Any]:
        """One long-poll request and what it brought; returns the server to ask next."""
        answer = await self.check(server)
        failed = answer.get("failed")
        if failed == 1:  # part of the history is gone: go on from the ts given
            log.warning("long poll: history lost up to ts %s; some events may be missed", answer.get("ts"))
            return {**server, "ts": str(answer["ts"])}
        if failed in (2, 3):  # 2: key expired (keep ts); 3: key and ts lost
            return await self._retrying(self.server, server["ts"] if failed == 2 else None)
        if failed is not None or not isinstance(answer.get("updates"), list) or "ts" not in answer:
            raise ValueError(f"unexpected long-poll answer {str(answer)[:200]!r}")
        await self.dispatch(answer["updates"], str(answer["ts"]))
        await self.bot.dispatcher.wait_below(self.max_pending)
        return {**server, "ts": str(answer["ts"])}

    async def check(self, server: dict[str, Any]) -> dict[str, Any]:
        params = {"act": "a_check", "key": server["key"], "ts": server["ts"], "wait": self.wait}
        timeout = aiohttp.ClientTimeout(total=self.wait + 15)
        async with self.api.session.post(server["server"], data=params, timeout=timeout) as resp:
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status)
            answer = await resp.json(content_type=None)
        if not isinstance(answer, dict):
            raise ValueError(f"long poll answered {type(answer).__name__}")
        return answer

    async def dispatch(self, updates: list[Any], ts: str) -> None:
        parsed = [m for m in map(parse_update, updates) if m is not None]
        messages = list({m.event_id: m for m in parsed}.values())  # VK repeating one in a batch
        # After a restart the first batches may hold events handled before it: the engine's
        # commit refuses their steps (the inbox's key decides), so no read is made for them here.
        batch = self.tracker.add(ts, len(messages))
        for msg in messages:
            self.bot.submit(msg, done=lambda: self._done(batch))
        self._schedule_save()

    def _done(self, batch: _Batch) -> None:
        self.tracker.done(batch)
        self._schedule_save()

    def _schedule_save(self) -> None:
        """Write the safe ts at most every save_every seconds: a crash replays at most that much,
        and the engine drops what was handled of it (its commit refuses a handled event)."""
        if self.tracker.safe == self._saved or (self._save_task is not None and not self._save_task.done()):
            return
        self._save_task = asyncio.get_running_loop().create_task(self._save_later())

    async def _save_later(self) -> None:
        await asyncio.sleep(self.save_every)
        try:
            await self._save()
        except Exception:
            log.exception("saving the long-poll ts failed; will try again")

    async def _save(self) -> None:
        if self.lease is not None and not self.lease.held:
            return  # another poller owns the ts now; this one's may be behind it
        async with self._saving:  # one write at a time, always of the newest safe ts
            safe = self.tracker.safe
            if safe is not None and safe != self._saved:
                await self.storage.put_cursor(self.cursor, safe)
                self._saved = safe

    async def _retrying(self, get: Callable[[str | None], Awaitable[dict[str, Any]]],
                        ts: str | None) -> dict[str, Any]:
        failures = 0
        while True:
            try:
                return await get(ts)
            except VkApiError as exc:
                if exc.code in FATAL_CODES:
                    raise FatalVkError(f"VK refuses the long poll: {exc}") from exc
                failures += 1
                delay = backoff_delay(failures, self.backoff, self.max_backoff)
                log.error("groups.getLongPollServer failed (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            except (VkError, KeyError, TypeError) as exc:
                failures += 1
                delay = backoff_delay(failures, self.backoff, self.max_backoff)
                log.error("groups.getLongPollServer failed (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
