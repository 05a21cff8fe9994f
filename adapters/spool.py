"""The FileSpool port on local disk: users' files wait here until they are uploaded.

Layout: <root>/<peer dir>/<random hex>. The file id is "<peer dir>.<random hex>", so `path`
needs no lookup, and it is checked against a strict pattern before it touches the file system:
ids come back from session slots and must never steer a path. The user's file name is only
metadata (SpooledFile.name, cleaned up for display and for the upload), never part of a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import time
import unicodedata
from collections.abc import Collection
from pathlib import Path
from typing import Final

from engine.ports import FileSpoolFull, SpooledFile

__all__ = ["DEFAULT_MAX_BYTES", "DiskSpool", "SpoolFull", "safe_file_name"]

DEFAULT_MAX_BYTES: Final = 1 << 30  # 1 GiB for the whole spool

_ID = re.compile(r"([A-Za-z0-9_-]{1,48})\.([0-9a-f]{32})")
_NOT_PEER_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
_TMP_SUFFIX: Final = ".tmp"
_MAX_NAME: Final = 200


class SpoolFull(FileSpoolFull):
    """Keeping this file would take the spool past its size cap (or the disk is full)."""


def safe_file_name(name: str) -> str:
    """A user's file name fit to show and to upload: no directories, control characters or
    excess length (the extension is kept); "file" when nothing is left."""
    name = unicodedata.normalize("NFC", re.split(r"[/\\]", name)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return "file"
    if len(name) > _MAX_NAME:
        stem, ext = os.path.splitext(name)
        ext = ext[:16]
        name = stem[: _MAX_NAME - len(ext)] + ext
    return name


def _peer_dir(peer: str) -> str:
    # Groups a peer's files; sanitised names may collide ("vk:1" and "vk_1"), which is harmless
    # because every file name is random.
    return _NOT_PEER_CHAR.sub("_", peer)[:48] or "_"


def _write_atomically(final: Path, data: bytes) -> None:
    """Write to a hidden temporary name, then rename: the final name never shows half a file."""
    tmp = final.with_name(f".{final.name}{_TMP_SUFFIX}")
    try:
        try:
            f = open(tmp, "xb")
        except FileNotFoundError:  # the peer's first file, or a sweep removed its empty directory
            final.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "xb")
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _unlink(path: Path) -> int | None:
    """Remove path; the bytes freed, or None if it was already gone."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    return size


def _sweep(root: Path, cutoff: float, keep: Collection[str]) -> tuple[int, int]:
    removed = freed = 0
    for peer_dir in root.iterdir():
        if not peer_dir.is_dir():
            continue
        for entry in peer_dir.iterdir():
            if f"{peer_dir.name}.{entry.name}" in keep:
                continue
            try:
                if entry.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            size = _unlink(entry)
            if size is not None:
                removed += 1
                if not entry.name.endswith(_TMP_SUFFIX):  # leftovers were never counted
                    freed += size
        with contextlib.suppress(OSError):  # succeeds only when empty: idle peers cost no directory
            peer_dir.rmdir()
    return removed, freed


def _scan(root: Path) -> int:
    return sum(
        entry.stat().st_size
        for peer_dir in root.iterdir()
        if peer_dir.is_dir()
        for entry in peer_dir.iterdir()
        if not entry.name.endswith(_TMP_SUFFIX)
    )


class DiskSpool:
    """Files under root, at most max_bytes in all (counted by this process since it started)."""

    def __init__(self, root: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool size cap must be positive, not {max_bytes}")
        self._root = Path(root)
        self._max = max_bytes
        # Start-up only: the directory is scanned once, before the event loop is busy.
        self._root.mkdir(parents=True, exist_ok=True)
        self._used = _scan(self._root)

    @property
    def used_bytes(self) -> int:
        return self._used

    async def put(self, peer: str, name: str, mime: str, data: bytes) -> SpooledFile:
        size = len(data)
        if self._used + size > self._max:
            raise SpoolFull(f"file spool is full: {self._used} + {size} bytes > cap of {self._max}")
        file_id = f"{_peer_dir(peer)}.{secrets.token_hex(16)}"
        # Reserved before the write so that concurrent puts cannot overshoot the cap together.
        self._used += size
        try:
            await asyncio.to_thread(_write_atomically, self.path(file_id), data)
        except OSError as exc:
            self._used -= size
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(f"no space left for the file spool at {self._root}") from exc
            raise
        except BaseException:
            self._used -= size
            raise
        clean_mime = mime.strip().lower() if _MIME.fullmatch(mime.strip()) else "application/octet-stream"
        return SpooledFile(file_id, safe_file_name(name), clean_mime, size)

    def path(self, file_id: str) -> Path:
        match = _ID.fullmatch(file_id)
        if match is None:
            raise ValueError(f"not a spool file id: {file_id!r}")
        return self._root / match[1] / match[2]

    async def discard(self, file_id: str) -> None:
        """Remove the file; discarding one that is already gone is fine."""
        freed = await asyncio.to_thread(_unlink, self.path(file_id))
        self._used -= freed or 0

    async def sweep(self, older_than_seconds: float, keep: Collection[str] = ()) -> int:
        """Remove files (and leftovers of interrupted writes) not touched for older_than_seconds,
        e.g. those of dialogues that were abandoned, except the ids in keep (files the outbox
        has yet to upload); returns how many were removed."""
        keep = frozenset(keep)
        removed, freed = await asyncio.to_thread(_sweep, self._root, time.time() - older_than_seconds, keep)
        self._used -= freed
        return removed
