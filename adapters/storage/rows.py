"""The Storage port's values as database rows, and back: shared by the SQLite and PostgreSQL
adapters, whose tables have the same columns (SQLite stores the booleans as 0/1).

Encoding happens on the caller's side, before a step joins a group commit: a slot or payload
that is not JSON fails that caller alone. Each row is a NamedTuple whose fields are in the
order of its statement's parameters, so it is passed to the driver as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from engine.ports import Notice, OutboxItem, OutboxOutcome, OutboxState, SignInWrites, StepCommit, WatchedTicket
from engine.replies import buttons_data, buttons_from_data


class OutboxRow(NamedTuple):
    """An outbox item as inserted: the outbox columns, finished_at last."""

    id: str
    peer: str
    kind: str
    payload: str  # JSON
    state: str
    attempts: int
    next_at: float
    created_at: float
    updated_at: float
    last_error: str
    progress: str  # JSON
    result: str | None  # JSON
    told: bool
    record: str | None
    retried_at: float | None
    held: bool
    finished_at: float | None


class NoticeRow(NamedTuple):
    id: str
    peer: str
    text: str
    created_at: float
    buttons: str  # JSON (engine.replies.buttons_data), "" for none


class WatchRow(NamedTuple):
    """ticket_watch's columns, added_at last."""

    table_name: str
    sys_id: str
    number: str
    peer: str
    state: str
    updated_at: str
    active: bool
    added_at: float
    comment_after: str | None


class FinishRow(NamedTuple):
    """The parameters of an item's final update, in the statement's order."""

    state: str
    result: str | None
    progress: str
    attempts: int
    last_error: str
    told: bool
    updated_at: float
    finished_at: float | None
    id: str


class OutcomeRows(NamedTuple):
    """An outcome as written: the item's update, then what follows from it."""

    finish: FinishRow
    notices: list[NoticeRow]
    follow_ups: list[OutboxRow]
    watch: list[WatchRow]
    counts: list[tuple[str, str]]  # (name, day)


class SignInRows(NamedTuple):
    """A step's sign-in changes as statement parameters: a row to upsert, or the peer's key to
    delete by; None where the step left it alone."""

    put_binding: tuple[Any, ...] | None
    put_owner: tuple[Any, ...] | None  # (email, peer, at): the binding proves the peer reads the address
    delete_binding: tuple[str] | None
    put_code: tuple[Any, ...] | None
    delete_code: tuple[str] | None


class StepRow(NamedTuple):
    """One engine step as written by a group commit."""

    peer: str
    state: str
    slots: str  # JSON
    flow_version: str
    updated_at: float
    expected: int  # the version the step read; the write makes expected + 1
    event_id: str | None
    replies: str | None
    outbox: tuple[OutboxRow, ...]
    reply_of: str | None
    outcomes: tuple[OutcomeRows, ...]
    sign_in: SignInRows | None
    watch: tuple[WatchRow, ...]
    counts: tuple[tuple[str, str], ...]  # (name, day)

    @property
    def has_rest(self) -> bool:
        """Whether the step writes more than its session and inbox mark (SqlStorage._step_rest):
        most steps do not, and are written with no script at all."""
        return bool(self.outbox or self.outcomes or self.reply_of is not None or self.sign_in or self.watch
                    or self.counts)


def json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def step_row(step: StepCommit) -> StepRow:
    session = step.session
    slots = json_text(session.slots) if step.slots_text is None else step.slots_text
    counts = tuple((name, utc_day(session.updated_at)) for name in step.counts)
    outcomes = tuple(outcome_rows(outcome) for outcome in step.finish)
    if any(o.counts for o in outcomes):
        # The outcomes' counters are written as the step's own: one way for every backend
        # (PostgreSQL's commit function writes a step's counters, not an outcome's).
        counts += tuple(c for o in outcomes for c in o.counts)
        outcomes = tuple(o._replace(counts=[]) for o in outcomes)
    return StepRow(session.peer, session.state, slots, session.flow_version, session.updated_at,
                   step.expected_version, step.event_id, step.replies, tuple(outbox_row(item) for item in step.outbox),
                   step.reply_of, outcomes, None if not step.sign_in else sign_in_rows(step.sign_in),
                   tuple(watch_row(t, time.time()) for t in step.watch), counts)


def utc_day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def sign_in_rows(writes: SignInWrites) -> SignInRows:
    peer, binding, code = writes.peer, writes.binding, writes.code
    return SignInRows(
        (binding.peer, binding.email, binding.caller_id, binding.name, binding.bound_at)
        if writes.binding_changed and binding is not None else None,
        (binding.email, binding.peer, binding.bound_at) if writes.binding_changed and binding is not None else None,
        (peer,) if writes.binding_changed and binding is None else None,
        (code.peer, code.email, code.code_hash, code.salt, code.created_at, code.expires_at, code.attempts)
        if writes.code_changed and code is not None else None,
        (peer,) if writes.code_changed and code is None else None,
    )


def outcome_rows(outcome: OutboxOutcome) -> OutcomeRows:
    item = outcome.item
    finish = FinishRow(item.state, result_text(item), json_text(item.progress), item.attempts, item.last_error,
                       item.told, item.updated_at, finished_at(item), item.id)
    now = time.time()
    return OutcomeRows(finish, [notice_row(n) for n in outcome.notices], [outbox_row(f) for f in outcome.follow_ups],
                       [watch_row(t, now) for t in outcome.watch],
                       [(name, utc_day(item.updated_at)) for name in outcome.counts])


def outbox_row(item: OutboxItem) -> OutboxRow:
    return OutboxRow(item.id, item.peer, item.kind, json_text(item.payload), item.state, item.attempts,
                     item.next_at, item.created_at, item.updated_at, item.last_error, json_text(item.progress),
                     result_text(item), item.told, item.record, item.retried_at, item.held, finished_at(item))


def result_text(item: OutboxItem) -> str | None:
    return None if item.result is None else json_text(item.result)


def finished_at(item: OutboxItem) -> float | None:
    # An item ends at its last update, in the engine's clock: outbox_untold and prune are asked
    # in that clock (a test's fixed one, too), so an adapter's own clock would not compare.
    return None if item.state == OutboxState.PENDING else item.updated_at


def outbox_item(row: Sequence[Any]) -> OutboxItem:
    """An item from the outbox columns in the order the adapters select them (OUTBOX_COLUMNS)."""
    (id_, peer, kind, payload, state, attempts, next_at, created_at, updated_at, last_error, progress, result,
     told, record, retried_at, held) = row
    return OutboxItem(id_, peer, kind, json.loads(payload), created_at, OutboxState(state), attempts, next_at,
                      updated_at, last_error, json.loads(progress), None if result is None else json.loads(result),
                      bool(told), record, retried_at, bool(held))


def notice_row(notice: Notice) -> NoticeRow:
    buttons = json.dumps(buttons_data([list(row) for row in notice.buttons]), ensure_ascii=False,
                         separators=(",", ":")) if notice.buttons else ""
    return NoticeRow(notice.id, notice.peer, notice.text, notice.created_at, buttons)


def notice_of(row: Sequence[Any]) -> Notice:
    """A notices row (id, peer, text, created_at, buttons) as the port's value."""
    nid, peer, text, created_at, buttons = row
    grid = tuple(tuple(r) for r in buttons_from_data(json.loads(buttons))) if buttons else ()
    return Notice(nid, peer, text, created_at, grid)


def watch_row(ticket: WatchedTicket, added_at: float) -> WatchRow:
    return WatchRow(ticket.table, ticket.sys_id, ticket.number, ticket.peer, ticket.state, ticket.updated_at,
                    ticket.active, added_at, ticket.comment_after)


def watched_of(row: Sequence[Any]) -> WatchedTicket:
    """A ticket_watch row (WATCH_COLUMNS) as the port's value."""
    table, sys_id, number, peer, state, updated_at, active, comment_after, asked_at, poked_at = row
    return WatchedTicket(table, sys_id, number, peer, state, updated_at, bool(active), comment_after,
                         float(asked_at or 0.0), None if poked_at is None else float(poked_at))
