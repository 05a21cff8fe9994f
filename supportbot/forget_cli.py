"""`supportbot forget --peer vk:123 | --email x@ranepa.ru`: delete what the bot keeps about one
person (a request under the personal data law), and say what went.

Works whether the bot runs or not: it changes the database and the spool only. A running bot
on SQLite may answer from a binding it cached for up to a minute; its next step starts afresh.
"""

from __future__ import annotations

import re
from typing import TextIO

from adapters.spool import DiskSpool
from engine.ports import FORGET_KINDS, Forgotten
from supportbot.app import open_storage
from supportbot.config import Config

PEER = re.compile(r"[a-z]+:[^\s:]+")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def check_person(peer: str | None, email: str | None) -> str | None:
    """What is wrong with the way the person was named, or None."""
    if (peer is None) == (email is None):
        return "name the person by --peer or by --email (one of them)"
    if peer is not None and not PEER.fullmatch(peer):
        return f"--peer must be a channel and an id such as vk:123456, got {peer!r}"
    if email is not None and not EMAIL.fullmatch(email.strip()):
        return f"--email must be an address such as ivanov-ii@ranepa.ru, got {email!r}"
    return None


def report(who: str, found: Forgotten, files: int) -> str:
    if found.refused:
        return (f"{who}: {len(found.refused)} unfinished outbox item(s) (a ticket or comment not yet in SimpleOne): "
                f"{', '.join(found.refused)}; wait for them (supportbot outbox list), drop them, or add --force."
                " Nothing was deleted.")
    if not found.total and not files:
        return f"{who}: nothing is kept about them"
    counts = ", ".join(f"{kind} {found.removed.get(kind, 0)}" for kind in FORGET_KINDS)
    peers = f" (peers: {', '.join(found.peers)})" if found.peers and found.peers != (who,) else ""
    return f"{who}{peers}: removed {counts}, files {files}"


async def forget_command(config: Config, peer: str | None, email: str | None, force: bool, out: TextIO) -> int:
    storage = await open_storage(config.database_url, synchronous=config.sqlite_synchronous)
    try:
        found = await storage.forget(peer=peer, email=email, force=force)
    finally:
        await storage.close()
    files = 0
    if found.files:
        spool = DiskSpool(config.spool_dir, max_bytes=config.spool_max_bytes)
        for file_id in found.files:
            try:
                if spool.path(file_id).exists():
                    await spool.discard(file_id)
                    files += 1
            except ValueError:  # not a spool id: nothing on disk answers to it
                continue
    out.write(report(peer or str(email).strip().lower(), found, files) + "\n")
    return 1 if found.refused else 0
