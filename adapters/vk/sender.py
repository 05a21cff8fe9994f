"""Sending replies: split long texts, idempotent random_id, retries that never fail the user
for VK's own limits (error 6 too many requests, 10 internal error), and a keyboard that VK
still refuses (911) dropped rather than the message.

Messages sent in the same turn of the event loop (the replies of one group commit, say) go
out together as one `execute` of up to 25 `messages.send` calls (dev.vk.com/ru/method/execute):
one HTTP request and one call of the token's rate limit instead of one each. A message alone
goes out as a plain messages.send. Each message keeps its own outcome: a call that failed inside
the script is `false` in the answer, its error listed in `execute_errors`, and raised to that
message's sender alone, so retries, the 911 fallback and the give-up codes act as before; a
user's messages are sent one after another, each once the previous one was taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus

from adapters.vk.api import ExecuteResult, VkApi, VkApiError, VkTransportError, backoff_delay
from adapters.vk.keyboard import render, split_text
from engine.ports.telemetry import CHANNEL_ERRORS, NULL_TELEMETRY, REPLIES_SENT, Telemetry
from engine.replies import Reply
from engine.text_safety import clean_outgoing

log = logging.getLogger(__name__)

RETRY_CODES = frozenset({6, 10})  # too many requests per second; internal server error
# The user blocked the community, messages from it are not allowed, or the same text was sent
# too often (9, flood control): nothing a retry would change.
GIVE_UP_CODES = frozenset({7, 9, 900, 901, 902, 15})


def random_id(key: str, part: int) -> int:
    """A stable non-zero int63 per (event, reply, part): a resend is recognised by VK."""
    digest = hashlib.sha256(f"{key}/{part}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF or 1


def reply_key(event_id: str, index: int, reply: Reply) -> str:
    """The dedupe key of an event's reply: the same reply sent again (a resend after a crash, by
    any worker) is dropped by VK, while a reply that replaced it (an outcome told within the
    wait) is a different message and goes through."""
    digest = hashlib.blake2b(reply.text.encode(), digest_size=6).hexdigest()
    return f"{event_id}:{index}:{digest}"


MAX_BATCH = 25  # dev.vk.com/ru/method/execute: at most 25 API calls in one `code`
# [guess] VK documents no limit on the code's length; a batch is closed before its code grows
# past this (a full batch of 4096-character texts would be some 300 KB once form-encoded).
MAX_BATCH_CODE = 64_000


@dataclass(slots=True)
class _Queued:
    params: dict[str, Any]
    done: asyncio.Future[None]


class SendBatcher:
    """messages.send calls queued in one turn of the event loop, sent as one `execute`."""

    def __init__(self, api: VkApi, *, max_calls: int = MAX_BATCH, max_code: int = MAX_BATCH_CODE) -> None:
        self.api = api
        self.max_calls = max_calls
        self.max_code = max_code
        self._queue: list[_Queued] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # execute requests sent
        self.batched = 0  # messages that went out in them

    async def send(self, params: dict[str, Any]) -> None:
        """Send one message; raises what messages.send would (VkApiError, VkTransportError)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append(_Queued(params, done))
        await done

    def _flush(self) -> None:
        queue, self._queue = [item for item in self._queue if not item.done.done()], []
        if len(queue) == 1:  # alone this turn (one user after another): no script to build
            self._start([(queue[0], "")])
            return
        batch: list[tuple[_Queued, str]] = []
        size = 0
        for item in queue:  # those whose senders were not cancelled meanwhile
            try:
                call = _script_call(item.params)
            except (TypeError, ValueError):  # not for a script: sent alone, as a plain messages.send
                self._start([(item, "")])
                continue
            if batch and (len(batch) >= self.max_calls or size + len(call) > self.max_code):
                self._start(batch)
                batch, size = [], 0
            batch.append((item, call))
            size += len(call) + 3
        if batch:
            self._start(batch)

    def _start(self, batch: list[tuple[_Queued, str]]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[_Queued, str]]) -> None:
        if len(batch) == 1:
            await self._one(batch[0][0])
            return
        code = "return%5B" + "%2C".join(call for _, call in batch) + "%5D%3B"  # return[…,…];
        try:
            result = await self.api.call_form("execute", "code=" + code)
        except VkApiError as exc:
            if exc.code not in RETRY_CODES:
                # The script refused (12, 13), or execute itself: an error about the call, not
                # about any one message, must not count as a message refused for good (7, 9, 15).
                log.error("VK refused a batch of messages (%s); sending them one by one", exc)
                await asyncio.gather(*(self._one(item) for item, _ in batch))
                return
            _fail_all(batch, exc)  # too many requests, VK's internal error: each sender retries
            return
        except asyncio.CancelledError:
            for item, _ in batch:
                item.done.cancel()
            raise
        except Exception as exc:  # the waiting senders see it, as one message's sender would
            _fail_all(batch, exc)
            return
        self.batches += 1
        self.batched += len(batch)
        items = result.response if isinstance(result, ExecuteResult) else None
        if not isinstance(items, list) or len(items) != len(batch):
            _fail_all(batch, VkTransportError(f"execute: the answer holds no list of {len(batch)} results"))
            return
        errors = iter([e for e in result.errors or () if isinstance(e, dict) and e.get("method") == "messages.send"]
                      if isinstance(result, ExecuteResult) and isinstance(result.errors, list) else [])
        for (item, _), outcome in zip(batch, items, strict=True):
            if item.done.done():
                continue
            if outcome is not False:
                item.done.set_result(None)
                continue
            error = next(errors, None)
            if error is None:  # a failure VK did not explain: tried again (random_id dedupes)
                item.done.set_exception(VkTransportError("execute: messages.send failed without an error"))
            else:
                item.done.set_exception(VkApiError(int(error.get("error_code", 0)), str(error.get("error_msg", "")),
                                                   "messages.send"))

    async def _one(self, item: _Queued) -> None:
        try:
            await self.api.call("messages.send", item.params)
        except asyncio.CancelledError:
            item.done.cancel()
            raise
        except Exception as exc:
            if not item.done.done():
                item.done.set_exception(exc)
        else:
            if not item.done.done():
                item.done.set_result(None)


def _fail_all(batch: list[tuple[_Queued, str]], exc: BaseException) -> None:
    for item, _ in batch:
        if not item.done.done():
            item.done.set_exception(exc)


def _script_call(params: dict[str, Any]) -> str:
    """One `API.messages.send({...})` of a VKScript, form-encoded. random_id goes as a string:
    VKScript's numbers may not hold 63 bits exactly, and VK reads every parameter from text."""
    fields = {k: (str(v) if k == "random_id" else v) for k, v in params.items() if k != "keyboard" and v is not None}
    head = _json_literal(fields)
    keyboard = params.get("keyboard")
    if keyboard is None:
        return _CALL_OPEN + quote_plus(head) + _CALL_CLOSE
    return _CALL_OPEN + quote_plus(head[:-1]) + _keyboard_field(keyboard) + _CALL_CLOSE


_CALL_OPEN = quote_plus("API.messages.send(")
_CALL_CLOSE = quote_plus(")")


def _json_literal(value: object) -> str:
    # U+2028 and U+2029 end a line inside an ECMAScript string literal (before ES2019): escaped.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace(
        "\u2028", "\\u2028").replace("\u2029", "\\u2029")


@lru_cache(maxsize=512)
def _keyboard_field(keyboard: str) -> str:
    """`,"keyboard":"…"}` form-encoded; keyboards repeat from message to message."""
    return quote_plus(',"keyboard":' + _json_literal(keyboard) + "}")


class VkSender:
    def __init__(self, api: VkApi, *, attempts: int = 30, deadline: float = 120.0, backoff: float = 0.5,
                 max_backoff: float = 8.0, batch: bool = True, telemetry: Telemetry = NULL_TELEMETRY) -> None:
        self.api = api
        self.telemetry = telemetry
        self.batcher = SendBatcher(api, max_calls=MAX_BATCH if batch else 1)
        self.attempts = attempts
        self.deadline = deadline  # VK's limits pass; a message is tried for this long
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retried = 0

    async def send(self, peer_id: int, reply: Reply, key: str, *, keyboard: bool = True) -> bool:
        """Send one reply (as several messages if long; the keyboard with the last one).

        keyboard=False sends no keyboard at all, leaving the user's current one in place (a
        notice in the middle of a dialogue); an empty one would hide it.
        True when there is nothing more to do (sent, or refused for good: the user blocked the
        community); False when it gave up on errors that a later try may get past."""
        message = render(reply)
        parts = split_text(clean_outgoing(message.text))
        for i, part in enumerate(parts):
            params: dict[str, Any] = {"peer_id": peer_id, "message": part, "random_id": random_id(key, i),
                                      "dont_parse_links": 1}
            if i == len(parts) - 1 and keyboard:
                params["keyboard"] = message.keyboard
            if not await self._send(params):
                return False
        return True

    async def _send(self, params: dict[str, Any]) -> bool:
        give_up_at = asyncio.get_running_loop().time() + self.deadline
        for attempt in range(self.attempts):
            if attempt and asyncio.get_running_loop().time() > give_up_at:
                break
            try:
                await self.batcher.send(params)
                self.telemetry.count(REPLIES_SENT, channel="vk")
                return True
            except VkApiError as exc:
                self.telemetry.count(CHANNEL_ERRORS, channel="vk", code=str(exc.code))
                if exc.code == 911 and "keyboard" in params:
                    # Its labels may quote what users wrote (their tickets' subjects): the size only.
                    log.error("VK refused a keyboard (%s) of %d characters; sending the text without it", exc,
                              len(str(params["keyboard"])))
                    params = {k: v for k, v in params.items() if k != "keyboard"}
                    continue
                if exc.code in GIVE_UP_CODES:
                    log.info("message to %s not allowed: %s", params["peer_id"], exc)
                    return True
                if exc.code not in RETRY_CODES:
                    log.error("message to %s failed: %s", params["peer_id"], exc)
                    return True
            except VkTransportError as exc:
                self.telemetry.count(CHANNEL_ERRORS, channel="vk", code="transport")
                log.warning("sending to %s: %s (attempt %d)", params["peer_id"], exc, attempt + 1)
            self.retried += 1
            await asyncio.sleep(backoff_delay(attempt, self.backoff, self.max_backoff))
        log.error("giving up on a message to %s after %d attempts", params["peer_id"], self.attempts)
        return False
