"""`supportbot simpleone-check` against the SimpleOne emulator over HTTP: an instance that works,
one whose account lacks rights to a table, wrong credentials, an address nobody has."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

from emulators.simpleone.server import RunningEmulator
from supportbot.config import load_config
from supportbot.simpleone_check import simpleone_check_command

ROOT = Path(__file__).resolve().parents[2]


def env_for(simpleone: RunningEmulator, password: str = "bot-password") -> dict[str, str]:
    return {"SIMPLEONE_URL": simpleone.url, "SIMPLEONE_USERNAME": "bot", "SIMPLEONE_PASSWORD": password,
            "FLOWS_DIR": str(ROOT / "flows")}


async def check(simpleone: RunningEmulator, email: str | None, **env: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await simpleone_check_command(load_config({**env_for(simpleone), **env}, env_file=None), email, out)
    return code, out.getvalue()


async def test_a_working_instance_passes_every_check(simpleone: RunningEmulator) -> None:
    simpleone.state.add_user("petrov-pp@ranepa.ru", "Пётр", "Петров", table="employee")
    code, out = await check(simpleone, "Petrov-PP@RANEPA.ru")
    assert code == 0, out
    for line in ("ok    login", "ok    read itsm_incident", "ok    read employee", "ok    read user",
                 "ok    read sys_attachment", "ok    read sys_activity_feed_item", "ok    read sys_choice",
                 "ok    caller Petrov-PP@RANEPA.ru: Пётр Петров", "ok    state labels itsm_incident"):
        assert line in out, out
    assert "0 failed" in out


async def test_a_table_the_account_may_not_read_is_named_with_what_to_ask_for(simpleone: RunningEmulator) -> None:
    simpleone.faults.fail_next(1000, status=403, path_prefix="/rest/v1/table/sys_choice")
    code, out = await check(simpleone, None)
    assert code == 1
    assert "FAIL  read sys_choice: state labels: the account may not read it" in out and "read rights" in out
    assert "FAIL  state labels itsm_incident" in out  # what users then see instead is said
    assert "ok    read itsm_incident" in out  # the rest is still checked


async def test_wrong_credentials_stop_at_the_login(simpleone: RunningEmulator) -> None:
    code, out = await check(simpleone, None, SIMPLEONE_PASSWORD="wrong")
    assert code == 1
    assert "FAIL  login: the credentials were refused" in out
    assert "read itsm_incident" not in out


async def test_an_address_nobody_has_is_a_failure(simpleone: RunningEmulator) -> None:
    simpleone.state.auto_users_domains = ()
    code, out = await check(simpleone, "nobody@ranepa.ru")
    assert code == 1
    assert "FAIL  caller nobody@ranepa.ru: not found (active=1) in employee, user" in out


async def test_the_command_line(simpleone: RunningEmulator, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env_for(simpleone)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supportbot.cli", "simpleone-check", "--email", "a@ranepa.ru", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out.decode(), err.decode())
    assert "simpleone-check:" in out.decode() and "0 failed" in out.decode()


async def test_a_wrong_static_token_fails_the_login_line(simpleone: RunningEmulator) -> None:
    code, out = await check(simpleone, None, SIMPLEONE_TOKEN="x" * 32, SIMPLEONE_AUTH="token",
                            SIMPLEONE_USERNAME="", SIMPLEONE_PASSWORD="")
    assert code == 1
    assert "FAIL  login: the credentials were refused" in out
