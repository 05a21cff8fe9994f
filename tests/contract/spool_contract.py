"""The FileSpool port's contract: put keeps the bytes, path finds them, discard removes them."""

from __future__ import annotations

from typing import Any

import pytest

from engine.ports import SpooledFile


async def test_put_keeps_bytes_and_metadata(spool: Any) -> None:
    data = bytes(range(256)) * 40
    kept = await spool.put("vk:1", "скан заявления.pdf", "application/pdf", data)

    assert (kept.name, kept.mime, kept.size) == ("скан заявления.pdf", "application/pdf", len(data))
    assert spool.path(kept.id).read_bytes() == data


async def test_every_put_gets_its_own_file(spool: Any) -> None:
    a = await spool.put("vk:1", "photo.jpg", "image/jpeg", b"first")
    b = await spool.put("vk:1", "photo.jpg", "image/jpeg", b"second")
    c = await spool.put("vk:2", "photo.jpg", "image/jpeg", b"third")

    assert len({a.id, b.id, c.id}) == 3
    assert [spool.path(f.id).read_bytes() for f in (a, b, c)] == [b"first", b"second", b"third"]


async def test_slot_round_trip_finds_the_file(spool: Any) -> None:
    kept = await spool.put("console:alice", "notes.txt", "text/plain", "привет".encode())
    restored = SpooledFile.from_slot(kept.as_slot())
    assert spool.path(restored.id).read_text(encoding="utf-8") == "привет"


async def test_discard_removes_and_may_repeat(spool: Any) -> None:
    kept = await spool.put("vk:1", "a.txt", "text/plain", b"x")
    await spool.discard(kept.id)
    await spool.discard(kept.id)
    assert not spool.path(kept.id).exists()


async def test_empty_file_is_kept(spool: Any) -> None:
    kept = await spool.put("vk:1", "empty.txt", "text/plain", b"")
    assert kept.size == 0
    assert spool.path(kept.id).read_bytes() == b""


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "vk_1/../x", "", "vk_1.zz", "/abs.0123"])
async def test_foreign_ids_are_refused(spool: Any, bad_id: str) -> None:
    with pytest.raises(ValueError):
        spool.path(bad_id)
    with pytest.raises(ValueError):
        await spool.discard(bad_id)
