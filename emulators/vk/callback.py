"""Callback API delivery of the fake VK server: confirm the bot's endpoint, then POST it events.

VK's rules: the endpoint first answers {"type": "confirmation", "group_id": G} with the
community's confirmation string; every event then goes as JSON with `secret` added, and must be
answered HTTP 200 with the body "ok" within a timeout, or VK tries the same event (same
event_id) again later, up to a number of attempts, with growing pauses. Switches make VK's
less polite habits happen on demand: an event delivered twice, or again after it was answered.
Every request made, and how it was answered, is recorded.

Several URLs (`urls`) stand for the workers behind a load balancer doing plain round robin, as
nginx's upstream does by default: each request, a confirmation, a first try, a retry, a
duplicate or a resend, goes to the next URL in turn, whatever happened to the last one there. A
worker that is down (connection refused, reset) fails that attempt like any other failure, and
VK tries the event again after its pause, most likely on another worker. (nginx would pass a
refused connection on to the next server at once; VK seeing the failure is the harder case.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from emulators.vk.longpoll import Update

log = logging.getLogger(__name__)

Reason = Literal["confirmation", "first", "retry", "duplicate", "resend"]

DEFAULT_TIMEOUT = 5.0
DEFAULT_ATTEMPTS = 5
DEFAULT_RETRY_DELAY = 1.0  # before the 2nd attempt; doubled before each later one
BODY_KEPT = 200  # characters of each answer kept in the record


class CallbackConfirmationError(Exception):
    """The endpoint did not answer the confirmation request with the confirmation string."""


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST to the bot's endpoint and what came back."""

    event_id: str  # "" for the confirmation request
    type: str
    reason: Reason
    attempt: int  # 1-based, counted within one delivery (a duplicate or resend starts at 1 again)
    status: int | None  # None: no HTTP answer (timeout, refused, reset)
    body: str
    error: str | None
    accepted: bool  # HTTP 200 with body "ok" (for a confirmation: the confirmation string)
    at: float  # loop time when the request was made
    url: str = ""  # where it was posted (one of the delivery's urls)


@dataclass(frozen=True, slots=True)
class _Job:
    update: Update
    duplicate: bool  # deliver a copy right after the first delivery
    resend: float | None  # deliver again this many seconds after it was accepted


class CallbackDelivery:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        group_id: int,
        url: str = "",
        urls: Sequence[str] = (),
        secret: str,
        confirmation_code: str,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        workers: int = 1,
        record: list[DeliveryAttempt] | None = None,
    ) -> None:
        if attempts < 1 or workers < 1 or timeout <= 0 or retry_delay < 0:
            raise ValueError("attempts and workers must be >= 1, timeout > 0, retry_delay >= 0")
        if bool(url) == bool(urls) or not all(urls):
            raise ValueError("give either url or urls (round robin over them), not both, and no empty one")
        self.session = session
        self.group_id = group_id
        self.urls: tuple[str, ...] = tuple(urls) if urls else (url,)
        self._turn = 0  # index into urls of the next request
        self.secret = secret
        self.confirmation_code = confirmation_code
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.record: list[DeliveryAttempt] = record if record is not None else []
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._duplicates = 0
        self._resends: list[float] = []  # delays of the next resends, one per event

    @property
    def url(self) -> str:
        """The first (with one URL, the only) endpoint."""
        return self.urls[0]

    # -- switches ----------------------------------------------------------------------------

    def duplicate_deliveries(self, count: int = 1) -> None:
        """Deliver each of the next `count` events twice (the copy right after the first)."""
        self._duplicates += count

    def delay_resend(self, count: int = 1, delay: float = 0.5) -> None:
        """Deliver each of the next `count` events again `delay` seconds after it was accepted."""
        self._resends.extend([delay] * count)

    # -- running -----------------------------------------------------------------------------

    async def confirm(self) -> None:
        """Check the endpoint like VK does before it sends events; CallbackConfirmationError if not."""
        body = {"type": "confirmation", "group_id": self.group_id}
        attempt = await self._post(body, "", "confirmation", "confirmation", 1, expect=self.confirmation_code)
        if not attempt.accepted:
            raise CallbackConfirmationError(
                f"{attempt.url} answered the confirmation request with HTTP {attempt.status} "
                f"{attempt.body!r} ({attempt.error or 'no transport error'}); "
                f"expected {self.confirmation_code!r}"
            )

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self._worker_count)]

    def enqueue(self, update: Update) -> None:
        # The switches apply to the events published after them, whenever those are delivered.
        duplicate = self._duplicates > 0
        self._duplicates -= duplicate
        resend = self._resends.pop(0) if self._resends else None
        self._queue.put_nowait(_Job(update, duplicate, resend))

    async def idle(self, within: float = 10.0) -> None:
        """Wait until every queued event, retry, duplicate and resend has been delivered or given up."""
        async with asyncio.timeout(within):
            while True:
                await self._queue.join()
                busy = [t for t in self._tasks if not t.done()]
                if not busy and self._queue.empty():
                    return
                await asyncio.wait(busy)

    async def close(self) -> None:
        tasks = [*self._workers, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                accepted = await self._attempt(job.update, "first", 1)
                if not accepted:
                    self._spawn(self._retry(job.update, "first", job.resend))
                elif job.resend is not None:
                    self._spawn(self._resend_later(job.update, job.resend))
                if job.duplicate:
                    self._spawn(self._deliver(job.update, "duplicate"))
            finally:
                self._queue.task_done()

    async def _retry(self, update: Update, reason: Reason, resend: float | None) -> None:
        """Attempts 2.. of a delivery whose first attempt failed, with growing pauses."""
        for attempt in range(2, self.attempts + 1):
            await asyncio.sleep(self.retry_delay * 2 ** (attempt - 2))
            if await self._attempt(update, "retry", attempt):
                if resend is not None:
                    await self._resend_later(update, resend)
                return
        log.warning("callback event %s given up after %d attempts (%s)", update.get("event_id"), self.attempts, reason)

    async def _deliver(self, update: Update, reason: Reason) -> None:
        if not await self._attempt(update, reason, 1):
            await self._retry(update, reason, None)

    async def _resend_later(self, update: Update, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._deliver(update, "resend")

    async def _attempt(self, update: Update, reason: Reason, attempt: int) -> bool:
        body = {**update, "secret": self.secret} if self.secret else dict(update)
        done = await self._post(body, str(update.get("event_id", "")), str(update.get("type", "")), reason, attempt)
        return done.accepted

    async def _post(
        self, body: dict[str, Any], event_id: str, kind: str, reason: Reason, attempt: int, *, expect: str = "ok"
    ) -> DeliveryAttempt:
        at = asyncio.get_running_loop().time()
        url = self.urls[self._turn]
        self._turn = (self._turn + 1) % len(self.urls)
        status: int | None = None
        text, error = "", None
        try:
            async with self.session.post(
                url,
                data=json.dumps(body, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                status = response.status
                text = await response.text(errors="replace")
        except TimeoutError:
            error = f"no answer within {self.timeout} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        accepted = status == 200 and text == expect
        entry = DeliveryAttempt(event_id, kind, reason, attempt, status, text[:BODY_KEPT], error, accepted, at, url)
        self.record.append(entry)
        return entry
