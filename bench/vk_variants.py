"""supportbot with part of its VK adapter done by vkbottle: variants for bench/vk_path.py, to
measure what using vkbottle there would cost.

  --keyboard  keyboards built by vkbottle's Keyboard / Text / KeyboardButtonColor; the limits
              stay supportbot's (adapters/vk/keyboard.py: rows, buttons, label and payload lengths)
  --updates   message_new updates parsed by vkbottle's typed model (vkbottle_types' MessageNew)
  --import    nothing changed: vkbottle only imported (what the import alone costs; a process
              that loads its models has a larger heap for the garbage collector to walk)

Run by the benchmark as its own process, with the environment of `supportbot run`
(bench/vk_path.py --kinds supportbot,supportbot-vkbottle-keyboard,supportbot-vkbottle-updates,
supportbot-vkbottle-import). Alone, `--micro` times the two pieces against supportbot's own
(interleaved) and prints what importing vkbottle weighs: .venv/bin/python bench/vk_variants.py --micro
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import timeit
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


# --------------------------------------------------------------------------- alone: --micro


def _footprint(with_vkbottle: bool) -> str:
    """RSS, GC-tracked objects and import time of the bot's modules in a fresh interpreter (Linux)."""
    code = (
        "import gc, time; t = time.perf_counter()\n"
        "import supportbot.app, supportbot.cli, adapters.vk.longpoll\n"
        + ("import vkbottle; from vkbottle_types.events.bot_events import MessageNew\n" if with_vkbottle else "")
        + "t = time.perf_counter() - t\n"
        # VmRSS of this process (ru_maxrss would carry the parent's peak over the fork).
        "rss = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024\n"
        "print(f'{rss:.0f} MB RSS, {len(gc.get_objects())} GC-tracked objects, imports {t:.2f} s')"
    )
    root = str(Path(__file__).resolve().parent.parent)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": root}).stdout.strip()


def micro(repeats: int = 4, number: int = 20_000) -> None:
    """The two pieces alone, interleaved (A B B A ...), and what importing vkbottle weighs."""
    from adapters.vk.updates import parse_update as plain_parse
    from engine.replies import Button

    names = ["1. Учётные записи и доступ", "2. Сопровождение сервисов сотрудника", "3. Оборудование",
             "4. Печать", "5. Сеть и Wi-Fi", "6. Программное обеспечение (ПО)"]
    reply = Reply("Выберите категорию:", [[Button(n, "pick", i)] for i, n in enumerate(names)]
                  + [[Button("Далее ▶", "next")], [Button("Назад", "back"), Button("Главное меню", "menu")]])
    message = {"date": 1700000000, "from_id": 155, "id": 12, "out": 0, "peer_id": 155, "version": 1,
               "text": "Не запускается Microsoft Word", "conversation_message_id": 5, "fwd_messages": [],
               "important": False, "random_id": 0, "attachments": [], "is_hidden": False,
               "payload": '{"e":"pick","i":1}'}
    update = {"group_id": 1, "type": "message_new", "event_id": "e" * 40, "v": "5.199",
              "object": {"message": message, "client_info": {"button_actions": ["text"], "keyboard": True,
                                                              "inline_keyboard": True, "lang_id": 0}}}
    assert render(reply).keyboard and plain_parse(update) == parse_update(update)
    pairs = {"keyboard": (lambda: keyboard.render(reply), lambda: render(reply)),
             "update": (lambda: plain_parse(update), lambda: parse_update(update))}
    for what, (ours, theirs) in pairs.items():
        times: dict[str, list[float]] = {"supportbot": [], "vkbottle": []}
        for r in range(repeats):
            for name in ("supportbot", "vkbottle") if r % 2 == 0 else ("vkbottle", "supportbot"):
                run = ours if name == "supportbot" else theirs
                times[name].append(timeit.timeit(run, number=number) / number)
        a, b = statistics.median(times["supportbot"]), statistics.median(times["vkbottle"])
        print(f"{what:<9} supportbot {a * 1e6:6.1f} µs, vkbottle {b * 1e6:6.1f} µs (+{(b - a) * 1e6:.1f} µs, "
              f"{b / a:.2f}x), median of {repeats}")
    print(f"the bot's modules:           {_footprint(False)}")
    print(f"the same and vkbottle's:     {_footprint(True)}")


if __name__ == "__main__":
    if "--micro" in sys.argv:
        micro()
        sys.exit(0)
    if "--keyboard" in sys.argv:
        sender.render = render
    if "--updates" in sys.argv:
        longpoll.parse_update = parse_update
    from supportbot.cli import main

    sys.exit(main(["run"]))
