"""Notice texts: what the user is told unasked, rendered from flows (bot.notices)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engine.flows.source import FlowSource
from engine.ports import Notice, OutboxItem
from engine.replies import Button

log = logging.getLogger(__name__)


def render_notice(flows: FlowSource, name: str, values: dict[str, Any]) -> str | None:
    """The text of notice `name`, or None if there is none (logged: a flow set without it)."""
    template = flows.current.bot.notices.get(name)
    if template is None:
        log.error("no notice %r in the flows; the user is not told", name)
        return None
    return template.render(values)


def notice_buttons(flows: FlowSource, name: str, values: dict[str, Any]) -> tuple[tuple[Button, ...], ...]:
    """The notice's buttons (bot.notice_buttons), each naming the ticket in values, if any."""
    ticket = values.get("ticket")
    number = str(ticket.get("number") or "") if isinstance(ticket, dict) else ""
    if not number:
        return ()
    rows = flows.current.bot.notice_buttons.get(name, ())
    return tuple(tuple(Button(b.label, b.event, color=b.color, number=number) for b in row) for row in rows)


def outbox_notices(flows: FlowSource, clock: Callable[[], float]) -> Callable[[OutboxItem, str], Notice | None]:
    """How the outbox worker tells an outcome nobody waited for: one notice per item and
    outcome, its id derived from both, so telling it twice stores it once."""

    def render(item: OutboxItem, name: str) -> Notice | None:
        if not name:
            return None
        values = dict((item.result or {}).get("vars") or {})
        text = render_notice(flows, name, values)
        if text is None:
            return None
        # The outcome is in the id: a failure told, then a success after an admin's retry, are two.
        return Notice(f"outbox:{item.id}:{item.state}", item.peer, text, clock(),
                      notice_buttons(flows, name, values))

    return render
