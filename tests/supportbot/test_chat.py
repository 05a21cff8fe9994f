"""`supportbot chat` end to end: a real process, stdin from a pipe, the code read from the
letter the dev mail sink prints — the way a script drives the bot."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPPORTBOT = [sys.executable, "-m", "supportbot.cli"]


class Chat:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.transcript: list[str] = []

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, pattern: str, wait: float = 20) -> re.Match[str]:
        assert self.proc.stdout is not None
        regex = re.compile(pattern)

        async def read() -> re.Match[str]:
            while True:
                raw = await self.proc.stdout.readline()  # type: ignore[union-attr]
                if not raw:
                    raise AssertionError(f"chat ended before {pattern!r}:\n" + "\n".join(self.transcript[-40:]))
                line = raw.decode().rstrip("\n")
                self.transcript.append(line)
                found = regex.search(line)
                if found:
                    return found

        return await asyncio.wait_for(read(), wait)

    async def finish(self) -> None:
        """End of input: the chat must leave cleanly."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert await asyncio.wait_for(self.proc.wait(), 20) == 0
        assert not any("Traceback" in line for line in self.transcript)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPLEONE_", "SMTP_", "SUPPORTBOT_"))}
    env.update(SPOOL_DIR=str(tmp_path / "spool"), PYTHONPATH=str(ROOT), FLOWS_DIR=str(ROOT / "flows"))
    return env


async def _start(tmp_path: Path, *extra: str) -> Chat:
    proc = await asyncio.create_subprocess_exec(
        *SUPPORTBOT, "chat", "--peer", "student", *extra, cwd=tmp_path, env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    return Chat(proc)


async def test_a_piped_session_signs_in_and_creates_a_ticket(tmp_path: Path) -> None:
    screenshot = tmp_path / "screen.png"
    screenshot.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2048)
    chat = await _start(tmp_path)
    await chat.expect(r"\[1\] Создать заявку")
    await chat.send("1")
    await chat.expect(r"корпоративной почте")
    await chat.send("Student@RANEPA.ru")
    code = (await chat.expect(r"входа в бот IT-поддержки РАНХиГС во ВКонтакте: (\d{6})")).group(1)
    await chat.send(code)
    await chat.expect(r"вы вошли как student@ranepa.ru")
    await chat.send("2")
    await chat.expect(r"Личный кабинет сотрудника")
    await chat.send("Программное обеспечение (ПО)")
    await chat.expect(r"Опишите проблему")
    await chat.send("Не устанавливается 1С на новый ноутбук, нужна помощь администратора")
    await chat.expect(r"Прикрепите скриншоты")
    await chat.send(f"/attach {screenshot}")
    await chat.expect(r"Файл «screen.png» получен")
    await chat.send("готово")
    await chat.expect(r"Файлы: screen.png")
    await chat.send("Отправить")
    await chat.expect(r"Заявка INC0000001 создана")
    await chat.finish()
    assert not list((tmp_path / "spool").rglob("*.png")), "uploaded files leave the spool"


async def test_one_terminal_plays_the_user_and_the_agent(tmp_path: Path) -> None:
    """/agent acts on the in-process SimpleOne; the agent's comment comes back as a notice with
    its buttons, and «Ответить» (typed as its key) takes the answer to the ticket."""
    chat = await _start(tmp_path)
    await chat.expect(r"\[1\] Создать заявку")
    await chat.send("Не приходят письма на корпоративную почту со вчерашнего дня")
    await chat.send("agent@ranepa.ru")
    code = (await chat.expect(r"входа в бот IT-поддержки РАНХиГС во ВКонтакте: (\d{6})")).group(1)
    await chat.send(code)
    await chat.expect(r"Выберите услугу")
    await chat.send("1")
    await chat.expect(r"Без файлов")
    await chat.send("Без файлов")
    await chat.expect(r"Проверьте заявку")
    await chat.send("Отправить")
    await chat.expect(r"Заявка INC0000001 создана")
    await chat.send("/agent comment INC0000001 С какого адреса не приходят письма?")
    await chat.expect(r"agent: ok: comment on INC0000001")
    await chat.expect(r"bot \(notice\): С какого адреса не приходят письма\?")
    key = (await chat.expect(r"\[(n\d+)\] Ответить")).group(1)
    await chat.send(key)
    await chat.expect(r"Ваш ответ по заявке INC0000001")
    await chat.send("С адреса rector@ranepa.ru")
    await chat.send("Отправить")
    await chat.expect(r"заявка INC0000001 дополнена")
    await chat.send("/agent journal INC0000001")
    await chat.expect(r"by bot: .*С адреса rector@ranepa.ru")
    await chat.finish()


async def test_the_dialogue_survives_a_restart_of_the_chat(tmp_path: Path) -> None:
    chat = await _start(tmp_path)
    await chat.expect(r"\[1\] Создать заявку")
    await chat.send("Помощь")
    await chat.expect(r"Я принимаю заявки")
    await chat.finish()
    again = await _start(tmp_path)
    # The same SQLite file: the user is shown the step they left.
    await again.expect(r"Я принимаю заявки")
    await again.finish()


async def test_a_bad_configuration_stops_with_a_clear_message(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["SMTP_HOST"] = "mail.example"
    env["SMTP_PORT"] = "twenty-five"
    proc = await asyncio.create_subprocess_exec(
        *SUPPORTBOT, "chat", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert "SMTP_PORT must be a whole number" in err.decode()
    assert "Traceback" not in err.decode()


async def _chat_on_a_copy(tmp_path: Path, *extra: str) -> tuple[Chat, Path]:
    """A chat on a copy of the flows (to edit while it runs), at its menu; the copy's main.yaml."""
    import shutil

    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    env = _env(tmp_path)
    env["FLOWS_DIR"] = str(flows)
    proc = await asyncio.create_subprocess_exec(
        *SUPPORTBOT, "chat", *extra, cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    chat = Chat(proc)
    await chat.expect(r"Главное меню IT-поддержки")
    return chat, flows / "main.yaml"


def _rename_menu(menu: Path) -> None:
    menu.write_text(menu.read_text(encoding="utf-8").replace("Главное меню IT-поддержки РАНХиГС.",
                                                             "Меню поддержки, версия два."), encoding="utf-8")


def _break_menu(menu: Path) -> None:
    menu.write_text(menu.read_text(encoding="utf-8").replace("    on:\n", "    on:\n      nowhere: auth.nowhere\n", 1),
                    encoding="utf-8")


async def test_sighup_reloads_the_flows_and_refuses_a_broken_set(tmp_path: Path) -> None:
    import signal

    chat, menu = await _chat_on_a_copy(tmp_path, "--verbose")
    _rename_menu(menu)
    chat.proc.send_signal(signal.SIGHUP)
    await chat.expect(r"flow set reloaded")
    await chat.send("меню")
    await chat.expect(r"Меню поддержки, версия два")
    _break_menu(menu)
    chat.proc.send_signal(signal.SIGHUP)
    await chat.expect(r"flow reload refused")
    await chat.send("меню")
    await chat.expect(r"Меню поддержки, версия два")
    await chat.finish()


async def test_reload_typed_in_the_chat_reads_the_flows_again_or_refuses_a_broken_set(tmp_path: Path) -> None:
    chat, menu = await _chat_on_a_copy(tmp_path)
    _rename_menu(menu)
    await chat.send("/reload")
    await chat.expect(r"\(flows reloaded: version [0-9a-f]+")
    await chat.send("меню")
    await chat.expect(r"Меню поддержки, версия два")
    _break_menu(menu)
    await chat.send("/reload")
    await chat.expect(r"\(flows refused: 1 error\(s\); the previous flows keep running\)")
    await chat.expect(r"main\.yaml:\d+:\d+: F010 unknown state 'nowhere'")
    await chat.send("меню")
    await chat.expect(r"Меню поддержки, версия два")
    await chat.finish()


async def test_the_simpleone_emulator_command_serves_the_api(tmp_path: Path) -> None:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *SUPPORTBOT, "simpleone-emulator", "--port", str(port), cwd=tmp_path, env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                try:
                    login = await client.post("/rest/v1/auth/login",
                                              data={"username": "bot", "password": "bot-password"})
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            token = login.json()["data"]["auth_key"]
            found = await client.get("/rest/v1/table/user", params={"sysparm_query": "email=new@ranepa.ru"},
                                     headers={"Authorization": f"Bearer {token}"})
            assert found.json()["status"] == "OK" and len(found.json()["data"]) == 1
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_the_simpleone_emulator_command_takes_agent_commands_on_stdin(tmp_path: Path) -> None:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *SUPPORTBOT, "simpleone-emulator", "--port", str(port), cwd=tmp_path, env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=("bot", "bot-password")) as client:
            for _ in range(100):
                try:
                    created = await client.post("/rest/v1/table/itsm_incident", json={"subject": "Принтер"})
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            sys_id = created.json()["data"][0]["sys_id"]
            proc.stdin.write("comment INC0000001 Проверьте кабель\n".encode())
            await proc.stdin.drain()
            answer = ""
            while not answer.startswith("ok:"):
                answer = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
            feed = await client.get("/rest/v1/table/sys_activity_feed_item",
                                    params={"sysparm_query": f"record_id={sys_id}", "sysparm_fields": "content"})
            assert feed.json()["data"] == [{"content": '{"message": "Проверьте кабель"}'}]
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
