"""The file spool port: users' files kept on local disk until they are uploaded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SpooledFile:
    """A user's file kept on local disk until it is uploaded (channel URLs expire)."""

    id: str
    name: str
    mime: str
    size: int

    def as_slot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "mime": self.mime, "size": self.size}

    @classmethod
    def from_slot(cls, value: Mapping[str, Any]) -> SpooledFile:
        return cls(str(value["id"]), str(value["name"]), str(value["mime"]), int(value["size"]))


def slot_file_ids(value: object) -> list[str]:
    """The spool ids of the files a file slot holds; anything else in it is passed over."""
    if not isinstance(value, list):
        return []
    return [str(v.get("id")) for v in value if isinstance(v, dict)]


def file_ids_within(value: object) -> list[str]:
    """Spool ids of the files (SpooledFile.as_slot) anywhere in a value: a session's slots (a
    draft keeps them in records) or an outbox item's payload (its "files")."""
    if isinstance(value, dict):
        if {"id", "name", "mime", "size"} <= value.keys():
            return [str(value["id"])]
        return [i for v in value.values() for i in file_ids_within(v)]
    if isinstance(value, list):
        return [i for v in value for i in file_ids_within(v)]
    return []


class FileSpoolFull(Exception):
    """The spool cannot take the file (its size cap or the disk is reached)."""


class FileSpool(Protocol):
    async def put(self, peer: str, name: str, mime: str, data: bytes) -> SpooledFile: ...

    def path(self, file_id: str) -> Path: ...

    async def discard(self, file_id: str) -> None: ...
