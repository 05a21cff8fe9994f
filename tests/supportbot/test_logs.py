"""The log at INFO through a whole conversation (a sign-in with a code, a ticket with its text):
no address, code or message text in any line, in either format; JSON lines parse and carry the
peer only as a hash (supportbot/logs.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ports import Incoming
from supportbot.app import build_app
from supportbot.config import load_config
from supportbot.logs import THIRD_PARTY, pseudonym, setup_logging

ROOT = Path(__file__).resolve().parents[2]
PEER = "vk:424242"
EMAIL = "Agent.Smith@RANEPA.ru"
PROBLEM = "Не приходят письма на корпоративную почту со вчерашнего дня"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    before = root.level, list(root.handlers), {n: logging.getLogger(n).level for n in THIRD_PARTY}
    stream = io.StringIO()
    yield stream
    root.setLevel(before[0])
    for handler in list(root.handlers):
        if handler not in before[1]:
            root.removeHandler(handler)
    for name, level in before[2].items():
        logging.getLogger(name).setLevel(level)


async def _conversation(tmp_path: Path) -> tuple[str, str]:
    """Sign in (a wrong code, then the right one) and send a ticket; the code and the replies."""
    config = load_config({"SUPPORTBOT_DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
                          "SPOOL_DIR": str(tmp_path / "spool"), "FLOWS_DIR": str(ROOT / "flows")}, env_file=None)
    terminal = io.StringIO()
    app = await build_app(config, terminal=terminal, allow_emulator=True)
    said: list[str] = []
    try:
        async def send(text: str, n: int) -> None:
            replies = await app.engine.handle(PEER, Incoming(text=text, event_id=f"ev-{n}"), keep_replies=True)
            said.extend(r.text for r in replies)

        await send(PROBLEM, 1)
        await send(EMAIL, 2)
        code = re.findall(r"\b(\d{6})\b", terminal.getvalue())[-1]
        await send("000000" if code != "000000" else "111111", 3)
        await send(code, 4)
        await send("1", 5)
        await send("Без файлов", 6)
        await send("Отправить", 7)
        for _ in range(100):  # the number comes with the answer, or as a notice a moment later
            if any("INC0000001" in s for s in said) or any("INC0000001" in n.text
                                                          for n in await app.storage.notices_unsent()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no ticket was made:\n" + "\n".join(said))
    finally:
        await app.close()
    return code, "\n".join(said)


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_address_code_or_text_in_the_log_at_info(tmp_path: Path, log_stream: io.StringIO,
                                                          log_format: str) -> None:
    setup_logging("INFO", log_format, log_stream)
    code, said = await _conversation(tmp_path)
    assert "вы вошли как" in said.lower()
    log = log_stream.getvalue()
    assert "queued as" in log, log  # the conversation was logged at all
    for secret in (EMAIL, EMAIL.lower(), "agent.smith", code, PROBLEM, PROBLEM[:20]):
        assert secret not in log, f"{secret!r} in the log:\n{log}"
    if log_format == "json":
        lines = [json.loads(line) for line in log.splitlines()]
        assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
        about = [line for line in lines if "peer" in line]
        assert about and all(line["peer"] == pseudonym(PEER) for line in about)
        assert any(line.get("event") == "ev-7" and line.get("flow") for line in about)
        assert PEER not in log
    assert not any(name in log for name in ("transitions.core", "aiohttp.access"))


def test_third_party_loggers_speak_at_debug_only(log_stream: io.StringIO) -> None:
    setup_logging("INFO", "text", log_stream)
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("transitions").getEffectiveLevel() == logging.WARNING
    setup_logging("DEBUG", "json", log_stream)
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() == logging.DEBUG
    assert len([h for h in logging.getLogger().handlers if getattr(h, "supportbot", False)]) == 1


def test_an_address_in_an_exception_is_hashed(log_stream: io.StringIO) -> None:
    setup_logging("INFO", "json", log_stream)
    try:
        raise RuntimeError("550 5.1.1 <someone@ranepa.ru>: Recipient address rejected")
    except RuntimeError:
        logging.getLogger("engine.actions.auth").exception("sign-in mail refused: %s", "someone@ranepa.ru")
    line = json.loads(log_stream.getvalue().splitlines()[-1])
    assert "someone@" not in json.dumps(line)
    assert pseudonym("someone@ranepa.ru") in line["message"] and "Recipient address rejected" in line["exc"]
