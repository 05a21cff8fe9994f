"""`supportbot forget`: one person's data deleted from the database and the spool, refused while
a ticket of theirs is on its way (the storage's side is tests/contract/privacy_contract.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.spool import DiskSpool
from adapters.storage.sqlite import open_sqlite
from engine.ports import Binding, Session, SignInWrites, StepCommit
from supportbot.cli import main
from tests.contract.storage_values import make_item


@pytest.fixture
def bot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path


def seed(root: Path) -> str:
    """vk:1 bound to anna@ranepa.ru, a draft with a file, and a ticket waiting for SimpleOne."""

    async def go() -> str:
        spool = DiskSpool(root / "spool")
        kept = await spool.put("vk:1", "скан.pdf", "application/pdf", b"%PDF")
        storage = await open_sqlite(root / "bot.db")
        binding = Binding("vk:1", "anna@ranepa.ru", "c-1", "Анна", 1000.0)
        draft = Session("vk:1", "create_ticket.describe", {"files": [kept.as_slot()]}, "v", 1000.0)
        payload = {"table": "itsm_incident", "fields": {}, "files": [kept.as_slot()]}
        assert await storage.commit_step(StepCommit(draft, 0, event_id="ev-1", outbox=[make_item("ob-1", "vk:1",
                                                                                             payload=payload)],
                                                    sign_in=SignInWrites("vk:1", True, binding)))
        await storage.close()
        return kept.id

    return asyncio.run(go())


def test_forget_refuses_while_a_ticket_is_on_its_way_then_forces(bot_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    file_id = seed(bot_dir)
    assert main(["forget", "--peer", "vk:1"]) == 1
    out = capsys.readouterr().out
    assert "1 unfinished outbox item(s)" in out and "ob-1" in out and "Nothing was deleted" in out, out
    assert DiskSpool(bot_dir / "spool").path(file_id).exists()

    assert main(["forget", "--email", "Anna@RANEPA.ru", "--force"]) == 0
    out = capsys.readouterr().out
    assert out == ("anna@ranepa.ru (peers: vk:1): removed sessions 1, bindings 1, codes 0, sign-in log 1, notices 0,"
                   " watched tickets 0, inbox events 1, outbox items 1, files 1\n"), out
    assert not DiskSpool(bot_dir / "spool").path(file_id).exists()

    assert main(["forget", "--peer", "vk:1"]) == 0
    assert capsys.readouterr().out == "vk:1: nothing is kept about them\n"


@pytest.mark.parametrize(("args", "problem"), [
    (["--peer", "123"], "--peer must be a channel and an id such as vk:123456"),
    (["--email", "not-an-address"], "--email must be an address"),
])
def test_a_badly_named_person_is_said_so(bot_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                         problem: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["forget", *args])
    assert exited.value.code == 2 and problem in capsys.readouterr().err


def test_one_person_at_a_time(bot_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["forget", "--peer", "vk:1", "--email", "a@ranepa.ru"])
    with pytest.raises(SystemExit):
        main(["forget"])
