"""The emulator's agent console: a human trying the bot plays the support agent on stdin.

Each line is one command; what an agent does lands where a real instance keeps it (a journal
entry in sys_activity_feed_item, a history entry for a state change), through the same
EmulatorState.act_as_agent as the control API's POST /_emulator/agent.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TextIO

from emulators.simpleone.state import NUMBER_PREFIXES, ApiError, EmulatorState

__all__ = ["CONSOLE_HELP", "agent_console", "run_command"]

CONSOLE_HELP = """\
agent console (a ticket is its number, e.g. INC0000001, or its sys_id):
  list                   the tickets: number, state, subject
  comment TICKET TEXT    a public comment from an agent (the caller may read it)
  note TICKET TEXT       a work note (internal: never for the caller)
  state TICKET CODE      a new state code (e.g. 2 in progress, 3 information needed, 7 completed)
  journal TICKET         the ticket's journal: comments, work notes, state changes
  help                   this text"""


def _tickets(state: EmulatorState) -> list[str]:
    rows = [r for table in NUMBER_PREFIXES for r in state.tables.get(table, {}).values()]
    rows.sort(key=lambda r: (r.get("sys_created_at", ""), r["sys_id"]))
    return [f"{r.get('number', r['sys_id'])}  state={r.get('state', '')}  {r.get('subject', '')}" for r in rows]


def _journal(state: EmulatorState, ticket: str) -> list[str]:
    table, sys_id = state.find_ticket(ticket)
    return [f"{item['sys_created_at']}  {item['type_name']}  by {item.get('sys_created_by', '')}: {item['content']}"
            for item in state.feed(table, sys_id)]


def run_command(state: EmulatorState, line: str) -> str:
    """Do one console command; the answer to print (an error is an answer too)."""
    words = line.strip().split(maxsplit=2)
    if not words:
        return ""
    command = words[0].lower()
    try:
        if command == "help":
            return CONSOLE_HELP
        if command == "list":
            return "\n".join(_tickets(state)) or "no tickets yet"
        if command == "journal" and len(words) == 2:
            return "\n".join(_journal(state, words[1])) or "the journal is empty"
        if command in ("comment", "note", "state") and len(words) == 3:
            _table, sys_id = state.act_as_agent(command, words[1], words[2])
            return f"ok: {command} on {words[1]} ({sys_id})"
    except ApiError as exc:
        return f"error: {exc.message}"
    return f"not understood: {line.strip()!r}; type 'help'"


def _read_lines(stream: TextIO, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str]) -> None:
    while True:
        line = stream.readline()
        try:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        except RuntimeError:  # the loop is closed: the emulator has stopped
            return
        if not line:
            return


async def agent_console(state: EmulatorState, stream: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    """Read commands until the stream ends. A daemon thread reads, so the API keeps being
    served and Ctrl-C is not held up by a read that waits for a line."""
    out.write("agent console: type 'help' for commands\n")
    out.flush()
    lines: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=_read_lines, args=(stream, asyncio.get_running_loop(), lines), daemon=True,
                     name="agent-console").start()
    while line := await lines.get():
        answer = run_command(state, line)
        if answer:
            out.write(answer + "\n")
            out.flush()
