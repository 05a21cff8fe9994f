"""The emulator's agent console: a human acts as a support agent by typing commands."""

from __future__ import annotations

import io
import json

from emulators.simpleone.console import CONSOLE_HELP, agent_console, run_command
from emulators.simpleone.state import EmulatorState


def seeded() -> tuple[EmulatorState, str]:
    state = EmulatorState()
    sys_id = state.create("itsm_incident", {"subject": "Не печатает принтер"}, author="bot")
    return state, sys_id


def test_commands_act_as_an_agent_and_land_in_the_journal() -> None:
    state, sys_id = seeded()
    answer = run_command(state, "comment INC0000001 Проверьте кабель, пожалуйста")
    assert answer == f"ok: comment on INC0000001 ({sys_id})"
    assert run_command(state, "note INC0000001 позвонить завхозу").startswith("ok: note")
    assert run_command(state, f"state {sys_id} 2").startswith("ok: state")
    feed = state.feed("itsm_incident", sys_id)
    assert [(f["type_name"], f["sys_created_by"]) for f in feed] == [
        ("additional_comments.itsm_incident", "agent"), ("work_notes.itsm_incident", "agent"), ("history", "agent")]
    assert json.loads(feed[0]["content"]) == {"message": "Проверьте кабель, пожалуйста"}
    assert state.get("itsm_incident", sys_id)["state"] == "2"
    assert run_command(state, "list") == "INC0000001  state=2  Не печатает принтер"
    journal = run_command(state, "journal INC0000001").splitlines()
    assert len(journal) == 3 and "additional_comments.itsm_incident  by agent" in journal[0]


def test_mistakes_are_answered_not_raised() -> None:
    state, _sys_id = seeded()
    assert run_command(state, "comment INC0000009 текст") == "error: No ticket 'INC0000009'"
    assert run_command(state, "comment INC0000001").startswith("not understood")
    assert run_command(state, "close INC0000001 now").startswith("not understood")
    assert run_command(state, "help") == CONSOLE_HELP
    assert run_command(state, "   ") == ""
    assert run_command(EmulatorState(), "list") == "no tickets yet"


async def test_the_console_reads_commands_until_the_stream_ends() -> None:
    state, sys_id = seeded()
    out = io.StringIO()
    await agent_console(state, io.StringIO("comment INC0000001 Готово\n\nlist\n"), out)
    assert out.getvalue().splitlines() == [
        "agent console: type 'help' for commands", f"ok: comment on INC0000001 ({sys_id})",
        "INC0000001  state=-2  Не печатает принтер"]
