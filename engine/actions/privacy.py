"""«Удалить мои данные»: a user deletes what the bot keeps about them (as `supportbot forget`
does for an admin, engine/ports/privacy.py)."""

from __future__ import annotations

import logging

from engine.actions.context import ActionContext
from engine.actions.registry import action
from engine.ports.files import file_ids_within

log = logging.getLogger(__name__)


@action("privacy.forget", emits={"forgotten", "busy"}, outside=True)
async def forget(ctx: ActionContext) -> str:
    """Delete the user's binding, codes, notices, followed tickets, kept replies, outbox items and
    files, and empty their dialogue; busy (nothing deleted) while a ticket of theirs is on its
    way to SimpleOne.

    Two writes: storage.forget's transaction now, then the step's commit (the session emptied,
    the binding and code deleted again: a no-op). A crash in between leaves the session as it
    was, draft and all, with nothing else left: the user got no answer and asks again (the
    session also goes after RETAIN_DRAFTS_DAYS). The other order would leave their notices,
    followed tickets and sign-in data after a reply that said they were deleted. The record of
    codes mailed stays until it is pruned: forgetting must not reset the caps on how many codes
    an address gets."""
    storage = ctx.services.storage
    found = await storage.forget(peer=ctx.peer, keep_session=True, keep_send_log=True)
    if found.refused:
        return "busy"
    # Outside the step like the rows: a file still named by the draft is only missing from it.
    for file_id in dict.fromkeys([*found.files, *file_ids_within(ctx.slots)]):
        try:
            await ctx.services.spool.discard(file_id)
        except Exception:  # not a spool id, or the disk refused: swept by housekeeping in a day
            log.warning("forget: a spooled file could not be removed; housekeeping sweeps it")
    if await ctx.sign_in.binding() is not None:
        ctx.sign_in.bind(None)
    if await ctx.sign_in.code() is not None:
        ctx.sign_in.set_code(None)
    ctx.slots.clear()
    ctx.slots["user"] = {}
    log.info("forget: the user's data was deleted at their request (%d rows)", found.total)
    return "forgotten"
