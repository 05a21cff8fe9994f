"""The fake VK server's data and rules, with no HTTP in it: what the bot sent, what users sent,
hosted files, the long-poll history, the per-token rate limit and `messages.send`'s checks.

Tests read and seed it directly; the HTTP layer (server.py) only parses and renders.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulators.vk.faults import ERROR_TEXTS, VkFaults
from emulators.vk.keyboard import KeyboardError, labels, parse_keyboard
from emulators.vk.longpoll import DEFAULT_HISTORY, Update, UpdateLog

Clock = Callable[[], float]  # seconds since the epoch, like time.time
Sink = Callable[[Update], None]

API_VERSION = "5.199"
CHAT_PEER_BASE = 2_000_000_000
MAX_MESSAGE_LENGTH = 4096
DEDUPE_WINDOW = 3600.0  # VK remembers a random_id for an hour
FILE_TTL = 3600.0
MAX_RANDOM_ID = 2**63 - 1
MAX_PEER_IDS = 100


class VkApiError(Exception):
    """A call VK refuses: becomes {"error": {"error_code": code, "error_msg": message, ...}}."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"VK error {code}: {message}")
        self.code = code
        self.message = message


def invalid(what: str) -> VkApiError:
    return VkApiError(100, f"One of the parameters specified was missing or invalid: {what}")


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the bot sent that VK accepted."""

    peer_id: int
    text: str
    keyboard: dict[str, Any] | None  # parsed; None when the call had no keyboard
    random_id: int
    attachment: str
    message_id: int
    at: float
    token: str
    conversation_message_id: int = 0
    params: Mapping[str, str] = field(default_factory=dict)  # every parameter as sent

    def labels(self) -> list[str]:
        """The labels of this message's keyboard, row by row ([] without one)."""
        return labels(self.keyboard)


@dataclass(frozen=True, slots=True)
class EventAnswer:
    """One messages.sendMessageEventAnswer call (the answer to a callback button)."""

    event_id: str
    user_id: int
    peer_id: int
    event_data: dict[str, Any] | None
    at: float
    token: str


@dataclass(frozen=True, slots=True)
class HostedFile:
    data: bytes
    content_type: str
    expires_at: float


class RateLimiter:
    """At most `limit` accepted calls per token in any sliding one-second window (None: no limit).

    Refused calls are not counted: a client that waits and retries gets through, as with VK.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._calls: dict[str, deque[float]] = {}

    def allow(self, token: str, now: float) -> bool:
        if self.limit is None:
            return True
        calls = self._calls.setdefault(token, deque())
        while calls and calls[0] <= now - 1.0:
            calls.popleft()
        if len(calls) >= self.limit:
            return False
        calls.append(now)
        return True


class VkState:
    """One community (group) and everything the fake VK server knows about it."""

    def __init__(
        self,
        *,
        group_id: int = 1,
        tokens: Sequence[str] = ("vk-token",),
        group_name: str = "Support bot",
        screen_name: str | None = None,
        rate_limit: int | None = 20,
        history: int = DEFAULT_HISTORY,
        start_ts: int = 1,
        max_message_length: int = MAX_MESSAGE_LENGTH,
        dedupe_window: float = DEDUPE_WINDOW,
        file_ttl: float = FILE_TTL,
        clock: Clock = time.time,
    ) -> None:
        if group_id < 1:
            raise ValueError("group_id must be positive")
        self.group_id = group_id
        self.tokens: set[str] = set(tokens)
        self.group_name = group_name
        self.screen_name = screen_name or f"club{group_id}"
        self.limiter = RateLimiter(rate_limit)
        self.max_message_length = max_message_length
        self.dedupe_window = dedupe_window
        self.file_ttl = file_ttl
        self.clock = clock
        self.faults = VkFaults()
        self.updates = UpdateLog(history=history, start_ts=start_ts)
        self.base_url = "http://127.0.0.1"  # set by the runner once the port is known
        self.sink: Sink | None = None  # set in callback mode: updates go there, not to long poll
        self.sent: list[SentMessage] = []
        self.event_answers: list[EventAnswer] = []
        self.incoming: dict[int, dict[str, Any]] = {}  # message id -> the full message object
        self.files: dict[str, HostedFile] = {}
        self.denied_peers: set[int] = set()
        self.used_keyboards: set[int] = set()  # message ids of one_time keyboards already pressed
        self.calls: list[tuple[str, int]] = []  # (method, error code or 0), in order
        self._by_peer: dict[int, list[SentMessage]] = {}
        self._dedupe: dict[tuple[int, int], SentMessage] = {}
        self._signals: dict[int, asyncio.Event] = {}
        self._message_ids: Iterator[int] = itertools.count(1)
        self._conversation_ids: dict[int, Iterator[int]] = {}
        self._version: Iterator[int] = itertools.count(10_000_000)
        self._media_ids: Iterator[int] = itertools.count(457_239_017)

    def __repr__(self) -> str:  # the full state is large and holds the tokens
        return f"VkState(group_id={self.group_id}, sent={len(self.sent)}, updates_ts={self.updates.ts})"

    @property
    def rate_limit(self) -> int | None:
        return self.limiter.limit

    @rate_limit.setter
    def rate_limit(self, limit: int | None) -> None:
        self.limiter.limit = limit

    # -- ids ---------------------------------------------------------------------------------

    def next_message_ids(self, peer_id: int) -> tuple[int, int, int]:
        """(id, conversation_message_id, version) for a new message in the peer's conversation."""
        conversation = self._conversation_ids.setdefault(peer_id, itertools.count(1))
        return next(self._message_ids), next(conversation), next(self._version)

    def next_media_id(self) -> int:
        """An id for a photo, document or voice message a user sends."""
        return next(self._media_ids)

    # -- incoming: what users do -------------------------------------------------------------

    def publish(self, update: Update) -> None:
        """Hand an update to the bot: into the long-poll history, or to the callback deliverer."""
        if self.sink is not None:
            self.sink(update)
        else:
            self.updates.append(update)

    def host_file(self, data: bytes, content_type: str) -> str:
        """Serve `data` at a URL of this server until `file_ttl` seconds from now."""
        file_id = secrets.token_urlsafe(12)
        self.files[file_id] = HostedFile(data, content_type, self.clock() + self.file_ttl)
        return f"{self.base_url}/files/{file_id}"

    def hosted(self, file_id: str) -> HostedFile | None:
        """The file behind a URL, or None if there is none or its URL has expired."""
        found = self.files.get(file_id)
        if found is None or self.clock() >= found.expires_at:
            return None
        return found

    # -- outgoing: messages.send -------------------------------------------------------------

    def send(self, params: Mapping[str, str], token: str) -> int | list[dict[str, Any]]:
        """Check and record one messages.send call, or raise VkApiError.

        With `peer_id` (or user_id, chat_id) the answer is the message id; with `peer_ids` it is
        one item per peer, a peer that may not be written to getting an error item instead.
        """
        peers, many = _peers(params)
        random_id = _int(params, "random_id", required=True)
        if random_id < 0 or random_id > MAX_RANDOM_ID:
            raise invalid("random_id should be a non-negative 64-bit integer")
        text = params.get("message", "")
        attachment = params.get("attachment", "")
        if not text.strip() and not attachment and not params.get("sticker_id") and not params.get("forward_messages"):
            raise invalid("message is empty or invalid")
        if len(text) > self.max_message_length:
            raise VkApiError(914, "Message is too long")
        keyboard = None
        if params.get("keyboard"):
            try:
                keyboard = parse_keyboard(params["keyboard"])
            except KeyboardError as exc:
                raise VkApiError(911, f"Keyboard format is invalid: {exc}") from None
        if not many:
            if peers[0] in self.denied_peers:
                raise VkApiError(901, ERROR_TEXTS[901])
            return self._record(peers[0], text, keyboard, random_id, attachment, token, params).message_id
        items: list[dict[str, Any]] = []
        for peer_id in peers:
            if peer_id in self.denied_peers:
                items.append({"peer_id": peer_id, "error": {"code": 901, "description": ERROR_TEXTS[901]}})
                continue
            sent = self._record(peer_id, text, keyboard, random_id, attachment, token, params)
            ids = {"message_id": sent.message_id, "conversation_message_id": sent.conversation_message_id}
            items.append({"peer_id": peer_id, **ids})
        return items

    def _record(
        self,
        peer_id: int,
        text: str,
        keyboard: dict[str, Any] | None,
        random_id: int,
        attachment: str,
        token: str,
        params: Mapping[str, str],
    ) -> SentMessage:
        now = self.clock()
        if random_id != 0:
            earlier = self._dedupe.get((peer_id, random_id))
            if earlier is not None and now - earlier.at < self.dedupe_window:
                return earlier  # a resend: the same message, nothing new
        message_id, conversation_id, _ = self.next_message_ids(peer_id)
        sent = SentMessage(
            peer_id, text, keyboard, random_id, attachment, message_id, now, token, conversation_id, dict(params)
        )
        self.sent.append(sent)
        self._by_peer.setdefault(peer_id, []).append(sent)
        if random_id != 0:
            self._dedupe[(peer_id, random_id)] = sent
        signal = self._signals.pop(peer_id, None)
        if signal is not None:
            signal.set()
        return sent

    def answer_event(self, params: Mapping[str, str], token: str) -> int:
        """Check and record one messages.sendMessageEventAnswer call."""
        event_id = params.get("event_id", "")
        if not event_id:
            raise invalid("event_id is a required parameter")
        user_id = _int(params, "user_id", required=True)
        peer_id = _int(params, "peer_id", required=True)
        data: dict[str, Any] | None = None
        if params.get("event_data"):
            try:
                loaded = json.loads(params["event_data"])
            except ValueError:
                loaded = None
            if not isinstance(loaded, dict):
                raise invalid("event_data should be a JSON object")
            data = loaded
        self.event_answers.append(EventAnswer(event_id, user_id, peer_id, data, self.clock(), token))
        return 1

    def get_messages(self, params: Mapping[str, str]) -> dict[str, Any]:
        """messages.getById: the known messages among `message_ids`, in the order asked."""
        raw = params.get("message_ids", "")
        try:
            ids = [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise invalid("message_ids should be a list of integers") from None
        if not ids:
            raise invalid("message_ids is a required parameter")
        outgoing = {m.message_id: m for m in self.sent}
        items: list[dict[str, Any]] = []
        for message_id in ids:
            if message_id in self.incoming:
                items.append(self.incoming[message_id])
            elif message_id in outgoing:
                items.append(self._render_sent(outgoing[message_id]))
        return {"count": len(items), "items": items}

    def _render_sent(self, sent: SentMessage) -> dict[str, Any]:
        message: dict[str, Any] = {
            "date": int(sent.at),
            "from_id": -self.group_id,
            "id": sent.message_id,
            "out": 1,
            "version": 0,
            "attachments": [],
            "conversation_message_id": sent.conversation_message_id,
            "fwd_messages": [],
            "important": False,
            "is_hidden": False,
            "peer_id": sent.peer_id,
            "random_id": sent.random_id,
            "text": sent.text,
        }
        if sent.keyboard is not None:
            message["keyboard"] = sent.keyboard
        return message

    # -- reading what the bot sent -----------------------------------------------------------

    def sent_to(self, peer_id: int) -> list[SentMessage]:
        return list(self._by_peer.get(peer_id, []))

    def last_keyboard(self, peer_id: int) -> SentMessage | None:
        """The last message to the peer that carried a keyboard (inline or not)."""
        for sent in reversed(self._by_peer.get(peer_id, [])):
            if sent.keyboard is not None:
                return sent
        return None

    async def sent_at(self, peer_id: int, index: int, within: float) -> SentMessage | None:
        """The peer's `index`-th message (0-based), waiting up to `within` seconds for it to be sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            got = self._by_peer.get(peer_id, [])
            if index < len(got):
                return got[index]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            signal = self._signals.setdefault(peer_id, asyncio.Event())
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "long_poll": {"ts": self.updates.ts, "retained": len(self.updates), "mode": self.mode},
            "sent": [
                {
                    "peer_id": m.peer_id,
                    "text": m.text,
                    "keyboard": m.keyboard,
                    "random_id": m.random_id,
                    "attachment": m.attachment,
                    "message_id": m.message_id,
                    "at": m.at,
                }
                for m in self.sent
            ],
            "event_answers": [
                {"event_id": a.event_id, "user_id": a.user_id, "peer_id": a.peer_id, "event_data": a.event_data}
                for a in self.event_answers
            ],
            "faults": self.faults.snapshot(),
            "rate_limit": self.rate_limit,
        }

    @property
    def mode(self) -> str:
        return "long_poll" if self.sink is None else "callback"


def _int(params: Mapping[str, str], name: str, *, required: bool = False) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid(f"{name} is a required parameter")
        return 0
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} not integer") from None


def _peers(params: Mapping[str, str]) -> tuple[list[int], bool]:
    """The recipients, and whether they came as `peer_ids` (which changes the answer's shape)."""
    if params.get("user_ids"):
        raise invalid("user_ids is not supported by the emulator; use peer_ids")
    if params.get("peer_ids"):
        try:
            peers = [int(part) for part in params["peer_ids"].split(",") if part.strip()]
        except ValueError:
            raise invalid("peer_ids should be a list of integers") from None
        if not 1 <= len(peers) <= MAX_PEER_IDS:
            raise invalid(f"peer_ids should hold 1..{MAX_PEER_IDS} peers")
        many = True
    elif params.get("peer_id"):
        peers, many = [_int(params, "peer_id")], False
    elif params.get("user_id"):
        peers, many = [_int(params, "user_id")], False
    elif params.get("chat_id"):
        peers, many = [CHAT_PEER_BASE + _int(params, "chat_id")], False
    else:
        raise invalid("you should specify peer_id, user_id, chat_id or peer_ids param")
    if any(peer_id <= 0 for peer_id in peers):
        raise invalid("peer_id should be a user or a chat")
    return peers, many
