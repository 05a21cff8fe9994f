"""Scripted VK users: what tests and benchmarks drive. Each action becomes a VK update (the
5.199 shape a community bot receives) delivered by the server's mode, long poll or callback;
replies are read back from what the bot sent to the user's peer.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from emulators.vk.keyboard import LABELLED, labels, payload_text
from emulators.vk.longpoll import Update
from emulators.vk.state import API_VERSION, CHAT_PEER_BASE, SentMessage, VkState

CLIENT_INFO: dict[str, Any] = {
    "button_actions": [
        "text", "vkpay", "open_app", "location", "open_link", "callback", "intent_subscribe", "intent_unsubscribe",
    ],
    "keyboard": True,
    "inline_keyboard": True,
    "carousel": True,
    "lang_id": 0,
}
# Photo size types by the longest side they allow (dev.vk.com, photo sizes).
PHOTO_SCALE: tuple[tuple[str, int], ...] = (("s", 75), ("m", 130), ("x", 604), ("y", 807), ("z", 1080), ("w", 2560))
# docs.doc `type`: 1 text, 2 archive, 3 gif, 4 image, 5 audio, 6 video, 7 e-book, 8 other.
DOC_TYPES: dict[str, int] = {
    **dict.fromkeys(("txt", "doc", "docx", "pdf", "rtf", "odt", "xls", "xlsx", "csv"), 1),
    **dict.fromkeys(("zip", "rar", "7z", "tar", "gz"), 2),
    "gif": 3,
    **dict.fromkeys(("jpg", "jpeg", "png", "bmp", "webp", "heic"), 4),
    **dict.fromkeys(("mp3", "ogg", "wav", "m4a"), 5),
    **dict.fromkeys(("mp4", "avi", "mov", "mkv"), 6),
    **dict.fromkeys(("epub", "fb2", "djvu"), 7),
}
OGG_SAMPLE = b"OggS\x00\x02" + bytes(58)  # a header-shaped stand-in; nobody decodes it


@dataclass(frozen=True, slots=True)
class PostedEvent:
    """An update a user's action produced (delivered by long poll or callback)."""

    event_id: str
    peer_id: int
    message_id: int  # 0 for a message_event (callback button)
    update: Update


class FakeUser:
    """One VK user writing to the community, in a private dialogue or in a group chat."""

    def __init__(self, state: VkState, peer_id: int, from_id: int) -> None:
        self.state = state
        self.peer_id = peer_id
        self.from_id = from_id
        self._read = 0  # how many of the peer's replies this user has consumed

    def __repr__(self) -> str:
        return f"FakeUser(peer_id={self.peer_id}, from_id={self.from_id})"

    # -- acting ------------------------------------------------------------------------------

    async def say(self, text: str, *, payload: str | None = None, cropped: bool = False) -> PostedEvent:
        """A text message (with a button's payload if given)."""
        return self._post(text, [], payload=payload, cropped=cropped)

    async def press(self, label: str) -> PostedEvent:
        """Press the button labelled `label` on the last keyboard the bot sent to this peer."""
        shown = self.state.last_keyboard(self.peer_id)
        if shown is None or shown.keyboard is None:
            raise AssertionError(f"no keyboard was sent to peer {self.peer_id}; cannot press {label!r}")
        if shown.message_id in self.state.used_keyboards:
            raise AssertionError(
                f"the last keyboard to peer {self.peer_id} was one_time and is hidden after a press; "
                f"cannot press {label!r}"
            )
        action = _find_action(shown.keyboard, label)
        if action is None:
            raise AssertionError(
                f"no button {label!r} on the last keyboard to peer {self.peer_id}; "
                f"buttons: {labels(shown.keyboard)!r} (message {shown.message_id}: {shown.text[:80]!r})"
            )
        if action["type"] == "open_link":
            raise AssertionError(f"{label!r} opens {action.get('link')!r}; the bot is told nothing")
        if shown.keyboard.get("one_time") is True:
            self.state.used_keyboards.add(shown.message_id)
        payload = payload_text(action["payload"]) if "payload" in action else None
        if action["type"] == "callback":
            return self._post_button_event(shown, payload)
        return self._post(label, [], payload=payload)

    async def send_photo(
        self, data: bytes, *, text: str = "", width: int = 1280, height: int = 960, cropped: bool = False
    ) -> PostedEvent:
        """A photo: VK's several sizes, the largest serving `data`, the smaller other bytes."""
        photo_id = self.state.next_media_id()
        sizes: list[dict[str, Any]] = []
        longest = max(width, height)
        for kind, limit in PHOTO_SCALE:
            if limit >= longest or kind == PHOTO_SCALE[-1][0]:
                url = self.state.host_file(data, "image/jpeg")
                sizes.append({"type": kind, "width": width, "height": height, "url": url})
                break
            scale = limit / longest
            thumb = f"emulated {kind} thumbnail of photo {photo_id}".encode()
            url = self.state.host_file(thumb, "image/jpeg")
            sizes.append({"type": kind, "width": round(width * scale), "height": round(height * scale), "url": url})
        photo = {
            "album_id": -3,  # photos sent in messages
            "date": int(self.state.clock()),
            "id": photo_id,
            "owner_id": self.from_id,
            "access_key": secrets.token_hex(9),
            "sizes": sizes,
            "text": "",
            "has_tags": False,
        }
        return self._post(text, [{"type": "photo", "photo": photo}], cropped=cropped)

    async def send_doc(self, name: str, data: bytes, *, text: str = "", cropped: bool = False) -> PostedEvent:
        """A document (any file sent as a file), served from this server."""
        ext = PurePosixPath(name).suffix.lstrip(".").lower()
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        doc = {
            "id": self.state.next_media_id(),
            "owner_id": self.from_id,
            "title": name,
            "size": len(data),
            "ext": ext,
            "date": int(self.state.clock()),
            "type": DOC_TYPES.get(ext, 8),
            "url": self.state.host_file(data, mime),
            "access_key": secrets.token_hex(9),
        }
        return self._post(text, [{"type": "doc", "doc": doc}], cropped=cropped)

    async def send_sticker(self, sticker_id: int = 9014) -> PostedEvent:
        url = self.state.host_file(b"emulated sticker image", "image/png")
        image = {"url": url, "width": 128, "height": 128}
        sticker = {
            "inner_type": "base_sticker_new",
            "product_id": 279,
            "sticker_id": sticker_id,
            "images": [image],
            "images_with_background": [image],
            "is_allowed": True,
        }
        return self._post("", [{"type": "sticker", "sticker": sticker}])

    async def send_voice(self, data: bytes = OGG_SAMPLE, *, duration: int = 3) -> PostedEvent:
        voice = {
            "id": self.state.next_media_id(),
            "owner_id": self.from_id,
            "duration": duration,
            "waveform": [(i * 7) % 32 for i in range(min(128, 10 * max(1, duration)))],
            "link_ogg": self.state.host_file(data, "audio/ogg"),
            "link_mp3": self.state.host_file(b"emulated mp3 of a voice message", "audio/mpeg"),
            "access_key": secrets.token_hex(9),
        }
        return self._post("", [{"type": "audio_message", "audio_message": voice}])

    # -- reading the bot's replies -----------------------------------------------------------

    async def wait_reply(self, timeout: float = 5.0) -> SentMessage:  # noqa: ASYNC109 - a test's spelling
        """The next message the bot sends to this peer that this user has not consumed yet."""
        got = await self.state.sent_at(self.peer_id, self._read, timeout)
        if got is None:
            seen = [m.text[:60] for m in self.state.sent_to(self.peer_id)]
            raise AssertionError(
                f"no reply to peer {self.peer_id} within {timeout} s; "
                f"{len(seen)} earlier message(s) already consumed: {seen!r}"
            )
        self._read += 1
        return got

    async def assert_no_reply(self, within: float = 0.2) -> None:
        """Fail if the bot sends this peer anything new within `within` seconds."""
        got = await self.state.sent_at(self.peer_id, self._read, within)
        if got is not None:
            raise AssertionError(f"unexpected reply to peer {self.peer_id}: {got.text[:200]!r}")

    @property
    def replies(self) -> list[SentMessage]:
        """Everything the bot sent to this peer, consumed or not."""
        return self.state.sent_to(self.peer_id)

    def last_keyboard(self) -> dict[str, Any] | None:
        shown = self.state.last_keyboard(self.peer_id)
        return None if shown is None else shown.keyboard

    def last_keyboard_labels(self) -> list[str]:
        return labels(self.last_keyboard())

    # -- building updates --------------------------------------------------------------------

    def _post(
        self, text: str, attachments: list[dict[str, Any]], *, payload: str | None = None, cropped: bool = False
    ) -> PostedEvent:
        state = self.state
        message_id, conversation_id, version = state.next_message_ids(self.peer_id)
        message: dict[str, Any] = {
            "date": int(state.clock()),
            "from_id": self.from_id,
            "id": message_id,
            "out": 0,
            "version": version,
            "attachments": attachments,
            "conversation_message_id": conversation_id,
            "fwd_messages": [],
            "important": False,
            "is_hidden": False,
            "peer_id": self.peer_id,
            "random_id": 0,
            "text": text,
        }
        if payload is not None:
            message["payload"] = payload
        state.incoming[message_id] = message
        delivered = message
        if cropped:  # the update carries a cut-down copy; messages.getById has the whole
            delivered = {**message, "attachments": [], "is_cropped": True}
        update = self._update("message_new", {"message": delivered, "client_info": CLIENT_INFO})
        state.publish(update)
        return PostedEvent(update["event_id"], self.peer_id, message_id, update)

    def _post_button_event(self, shown: SentMessage, payload: str | None) -> PostedEvent:
        event = {
            "user_id": self.from_id,
            "peer_id": self.peer_id,
            "event_id": secrets.token_hex(6),  # what sendMessageEventAnswer is called with
            "payload": json.loads(payload) if payload is not None else {},
            "conversation_message_id": shown.conversation_message_id,
        }
        update = self._update("message_event", event)
        self.state.publish(update)
        return PostedEvent(update["event_id"], self.peer_id, 0, update)

    def _update(self, kind: str, obj: dict[str, Any]) -> Update:
        return {
            "group_id": self.state.group_id,
            "type": kind,
            "event_id": secrets.token_hex(20),
            "v": API_VERSION,
            "object": obj,
        }


class FakeChat:
    """A group chat (conversation) the community is in: peer_id = 2000000000 + chat_id."""

    def __init__(self, state: VkState, chat_id: int) -> None:
        if chat_id < 1:
            raise ValueError("chat ids start at 1")
        self.state = state
        self.chat_id = chat_id
        self.peer_id = CHAT_PEER_BASE + chat_id
        self._users: dict[int, FakeUser] = {}

    def user(self, from_id: int) -> FakeUser:
        """A member of the chat (the same object for the same id, so its read position persists)."""
        if from_id < 1:
            raise ValueError("user ids are positive")
        if from_id not in self._users:
            self._users[from_id] = FakeUser(self.state, self.peer_id, from_id)
        return self._users[from_id]


def _find_action(keyboard: dict[str, Any], label: str) -> dict[str, Any] | None:
    for row in keyboard.get("buttons", []):
        for button in row:
            action = button["action"]
            if action.get("type") in LABELLED and action.get("label") == label:
                return dict(action)
    return None
