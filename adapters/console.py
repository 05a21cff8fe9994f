"""The terminal chat: the bot's messages and numbered buttons, typed input, files by path.

Works on a TTY and with stdin from a pipe (one input per line), so scripts can drive it.
Console commands start with '/'; everything else goes to the bot as the user's message.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TextIO

from engine.ports import Incoming, IncomingFile, Storage
from engine.replies import Button, Reply

Handler = Callable[[str, Incoming], Awaitable[list[Reply]]]
# A support agent's command on the SimpleOne the chat talks to (the in-process emulator's console).
AgentConsole = Callable[[str], str]
# Re-read the flows as SIGHUP does; what to print (the new version, or why the files were refused).
Reloader = Callable[[], Awaitable[str]]
log = logging.getLogger(__name__)

HELP = """console commands:
  1, 2, …          press the button with that number (in a list: the item with that number)
  a, b, …          in a list, press the other buttons (paging, Back…)
  n1, n2, …        press a button under a notice (an agent's message, a status change)
  /attach PATH…    send files (add text after ' -- ' to send it with them)
  /sticker, /voice send an attachment the bot does not take
  /agent COMMAND   act as a support agent on the in-process SimpleOne (/agent help)
  /reload          read flows/ again (as SIGHUP does); files with errors are refused
  /help            this list
  /quit            leave (so does end of input)"""

# Files larger than this are announced to the bot by name and size, never read into memory.
READ_LIMIT = 50 * 1024 * 1024


async def stdin_lines(stream: TextIO = sys.stdin) -> AsyncIterator[str]:
    """Lines of stdin without blocking the event loop (a thread reads; TTY and pipes alike)."""
    while True:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        yield line.rstrip("\r\n")


class ConsoleChat:
    def __init__(self, handle: Handler, peer: str, out: TextIO, *, echo: bool = False,
                 agent: AgentConsole | None = None, reload: Reloader | None = None) -> None:
        self.handle = handle
        self.agent = agent
        self.reload = reload
        self.peer = peer
        self.out = out
        self.echo = echo  # repeat the input: a piped transcript then reads as a dialogue
        self.keys: dict[str, Button] = {}  # what to type → the button it presses
        # Buttons of notices ("Ответить" under an agent's message): n1, n2, … stay valid while
        # the dialogue's own buttons change, as inline buttons in VK do.
        self.notice_keys: dict[str, Button] = {}

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, reply: Reply) -> None:
        self.print()
        for line in reply.text.splitlines() or [""]:
            self.print(f"bot: {line}" if line else "bot:")
        self.keys = self.keys_for(reply)
        shown = {id(b): key for key, b in self.keys.items()}
        for row in reply.buttons:
            self.print("     " + "   ".join(f"[{shown[id(b)]}] {b.label}" for b in row))

    @staticmethod
    def keys_for(reply: Reply) -> dict[str, Button]:
        """Buttons by number; in a list, items keep their own numbers (the ones the bot lists and
        understands when typed) and the other buttons get letters, so a number means one thing."""
        buttons = [b for row in reply.buttons for b in row]
        if not any(b.index is not None for b in buttons):
            return {str(n): b for n, b in enumerate(buttons, 1)}
        keys: dict[str, Button] = {}
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        for b in buttons:
            keys[str(b.index + 1) if b.index is not None else next(letters)] = b
        return keys

    def parse(self, line: str) -> Incoming | None:
        """The user's line as an event; None for a console command handled here."""
        text = line.strip()
        button = self.keys.get(text) or self.notice_keys.get(text)
        if button is not None:
            return Incoming(text=button.label, payload=button.payload)
        if text in ("/help", "/?"):
            self.print(HELP)
            return None
        if text in ("/sticker", "/voice"):
            return Incoming(unsupported=["sticker" if text == "/sticker" else "audio_message"])
        if text == "/agent" or text.startswith("/agent "):
            command = text[len("/agent"):].strip() or "help"
            if self.agent is None:
                self.print("(/agent works with the in-process SimpleOne emulator; with another instance, act "
                           "there, or in `supportbot simpleone-emulator`'s console)")
            else:
                for line in self.agent(command).splitlines() or [""]:
                    self.print(f"agent: {line}")
            return None
        if text.startswith("/attach"):
            return self.attach(text[len("/attach"):].strip())
        return Incoming(text=line)

    def attach(self, args: str) -> Incoming | None:
        paths_part, _, message = args.partition(" -- ")
        incoming = Incoming(text=message.strip())
        for name in paths_part.split():
            path = Path(name).expanduser()
            try:
                size = path.stat().st_size
                if not path.is_file():
                    raise IsADirectoryError(name)
                if size > READ_LIMIT:
                    incoming.oversized.append((path.name, size))
                    continue
                data = path.read_bytes()
            except OSError as exc:
                self.print(f"(cannot attach {name}: {exc.strerror or exc})")
                continue
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            incoming.files.append(IncomingFile(path.name, mime, data))
        if not (incoming.files or incoming.oversized or incoming.text):
            self.print("(nothing attached; usage: /attach PATH [PATH…] [-- text])")
            return None
        return incoming

    async def run(self, lines: AsyncIterator[str], *, greet: bool = True) -> None:
        if greet:
            # An empty event shows where the user is: the menu, or the step they left.
            await self.send(Incoming())
        async for line in lines:
            if self.echo:
                self.print(f"> {line}")
            if line.strip() in ("/quit", "/exit"):
                break
            if not line.strip():
                continue
            if line.strip() == "/reload":
                await self.reload_flows()
                continue
            incoming = self.parse(line)
            if incoming is not None:
                await self.send(incoming)

    async def reload_flows(self) -> None:
        if self.reload is None:
            self.print("(/reload is not available here)")
            return
        try:
            said = await self.reload()
        except Exception as exc:  # a bug in reloading must not end the chat
            log.exception("reloading the flows failed")
            said = f"reloading the flows failed: {exc}"
        for line in said.splitlines() or [""]:
            self.print(f"({line})")

    async def show_notices(self, storage: Storage, *, every: float = 0.5) -> None:
        """Print what the bot sends unasked to this peer (a late ticket number, a status change)
        as it comes, until cancelled."""
        while True:
            try:
                notices = [n for n in await storage.notices_unsent(100) if n.peer == self.peer]
                for notice in notices:
                    self.print()
                    for line in notice.text.splitlines() or [""]:
                        self.print(f"bot (notice): {line}")
                    for row in notice.buttons:
                        shown = []
                        for button in row:
                            key = f"n{len(self.notice_keys) + 1}"
                            self.notice_keys[key] = button
                            shown.append(f"[{key}] {button.label}")
                        self.print("     " + "   ".join(shown))
                if notices:
                    await storage.notices_sent([n.id for n in notices])
            except Exception:
                log.exception("reading notices failed")
            await asyncio.sleep(every)

    async def send(self, incoming: Incoming) -> None:
        try:
            replies = await self.handle(self.peer, incoming)
        except Exception as exc:  # the chat goes on; the log has the details
            log.exception("the bot failed on a console message")
            self.print(f"(the bot failed: {exc.__class__.__name__}; see the log)")
            return
        for reply in replies:
            self.show(reply)
