"""The Storage port's values as database rows, and back: shared by the SQLite and PostgreSQL
adapters, whose tables have the same columns (SQLite stores the booleans as 0/1).

Encoding happens on the caller's side, before a step joins a group commit: a slot or payload
that is not JSON fails that caller alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from engine.ports import OUTBOX_PENDING, Notice, OutboxItem, OutboxOutcome, StepCommit, WatchedTicket

# The outbox columns' values: (id, peer, kind, payload JSON, state, attempts, next_at, created_at,
# updated_at, last_error, progress JSON, result JSON, told, record, retried_at, held, finished_at)
OutboxRow = tuple[str, str, str, str, str, int, float, float, float, str, str, str | None, bool, str | None,
                  float | None, bool, float | None]
NoticeRow = tuple[str, str, str, float]  # (id, peer, text, created_at)
WatchRow = tuple[str, str, str, str, str, str, bool, float]  # ticket_watch's columns, added_at last
# An outcome as written: the item's update (state, result, progress, attempts, last_error,
# told, updated_at, finished_at, id), notices, follow-up items, watch rows.
OutcomeRows = tuple[
    tuple[str, str | None, str, int, str, bool, float, float | None, str],
    list[NoticeRow], list[OutboxRow], list[WatchRow],
]
# (peer, state, slots JSON, flow_version, updated_at, expected_version, event_id, replies JSON,
#  outbox rows, reply_of, outcomes)
StepRow = tuple[
    str, str, str, str, float, int, str | None, str | None, tuple[OutboxRow, ...], str | None,
    tuple[OutcomeRows, ...],
]


def json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def step_row(step: StepCommit) -> StepRow:
    s = step.session
    outbox = tuple(outbox_row(item) for item in step.outbox)
    return (s.peer, s.state, json_text(s.slots), s.flow_version, s.updated_at, step.expected_version, step.event_id,
            step.replies, outbox, step.reply_of, tuple(outcome_rows(o) for o in step.finish))


def outcome_rows(outcome: OutboxOutcome) -> OutcomeRows:
    i = outcome.item
    update = (i.state, result_text(i), json_text(i.progress), i.attempts, i.last_error, i.told, i.updated_at,
              finished_at(i), i.id)
    now = time.time()
    return (update, [notice_row(n) for n in outcome.notices], [outbox_row(f) for f in outcome.follow_ups],
            [watch_row(t, now) for t in outcome.watch])


def outbox_row(item: OutboxItem) -> OutboxRow:
    return (item.id, item.peer, item.kind, json_text(item.payload), item.state, item.attempts, item.next_at,
            item.created_at, item.updated_at, item.last_error, json_text(item.progress), result_text(item),
            item.told, item.record, item.retried_at, item.held, finished_at(item))


def result_text(item: OutboxItem) -> str | None:
    return None if item.result is None else json_text(item.result)


def finished_at(item: OutboxItem) -> float | None:
    # An item ends at its last update, in the engine's clock: outbox_untold and prune are asked
    # in that clock (a test's fixed one, too), so an adapter's own clock would not compare.
    return None if item.state == OUTBOX_PENDING else item.updated_at


def outbox_item(row: Sequence[Any]) -> OutboxItem:
    """An item from the outbox columns in the order the adapters select them."""
    (id_, peer, kind, payload, state, attempts, next_at, created_at, updated_at, last_error, progress, result,
     told, record, retried_at, held) = row
    return OutboxItem(id_, peer, kind, json.loads(payload), created_at, state, attempts, next_at, updated_at,
                      last_error, json.loads(progress), None if result is None else json.loads(result), bool(told),
                      record, retried_at, bool(held))


def notice_row(notice: Notice) -> NoticeRow:
    return (notice.id, notice.peer, notice.text, notice.created_at)


def watch_row(ticket: WatchedTicket, added_at: float) -> WatchRow:
    t = ticket
    return (t.table, t.sys_id, t.number, t.peer, t.state, t.updated_at, t.active, added_at)
