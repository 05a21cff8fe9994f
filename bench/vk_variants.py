"""supportbot with part of its VK adapter done by vkbottle: variants for bench/vk_path.py, to
measure what using vkbottle there would cost.

  --keyboard  keyboards built by vkbottle's Keyboard / Text / KeyboardButtonColor; the limits
              stay supportbot's (adapters/vk/keyboard.py: rows, buttons, label and payload lengths)
  --updates   message_new updates parsed by vkbottle's typed model (vkbottle_types' MessageNew)
  --import    nothing changed: vkbottle only imported (what the import alone costs; a process
              that loads its models has a larger heap for the garbage collector to walk)

Run by the benchmark as its own process, with the environment of `supportbot run`
(bench/vk_path.py --kinds supportbot,supportbot-vkbottle-keyboard,supportbot-vkbottle-updates,
supportbot-vkbottle-import).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from vkbottle import Keyboard, KeyboardButtonColor, Text
from vkbottle_types.events.bot_events import MessageNew

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.vk import keyboard, longpoll, sender
from adapters.vk.updates import InMessage
from engine.replies import Reply

log = logging.getLogger(__name__)
COLORS = {color.value: color for color in KeyboardButtonColor}


def render(reply: Reply) -> keyboard.VkMessage:
    """adapters.vk.keyboard.render, the JSON built by vkbottle."""
    max_rows, max_buttons = keyboard.LIMITS[reply.inline]
    rows = [[b for b in row if len(b.payload) <= keyboard.MAX_PAYLOAD] for row in reply.buttons]
    rows = keyboard._fit([row for row in rows if row], max_rows, max_buttons)
    text = reply.text
    shortened = [b.label for row in rows for b in row if keyboard.shorten(b.label) != b.label and b.label not in text]
    if shortened:
        text = text + "\n\n" + "\n".join(shortened)
    built = Keyboard(one_time=False, inline=reply.inline)
    for row in rows:
        built.row()
        for b in row:
            built.add(Text(keyboard.shorten(b.label), payload=b.payload), COLORS.get(b.color or ""))
    return keyboard.VkMessage(text, built.get_json())


def parse_update(update: Any) -> InMessage | None:
    """adapters.vk.updates.parse_update through vkbottle's typed model."""
    if not isinstance(update, dict) or update.get("type") != "message_new":
        return None
    try:
        event = MessageNew.model_validate(update)
    except ValidationError:
        log.warning("malformed message_new update skipped")
        return None
    message = event.object.message
    if message is None or not event.event_id or message.out or message.from_id < 0:
        return None
    raw = update["object"]["message"].get("attachments")
    return InMessage(event_id=event.event_id, peer_id=message.peer_id, from_id=message.from_id,
                     message_id=message.id, text=message.text or "", payload=message.payload,
                     attachments=[a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else [],
                     is_cropped=bool(message.is_cropped))


if __name__ == "__main__":
    if "--keyboard" in sys.argv:
        sender.render = render
    if "--updates" in sys.argv:
        longpoll.parse_update = parse_update
    from supportbot.cli import main

    sys.exit(main(["run"]))
