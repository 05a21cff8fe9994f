"""The wiring: what `supportbot` builds from a configuration, and its housekeeping."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from pathlib import Path

import pytest

from engine.ports import Incoming
from supportbot.app import build_app, housekeeping
from supportbot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **extra: str) -> object:
    return load_config({"SUPPORTBOT_DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
                        "SPOOL_DIR": str(tmp_path / "spool"), "FLOWS_DIR": str(ROOT / "flows"), **extra},
                       env_file=None)


async def test_without_simpleone_only_the_chat_runs_an_emulator(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match="SIMPLEONE_URL"):
        await build_app(config)  # type: ignore[arg-type]
    terminal = io.StringIO()
    app = await build_app(config, terminal=terminal, allow_emulator=True)  # type: ignore[arg-type]
    try:
        assert app.emulator is not None
        await app.engine.handle("console:t", Incoming(text="Мои заявки"))
        replies = await app.engine.handle("console:t", Incoming(text="t@ranepa.ru"))
        assert "отправил код" in replies[0].text
        assert "--- mail to t@ranepa.ru ---" in terminal.getvalue()
    finally:
        await app.close()
    assert (tmp_path / "bot.db").exists()


async def test_an_unreachable_database_is_named(tmp_path: Path) -> None:
    config = _config(tmp_path, SUPPORTBOT_DATABASE_URL="postgresql://postgres@127.0.0.1:1/bot")
    with pytest.raises(ConfigError, match="SUPPORTBOT_DATABASE_URL: cannot use PostgreSQL"):
        await build_app(config, allow_emulator=True)  # type: ignore[arg-type]


async def test_a_missing_postgres_database_is_named(tmp_path: Path) -> None:
    from tests.postgres_db import postgres_admin_url

    admin = postgres_admin_url()  # skips, saying why, without a server (fails in CI)
    missing = admin.rsplit("/", 1)[0] + "/supportbot_no_such_database"
    config = _config(tmp_path, SUPPORTBOT_DATABASE_URL=missing)
    with pytest.raises(ConfigError, match=r"cannot use PostgreSQL.*does not exist"):
        await build_app(config, allow_emulator=True)  # type: ignore[arg-type]


async def test_housekeeping_removes_abandoned_files(tmp_path: Path) -> None:
    from adapters.spool import DiskSpool
    from adapters.storage.sqlite import open_sqlite

    storage = await open_sqlite(tmp_path / "bot.db")
    spool = DiskSpool(tmp_path / "spool")
    old = time.time() - 3 * 86400
    kept = await spool.put("p", "new.png", "image/png", b"x")
    stale = await spool.put("p", "old.png", "image/png", b"y")
    os.utime(spool.path(stale.id), (old, old))
    task = asyncio.create_task(housekeeping(storage, spool, idle=1800, every=3600))
    await asyncio.sleep(0.2)
    task.cancel()
    assert not spool.path(stale.id).exists() and spool.path(kept.id).exists()
    await storage.close()


def test_transitions_logs_only_warnings_unless_the_log_is_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Every step used to write two INFO lines of the library's ("Finished processing state …")."""
    from engine.dialogue.machine import machine_of
    from engine.dialogue.model import Dialogue
    from engine.load import load_flow_set
    from supportbot.cli import quiet_transitions

    flow_set = load_flow_set([Path(__file__).resolve().parents[2] / "flows"]).flow_set
    assert flow_set is not None
    root = logging.getLogger()
    before = root.level, logging.getLogger("transitions").level
    try:
        for level, expect_lines in ((logging.INFO, False), (logging.DEBUG, True)):
            root.setLevel(level)
            quiet_transitions()
            caplog.clear()
            with caplog.at_level(level):
                assert machine_of(flow_set).trigger(Dialogue(flow_set, "main.menu", {}), "help")
            lines = [r for r in caplog.records if r.name.startswith("transitions")]
            assert bool(lines) is expect_lines
    finally:
        root.setLevel(before[0])
        logging.getLogger("transitions").setLevel(before[1])


def test_stats_prints_what_the_flows_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from adapters.storage.sqlite import open_sqlite
    from engine.ports import Session, StepCommit
    from supportbot.cli import main

    db = tmp_path / "bot.db"

    async def seed() -> None:
        storage = await open_sqlite(db)
        now = time.time()
        assert await storage.commit_step(StepCommit(Session("vk:1", "main.menu", {}, "v", now), 0,
                                                    counts=["hint_helped"]))
        assert await storage.commit_step(StepCommit(Session("vk:2", "main.menu", {}, "v", now), 0,
                                                    counts=["hint_helped"]))
        await storage.close()

    asyncio.run(seed())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    # --days N, as older scripts call it, is --since Nd (tests/supportbot/test_stats.py: the rest).
    assert main(["stats", "--days", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(7 day(s), UTC)")
    assert any(line.startswith("tickets saved by hints") and line.endswith(" 2") for line in lines)
    assert any(line.startswith("hint_helped") and line.endswith(" 2") for line in lines)


async def test_housekeeping_keeps_files_of_given_up_tickets_for_their_retention(tmp_path: Path) -> None:
    from adapters.spool import DiskSpool
    from adapters.storage.sqlite import open_sqlite
    from engine.ports import OUTBOX_FAILED, OutboxOutcome, Session, StepCommit
    from supportbot.config import Retention
    from tests.contract.storage_values import ended, make_item

    storage = await open_sqlite(tmp_path / "bot.db")
    spool = DiskSpool(tmp_path / "spool")
    now, old = time.time(), time.time() - 3 * 86400
    files = {}
    for name, failed_at in (("recent", now - 2 * 86400), ("long_ago", now - 10 * 86400)):
        stored = await spool.put("vk:1", f"{name}.png", "image/png", b"x")
        os.utime(spool.path(stored.id), (old, old))
        item = make_item(name, "vk:1", payload={"table": "itsm_incident", "files": [stored.as_slot()]})
        assert await storage.commit_step(StepCommit(Session(f"vk:{name}", "s", {}, "v", now), 0, outbox=[item]))
        assert await storage.outbox_finish(OutboxOutcome(ended(item, OUTBOX_FAILED, at=failed_at)))
        files[name] = stored.id
    task = asyncio.create_task(housekeeping(storage, spool, idle=1800, every=3600,
                                            retention=Retention(failed_files=7 * 86400)))
    await asyncio.sleep(0.2)
    task.cancel()
    assert spool.path(files["recent"]).exists() and not spool.path(files["long_ago"]).exists()
    await storage.close()


async def test_sqlite_synchronous_full_commits_on_a_thread_of_its_own(tmp_path: Path) -> None:
    import threading

    from supportbot.app import open_storage

    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.db'}", synchronous="FULL")
    try:
        assert await storage._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 2  # type: ignore[attr-defined]
        assert await storage._run(lambda conn: threading.get_ident()) != threading.get_ident()  # type: ignore[attr-defined]
    finally:
        await storage.close()
