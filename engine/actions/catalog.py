"""The service catalogue as actions: what a user's own words most likely ask for."""

from __future__ import annotations

from engine.actions.context import ActionContext
from engine.actions.registry import Shape, action
from engine.dialogue.catalog_search import index_of

ENTRY_FIELDS = ("id", "name", "group_id", "group", "label", "hint")
SUGGESTIONS = Shape.list_of(*ENTRY_FIELDS)
MAX_SUGGESTIONS = 3


@action("catalog.suggest", emits={"found", "none"}, writes={"suggestions": SUGGESTIONS})
async def suggest(ctx: ActionContext) -> str:
    """Up to three catalogue entries that the text in slot `query` (words typed to search the
    catalogue), or else in slot `description`, most likely asks for, best first, in slot
    `suggestions`; `none` when it names nothing the catalogue knows."""
    text = str(ctx.slots.pop("query", None) or ctx.slots.get("description") or "")
    found = index_of(ctx.flows).search(text, limit=MAX_SUGGESTIONS)
    ctx.slots["suggestions"] = [m.entry.as_slot() for m in found]
    return "found" if found else "none"
