"""A ticket's journal (sys_activity_feed_item records) -> the engine's Comment values.

shared/reference/simpleone-api.md, "Comments": a journal field (`additional_comments`,
`work_notes`) reads back empty after the save; each write is a record of
`sys_activity_feed_item` whose `type_id.name` is `<field>.<table>` (or `history`), whose
`content` is a JSON string, `{"message": "…"}` or `{"message": {"display_value": "…"}}` for a
comment, and whose `record_id` is the ticket's sys_id. The message may be HTML (agents write in
a rich-text editor): it is turned into plain text.

Everything here re-checks what the query already asked for: an entry is a comment for the user
only if its type is exactly the public one and it belongs to the ticket. A work note can never
pass, whatever the server returned.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from adapters.simpleone.html_text import html_to_text
from adapters.simpleone.records import text
from engine.ports import Comment

__all__ = ["FEED_FIELDS", "TYPE_NAME", "comment_from", "history_columns", "message_of"]

log = logging.getLogger(__name__)

# A picture in an agent's rich text: the only thing in a comment that is otherwise empty.
_IMAGE = re.compile(r"<img\b", re.IGNORECASE)

TYPE_NAME = "type_id.name"  # dot-walked in sysparm_fields [doc] and in the query [seen]
FEED_FIELDS: tuple[str, ...] = ("sys_id", TYPE_NAME, "content", "record_id", "sys_created_at", "sys_created_by")


def history_columns(content: object) -> set[str]:
    """The columns a `history` entry's content says were changed ([seen]: {"history_items":
    [{"column_id": …}, …]}); empty if it cannot be read."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return set()
    items = content.get("history_items") if isinstance(content, Mapping) else None
    if not isinstance(items, list):
        return set()
    return {str(i.get("column_id")) for i in items if isinstance(i, Mapping) and i.get("column_id")}


def message_of(content: object) -> str | None:
    """A comment's text from its content, either shape, as plain text (an agent's comment may
    be the rich-text editor's HTML: adapters/simpleone/html_text.py); None if it is not a
    comment's content."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return None
    if not isinstance(content, Mapping):
        return None
    message = content.get("message")
    if isinstance(message, Mapping):
        message = message.get("display_value")
    return html_to_text(message) if isinstance(message, str) else None


def comment_from(
    record: Mapping[str, Any], *, type_name: str, record_ids: frozenset[str], own_authors: frozenset[str],
    bot_tail: str,
) -> Comment | None:
    """The public comment this journal record is, or None (another type, a ticket not among
    `record_ids`, or a content that cannot be read: that is logged, and never shown raw)."""
    record_id = text(record.get("record_id"))
    if text(record.get(TYPE_NAME)) != type_name or not record_id or record_id not in record_ids:
        return None
    sys_id = text(record.get("sys_id"))
    if not sys_id:
        return None
    message = message_of(record.get("content"))
    if message is None:
        log.warning("journal entry %s of %s: its content is not a comment's JSON; skipped", sys_id, record_id)
        return None
    message = message.strip()
    image_only = not message and bool(_IMAGE.search(str(record.get("content") or "")))
    if not message and not image_only:
        return None
    author = text(record.get("sys_created_by"))
    by_bot = author.lower() in own_authors or (bool(bot_tail) and message.endswith(bot_tail))
    return Comment(sys_id=sys_id, text=message, author=author, created_at=text(record.get("sys_created_at")),
                   by_bot=by_bot, record_id=record_id, image_only=image_only)
