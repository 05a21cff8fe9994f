"""`supportbot outbox list|show|retry|drop` on a real database."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from adapters.spool import DiskSpool
from adapters.storage.sqlite import open_sqlite
from engine.ports import OUTBOX_FAILED, OutboxItem, OutboxOutcome, Session, StepCommit
from supportbot.cli import main

NOW = 1_900_000_000.0


async def seed(db: Path, spool_dir: Path) -> str:
    """One failed ticket with a file, one pending comment, one done ticket; returns the file id."""
    storage = await open_sqlite(db)
    spool = DiskSpool(spool_dir)
    stored = await spool.put("vk:7", "скрин.png", "image/png", b"\x89PNG" * 10)
    failed = OutboxItem("aaaa000000000001", "vk:7", "ticket.create",
                        {"table": "itsm_incident", "fields": {"description": "Не печатает принтер"},
                         "files": [stored.as_slot()]}, NOW - 7200, next_at=NOW - 7200)
    pending = OutboxItem("aaaa000000000002", "vk:8", "ticket.comment",
                         {"table": "itsm_incident", "sys_id": "1", "number": "INC0000042", "text": "ещё"},
                         NOW - 60, next_at=NOW + 3600, attempts=3, last_error="HTTP 503")
    done = OutboxItem("aaaa000000000003", "vk:9", "ticket.create", {"table": "itsm_request"}, NOW - 30,
                      next_at=NOW - 30)
    session = Session("vk:7", "main.menu", {}, "v", NOW)
    assert await storage.commit_step(StepCommit(session, 0, outbox=[failed, pending, done]))
    failed.state, failed.result, failed.last_error = OUTBOX_FAILED, {"event": "rejected"}, "HTTP 400: bad caller"
    failed.updated_at = NOW - 3600
    await storage.outbox_finish(OutboxOutcome(failed))
    done.state, done.result, done.told, done.updated_at = "done", {"event": "created"}, True, NOW - 20
    await storage.outbox_finish(OutboxOutcome(done))
    await storage.close()
    return stored.id


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    db = tmp_path / "bot.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    file_id = asyncio.run(seed(db, tmp_path / "spool"))
    return db, file_id


def test_list_shows_what_waits_and_what_failed(env: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "list"]) == 0
    out = capsys.readouterr().out
    assert "aaaa000000000001  ticket.create" in out and "failed (rejected)" in out
    assert "last error: HTTP 400: bad caller" in out
    assert "aaaa000000000002  ticket.comment" in out and "INC0000042" in out and "try 4 in" in out
    assert "aaaa000000000003" not in out and "2 item(s) open" in out
    assert main(["outbox", "list", "--state", "done"]) == 0
    assert "aaaa000000000003" in capsys.readouterr().out


def test_show_prints_the_payload(env: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "show", "aaaa000000000001"]) == 0
    out = capsys.readouterr().out
    assert "Не печатает принтер" in out and '"event": "rejected"' in out
    assert main(["outbox", "show", "nope"]) == 1
    assert "no outbox item nope" in capsys.readouterr().out


def test_retry_makes_a_failed_item_due_again(env: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = env
    assert main(["outbox", "retry", "aaaa000000000001"]) == 0
    assert "tried again at once" in capsys.readouterr().out

    async def check() -> None:
        storage = await open_sqlite(db)
        item = await storage.outbox_get("aaaa000000000001")
        due = await storage.outbox_due(1e12)
        await storage.close()
        assert item is not None and item.state == "pending" and item.attempts == 0
        assert "aaaa000000000001" in [i.id for i in due]

    asyncio.run(check())
    assert main(["outbox", "retry", "aaaa000000000003"]) == 1  # done: nothing to retry
    assert "is done" in capsys.readouterr().out


def test_retry_leaves_an_item_a_worker_is_trying(env: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = env

    async def claim() -> None:
        storage = await open_sqlite(db)
        assert await storage.outbox_retry("aaaa000000000001", 0.0)
        # Taken for an attempt (a kind not named in the leases gets the longest).
        taken = await storage.outbox_take(0.0, {"any": time.time() + 60})
        assert [i.id for i in taken] == ["aaaa000000000001"]
        await storage.close()

    asyncio.run(claim())
    assert main(["outbox", "retry", "aaaa000000000001"]) == 1
    assert "being tried by a worker right now" in capsys.readouterr().out


def test_drop_deletes_the_item_and_its_files(env: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, file_id = env
    spool = DiskSpool(db.parent / "spool")
    assert spool.path(file_id).exists()
    assert main(["outbox", "drop", "aaaa000000000001"]) == 0
    assert "dropped with 1 file(s)" in capsys.readouterr().out
    assert not spool.path(file_id).exists()
    assert main(["outbox", "drop", "aaaa000000000003"]) == 1  # done items stay as the record
    assert main(["outbox", "list", "--state", "all"]) == 0
    out = capsys.readouterr().out
    assert "aaaa000000000001" not in out and "2 item(s) all" in out
