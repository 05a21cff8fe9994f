"""`supportbot migrate` and `supportbot migrate --from-sqlite FILE`."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from adapters.storage.sqlite import MIGRATIONS
from supportbot.cli import main
from tests.adapters.storage.test_sqlite_to_postgres import embedded
from tests.postgres_db import create_scratch_database, drop_database, postgres_admin_url


def test_migrate_brings_an_sqlite_database_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "bot.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{db}")
    assert main(["migrate"]) == 0
    assert "schema up to date" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")] == [*dict(MIGRATIONS)]


def test_copying_needs_a_postgres_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    assert main(["migrate", "--from-sqlite", str(tmp_path / "old.db")]) == 2
    assert "set SUPPORTBOT_DATABASE_URL=postgresql://" in capsys.readouterr().err


def test_migrate_from_sqlite_copies_into_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    admin = postgres_admin_url()
    dsn = asyncio.run(create_scratch_database(admin))
    try:
        source = tmp_path / "supportbot.db"
        asyncio.run(embedded(source))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", dsn)
        assert main(["migrate", "--from-sqlite", str(source)]) == 0
        assert "copied: sessions 2, bindings 1" in capsys.readouterr().out
        assert main(["migrate", "--from-sqlite", str(source)]) == 1  # not twice into one database
        assert "already has sessions" in capsys.readouterr().err
    finally:
        asyncio.run(drop_database(admin, dsn))
