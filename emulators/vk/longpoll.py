"""The fake VK server's Bots Long Poll history: numbered updates, the key, and held requests.

Numbering follows VK: `ts` names the next update to read. A request with `ts` = T answers the
retained updates numbered T and above (at most `max_batch`) and the ts to ask with next; with
none yet it is held until one arrives or `wait` runs out. Failures are VK's: 1 when T is out of
the retained range (the answer carries the ts to go on from), 2 when the key is wrong or was
expired, 3 when the history behind the key was lost (get a new key and ts).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from typing import Any

Update = dict[str, Any]

DEFAULT_HISTORY = 1000
MAX_BATCH = 100


def new_key() -> str:
    return secrets.token_hex(20)  # VK's keys are 40 hex characters too


class UpdateLog:
    def __init__(self, *, history: int = DEFAULT_HISTORY, start_ts: int = 1, max_batch: int = MAX_BATCH) -> None:
        if history < 1 or max_batch < 1 or start_ts < 0:
            raise ValueError("history and max_batch must be >= 1, start_ts >= 0")
        self.max_batch = max_batch
        self.key = new_key()
        self._events: deque[Update] = deque(maxlen=history)
        self._next = start_ts  # the number the next update gets
        self._lost_keys: set[str] = set()
        self._closed = False
        self._changed = asyncio.Event()
        self.held = 0  # requests being held for updates right now
        self._holding = asyncio.Event()  # set while at least one request is held

    @property
    def ts(self) -> int:
        """The ts a fresh poller starts from: the number of the next update."""
        return self._next

    @property
    def oldest(self) -> int:
        """The number of the oldest update still retained (== ts when there is none)."""
        return self._next - len(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def append(self, update: Update) -> int:
        number = self._next
        self._events.append(update)
        self._next += 1
        self._wake()
        return number

    def expire_key(self) -> None:
        """Requests with the current key answer {"failed": 2} from now on."""
        self.key = new_key()
        self._wake()

    def lose_history(self) -> None:
        """Requests with the current key answer {"failed": 3}: the poller must start over."""
        self._lost_keys.add(self.key)
        self.key = new_key()
        self._wake()

    def close(self) -> None:
        """Answer held requests now (the server is stopping)."""
        self._closed = True
        self._wake()

    def answer_now(self, key: str, ts: str) -> dict[str, Any] | None:
        """The answer if there is one to give at once; None when the request should be held."""
        if key in self._lost_keys:
            return {"failed": 3}
        if not secrets.compare_digest(key.encode(), self.key.encode()):
            return {"failed": 2}
        number = int(ts) if ts.isdigit() else -1
        if number < self.oldest or number > self._next:
            return {"failed": 1, "ts": str(self._next)}
        if number == self._next and not self._closed:
            return None
        start = number - self.oldest
        batch = [self._events[i] for i in range(start, min(start + self.max_batch, len(self._events)))]
        return {"ts": str(number + len(batch)), "updates": batch}

    async def poll(self, key: str, ts: str, wait: float) -> dict[str, Any]:
        """Answer an a_check request, holding it up to `wait` seconds for an update."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            answer = self.answer_now(key, ts)
            if answer is not None:
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {"ts": ts, "updates": []}
            changed = self._changed
            self.held += 1
            self._holding.set()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return {"ts": ts, "updates": []}
            finally:
                self.held -= 1
                if self.held == 0:
                    self._holding.clear()

    async def poller_waiting(self, within: float = 5.0) -> None:
        """Return once a poller is held waiting for updates (TimeoutError after `within` s).

        A bot that skips old events takes its ts first; once it waits here it will see what comes next.
        """
        await asyncio.wait_for(self._holding.wait(), within)

    def _wake(self) -> None:
        # One event per generation: every held request wakes and re-checks, none clears it for others.
        self._changed.set()
        self._changed = asyncio.Event()
