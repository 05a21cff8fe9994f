"""DiskSpool on a real directory: layout, hostile names, the size cap, atomic writes, sweeping."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from adapters.spool import DiskSpool, SpoolFull, safe_file_name
from engine.ports import FileSpoolFull


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_files_live_in_a_per_peer_directory(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    a = await spool.put("vk:123", "a.txt", "text/plain", b"a")
    b = await spool.put("console:alice", "b.txt", "text/plain", b"b")

    assert spool.path(a.id).parent == tmp_path / "vk_123"
    assert spool.path(b.id).parent == tmp_path / "console_alice"
    assert files_under(tmp_path) == sorted([spool.path(a.id), spool.path(b.id)])


@pytest.mark.parametrize(
    "peer", ["../../etc", "vk:1/../../x", "", ".", "..", "console:алиса", "a" * 500, "nul\x00byte"]
)
async def test_hostile_peers_stay_inside_the_spool(tmp_path: Path, peer: str) -> None:
    root = tmp_path / "spool"
    spool = DiskSpool(root)
    kept = await spool.put(peer, "x.bin", "application/octet-stream", b"data")
    path = spool.path(kept.id)
    assert path.resolve().parent.parent == root.resolve()
    assert path.read_bytes() == b"data"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ivan\\Desktop\\отчёт.docx", "отчёт.docx"),
        ("bad\x00na\nme\u200b.pdf", "badname.pdf"),
        ("..", "file"),
        ("   ", "file"),
        ("dir/", "file"),
        ("й" * 300 + ".jpeg", "й" * 195 + ".jpeg"),
    ],
)
async def test_user_file_names_are_only_metadata(tmp_path: Path, given: str, kept: str) -> None:
    spool = DiskSpool(tmp_path)
    stored = await spool.put("vk:1", given, "image/jpeg", b"x")

    assert stored.name == kept
    on_disk = spool.path(stored.id)
    assert on_disk.name not in given and on_disk.parent == tmp_path / "vk_1"
    assert files_under(tmp_path) == [on_disk]


def test_decomposed_names_are_normalised() -> None:
    assert safe_file_name("Фо\u0301то.png") == "Фо́то.png"  # NFC: one code point per letter
    assert safe_file_name("e\u0301.txt") == "\u00e9.txt"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("image/JPEG", "image/jpeg"), ("text/plain; charset=utf-8", "application/octet-stream"),
     ("", "application/octet-stream"), ("../../x", "application/octet-stream")],
)
async def test_mime_types_are_checked(tmp_path: Path, given: str, kept: str) -> None:
    assert (await DiskSpool(tmp_path).put("vk:1", "f", given, b"x")).mime == kept


# --------------------------------------------------------------------------- size cap


async def test_cap_refuses_the_file_that_would_exceed_it(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=100)
    await spool.put("vk:1", "a", "text/plain", b"x" * 60)
    with pytest.raises(SpoolFull, match="cap"):
        await spool.put("vk:1", "b", "text/plain", b"x" * 41)
    # The engine catches the port's exception; SpoolFull is one.
    with pytest.raises(FileSpoolFull):
        await spool.put("vk:1", "b", "text/plain", b"x" * 41)
    await spool.put("vk:1", "c", "text/plain", b"x" * 40)  # exactly at the cap is fine
    assert spool.used_bytes == 100
    assert len(files_under(tmp_path)) == 2


async def test_discard_gives_the_space_back(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=100)
    kept = await spool.put("vk:1", "a", "text/plain", b"x" * 100)
    await spool.discard(kept.id)
    await spool.discard(kept.id)  # the second discard frees nothing more
    assert spool.used_bytes == 0
    await spool.put("vk:1", "b", "text/plain", b"y" * 100)


async def test_concurrent_puts_cannot_overshoot_the_cap(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1000)
    results = await asyncio.gather(
        *(spool.put(f"vk:{i}", "f", "text/plain", b"z" * 100) for i in range(25)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert all(isinstance(r, SpoolFull) for r in results if isinstance(r, BaseException))
    assert sum(p.stat().st_size for p in files_under(tmp_path)) == 1000


async def test_a_restarted_spool_counts_what_is_already_there(tmp_path: Path) -> None:
    await DiskSpool(tmp_path).put("vk:1", "a", "text/plain", b"x" * 70)
    again = DiskSpool(tmp_path, max_bytes=100)
    assert again.used_bytes == 70
    with pytest.raises(SpoolFull):
        await again.put("vk:2", "b", "text/plain", b"x" * 31)


def test_cap_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DiskSpool(tmp_path, max_bytes=0)


# --------------------------------------------------------------------------- atomic writes


async def test_a_failed_write_leaves_nothing_and_frees_its_reservation(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    (tmp_path / "vk_1").write_text("a file where the peer directory should be")
    with pytest.raises(OSError):
        await spool.put("vk:1", "a", "text/plain", b"x" * 10)
    assert spool.used_bytes == 0
    assert [p.name for p in files_under(tmp_path)] == ["vk_1"]


async def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    kept = await spool.put("vk:1", "a", "text/plain", b"payload")
    assert [p.name for p in spool.path(kept.id).parent.iterdir()] == [spool.path(kept.id).name]


# --------------------------------------------------------------------------- sweeping


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


async def test_sweep_removes_old_files_and_leftovers_only(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    old = await spool.put("vk:1", "old", "text/plain", b"o" * 10)
    fresh = await spool.put("vk:1", "new", "text/plain", b"n" * 20)
    lone = await spool.put("vk:2", "lone", "text/plain", b"l" * 30)
    leftover = tmp_path / "vk_1" / ".deadbeef.tmp"  # an interrupted write from an earlier run
    leftover.write_bytes(b"partial")
    for path in (spool.path(old.id), spool.path(lone.id), leftover):
        age(path, 7200)

    assert await spool.sweep(3600) == 3
    assert files_under(tmp_path) == [spool.path(fresh.id)]
    assert not (tmp_path / "vk_2").exists()  # emptied peer directories go too
    assert spool.used_bytes == 20


async def test_sweep_of_nothing_old_removes_nothing(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    kept = await spool.put("vk:1", "a", "text/plain", b"a")
    assert await spool.sweep(3600) == 0
    assert spool.path(kept.id).read_bytes() == b"a"
