"""The statements both backends run, written once (PostgreSQL's $n parameters, dialect words in
braces) and rendered per dialect by Sql(dialect). Statements only one backend has stay in its
module (SQLite's step write and outbox take, PostgreSQL's)."""

from __future__ import annotations

from typing import Final

from adapters.storage.dialect import Dialect
from adapters.storage.pg_presence import gone_sql

OUTBOX_COLUMNS: Final = (
    "id, peer, kind, payload, state, attempts, next_at, created_at, updated_at, last_error, progress,"
    " result, told, record, retried_at, held"
)
WATCH_COLUMNS: Final = (
    "table_name, sys_id, number, peer, state, updated_at, active, comment_after, asked_at, poked_at"
)
CODE_COLUMNS: Final = "peer, email, code_hash, salt, created_at, expires_at, attempts"
# held_by ($18): the process writing it, which has it in hand if it is written held.
_INSERT_OUTBOX: Final = (
    "INSERT INTO outbox (" + OUTBOX_COLUMNS + ", finished_at, held_by)"
    " VALUES (" + ", ".join(f"${n}" for n in range(1, 19)) + ")"
)
# Pending items due, oldest first, skipping any with an older pending item on its record. Plain
# enough (no aggregate, no DISTINCT) for PostgreSQL to take FOR UPDATE SKIP LOCKED with it.
OUTBOX_DUE: Final = (
    "SELECT " + ", ".join(f"o.{c}" for c in OUTBOX_COLUMNS.split(", ")) + " FROM outbox AS o{due_index}"
    " WHERE o.state = 'pending' AND (o.next_at <= $1{held_by_gone})"
    " AND (o.record IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.record = o.record"
    " AND e.state = 'pending' AND e.seq < o.seq))"
    " ORDER BY o.seq LIMIT $2"
)


class Sql:
    """Every shared statement in one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        q = dialect.sql
        self.dialect = dialect
        self.select_session = q(
            "SELECT peer, state, slots, flow_version, updated_at, version FROM sessions WHERE peer = $1"
        )
        self.insert_outbox = q(_INSERT_OUTBOX)
        # An outcome written again (a worker that ran twice) adds its follow-ups once, if their ids
        # are derived from the item's; a step's items are new by construction, so a clash there is
        # an error.
        self.insert_follow_up = q(_INSERT_OUTBOX + " ON CONFLICT (id) DO NOTHING")
        self.outbox_get = q("SELECT " + OUTBOX_COLUMNS + " FROM outbox WHERE id = $1")
        self.outbox_due = q(OUTBOX_DUE)
        # Pending only: an item finished by another attempt, or dropped by an admin meanwhile, is
        # left as it is.
        self.finish_outbox = q(
            "UPDATE outbox SET state = $1, result = $2, progress = $3, attempts = $4, last_error = $5,"
            " held = FALSE, told = told OR $6, updated_at = $7, finished_at = $8 WHERE id = $9 AND state = 'pending'"
        )
        self.insert_notice = q(
            "INSERT INTO notices (id, peer, text, created_at, buttons) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (id) DO NOTHING"
        )
        # A ticket followed already keeps what was last seen of it, unless this sight is later
        # (the user saw it so: a list, their own move; not to be told again); its journal cursor
        # stays. It goes to the chat that follows it now (its owner signed in there), so a chat
        # they left hears no more of it.
        later = "excluded.updated_at > ticket_watch.updated_at AND excluded.state <> ''"
        self.insert_watch = q(
            "INSERT INTO ticket_watch (table_name, sys_id, number, peer, state, updated_at, active, added_at,"
            " comment_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (table_name, sys_id) DO UPDATE SET peer = excluded.peer,"
            f" state = CASE WHEN {later} THEN excluded.state ELSE ticket_watch.state END,"
            f" active = CASE WHEN {later} THEN excluded.active ELSE ticket_watch.active END,"
            f" updated_at = CASE WHEN {later} THEN excluded.updated_at ELSE ticket_watch.updated_at END"
        )
        # A follow-up step's replies replace the earlier event's only while those are kept unsent.
        self.replace_replies = q(
            "UPDATE inbox SET replies = $1, version = $2 WHERE event_id = $3 AND replies IS NOT NULL"
        )
        # Whether a later step of the peer has committed since these kept replies' step.
        unsent = ("SELECT event_id, peer, replies,"
                  " EXISTS (SELECT 1 FROM sessions AS s WHERE s.peer = i.peer AND s.version > i.version)"
                  " FROM inbox AS i WHERE replies IS NOT NULL AND ")
        self.replies_unsent = q(unsent + "handled_at < $2 ORDER BY seq LIMIT $1")
        # Committed by another process that is gone: on SQLite any other (one process at a time).
        self.replies_unsent_gone = q(
            unsent + "handled_at IS NOT NULL AND coalesce(handled_by, '') <> $2"
            + (" AND " + gone_sql("i.handled_by") if dialect.name == "postgresql" else "")
            + " ORDER BY seq LIMIT $1"
        )
        # Taken when free, run out, held by the same holder already (a renewal), or by a process
        # that is gone (PostgreSQL; SQLite runs no leases).
        self.acquire_lease = q(
            "INSERT INTO leases AS l (name, holder, until) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE"
            " SET holder = excluded.holder, until = excluded.until WHERE l.holder = excluded.holder OR l.until <= $4"
            "{holder_gone}"
        )
        self.release_lease = q("DELETE FROM leases WHERE name = $1 AND holder = $2")
        self.get_cursor = q("SELECT value FROM cursors WHERE name = $1")
        self.put_cursor = q(
            "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )
        self.count = q(
            "INSERT INTO counters (name, day, count) VALUES ($1, $2, 1)"
            " ON CONFLICT (name, day) DO UPDATE SET count = counters.count + 1"
        )
        self.counts = q("SELECT name, day, count FROM counters WHERE day >= $1 ORDER BY name, day")
        self.prune_counts = q("DELETE FROM counters WHERE day < $1")
        # A scan of the sessions, for an admin's command now and then: no index is kept for it.
        self.idle_states = q("SELECT state, count(*) FROM sessions WHERE updated_at < $1 GROUP BY state")
        self.get_binding = q("SELECT peer, email, caller_id, name, bound_at FROM bindings WHERE peer = $1")
        self.put_binding = q(
            "INSERT INTO bindings (peer, email, caller_id, name, bound_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (peer) DO UPDATE SET email = excluded.email, caller_id = excluded.caller_id,"
            " name = excluded.name, bound_at = excluded.bound_at"
        )
        self.delete_binding = q("DELETE FROM bindings WHERE peer = $1")
        self.put_code = q(
            "INSERT INTO auth_codes (" + CODE_COLUMNS + ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (peer) DO UPDATE SET email = excluded.email, code_hash = excluded.code_hash,"
            " salt = excluded.salt, created_at = excluded.created_at, expires_at = excluded.expires_at,"
            " attempts = excluded.attempts"
        )
        self.get_code = q("SELECT " + CODE_COLUMNS + " FROM auth_codes WHERE peer = $1")
        self.delete_code = q("DELETE FROM auth_codes WHERE peer = $1")
        # The caps checked and the send counted in one statement, under the address's lock where
        # writers run at once (PostgreSQL; SQLite has one writer at a time anyway).
        self.lock_address = (q("SELECT pg_advisory_xact_lock(hashtext('auth_sends:' || $1))")
                             if dialect.name == "postgresql" else None)
        # The cap of others is the strangers' (peers that never signed in with the address), shared
        # by all of them, the asker's own sends included: an owner asking is not held back by it,
        # and owners' sends do not use it up.
        self.reserve_send = q(
            "INSERT INTO auth_sends (peer, email, sent_at)"
            " SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS {real})"
            " WHERE (SELECT count(*) FROM auth_sends WHERE peer = $1 AND sent_at >= $4) < $5"
            " AND (EXISTS (SELECT 1 FROM auth_owners WHERE email = $2 AND peer = $1)"
            " OR (SELECT count(*) FROM auth_sends AS s WHERE s.email = $2 AND s.sent_at >= $4"
            " AND NOT EXISTS (SELECT 1 FROM auth_owners AS o WHERE o.email = $2 AND o.peer = s.peer)) < $6)"
        )
        self.put_owner = q(
            "INSERT INTO auth_owners (email, peer, verified_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (email, peer) DO UPDATE SET verified_at = excluded.verified_at"
        )
        self.release_send = q("DELETE FROM auth_sends WHERE peer = $1 AND email = $2 AND sent_at = $3")
        # Both indexes (by peer, by email) serve the OR.
        self.code_send_stats = q(
            "SELECT count(*) FILTER (WHERE peer = $1), count(*) FILTER (WHERE email = $2),"
            " count(*) FILTER (WHERE peer = $1 AND email = $2), max(sent_at) FILTER (WHERE peer = $1 AND email = $2),"
            " min(sent_at) FILTER (WHERE peer = $1), min(sent_at) FILTER (WHERE email = $2 AND peer <> $1)"
            " FROM auth_sends WHERE (peer = $1 OR email = $2) AND sent_at >= $3"
        )
        self.seen_event = q("SELECT 1 FROM inbox WHERE event_id = $1 AND handled_at IS NOT NULL")
        self.inbox_add = q(
            "INSERT INTO inbox (event_id, peer, body, received_at, received_by) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (event_id) DO NOTHING"
        )
        pending = "SELECT event_id, peer, body, received_at FROM inbox WHERE handled_at IS NULL AND "
        self.inbox_pending = q(pending + "received_at < $2 ORDER BY seq LIMIT $1")
        # Received by another process that is gone (on SQLite: by any other).
        self.inbox_pending_gone = q(
            pending + "coalesce(received_by, '') <> $2"
            + (" AND " + gone_sql("received_by") if dialect.name == "postgresql" else "")
            + " ORDER BY seq LIMIT $1"
        )
        # Pending only: an item finished, retried or dropped meanwhile is not written back.
        self.outbox_save = q(
            "UPDATE outbox SET attempts = $1, next_at = $2, updated_at = $3, last_error = $4, progress = $5,"
            " held = $6 WHERE id = $7 AND state = 'pending'"
        )
        self.outbox_lease = q(
            "UPDATE outbox SET next_at = $1, attempts = {greatest}(0, attempts + $2), held = $3, held_by = $6"
            " WHERE id = $4 AND state = 'pending' AND next_at = $5"
        )
        # The WHERE repeats the partial index's terms word for word, so the planner uses it.
        self.outbox_untold = q(
            "SELECT " + OUTBOX_COLUMNS + " FROM outbox WHERE {untold} AND state IN ('done', 'failed')"
            " AND finished_at <= $1 ORDER BY finished_at, seq LIMIT $2"
        )
        # The told flag is the once-only guard: whoever flips it tells, nobody else.
        self.outbox_tell = q("UPDATE outbox SET told = TRUE WHERE id = $1 AND NOT told")
        # progress, attempts and last_error stay: the retry goes on from what was done (attempts
        # tell the worker an earlier try may have got through), and the last error is worth
        # seeing until a new attempt replaces it. retried_at restarts the give-up clock.
        self.outbox_retry = q(
            "UPDATE outbox SET state = 'pending', next_at = $1, updated_at = $1, retried_at = $1,"
            " finished_at = NULL, told = FALSE, result = NULL, held = FALSE"
            " WHERE id = $2 AND (state = 'failed' OR state = 'pending' AND (NOT held OR next_at <= $1))"
        )
        self.outbox_drop = q(
            "DELETE FROM outbox WHERE id = $1 AND state IN ('pending', 'failed') RETURNING " + OUTBOX_COLUMNS
        )
        self.notices_unsent = q(
            "SELECT id, peer, text, created_at, buttons FROM notices WHERE sent_at IS NULL ORDER BY seq LIMIT $1"
        )
        # A row value comparison walks the primary key from the last page's end.
        self.watch_list = q(
            "SELECT " + WATCH_COLUMNS + " FROM ticket_watch WHERE (table_name, sys_id) > ($1, $2)"
            " ORDER BY table_name, sys_id LIMIT $3"
        )
        # An UPDATE, not an upsert: a ticket dropped while it was being looked at stays dropped.
        # A poke made at or before the round began ($9) is answered by it; a later one stays for
        # the next round (what it announced may have come after this round's read).
        # What a round saw never overwrites a later sight recorded meanwhile (the user's own move,
        # read back by the outbox after the round read the ticket): the state goes only forward
        # in SimpleOne's time. The journal cursor and the time asked are the round's own.
        not_older = "$3 >= updated_at"
        self.watch_update = q(
            f"UPDATE ticket_watch SET number = $1, state = CASE WHEN {not_older} THEN $2 ELSE state END,"
            f" active = CASE WHEN {not_older} THEN $4 ELSE active END,"
            f" updated_at = CASE WHEN {not_older} THEN $3 ELSE updated_at END, comment_after = $5,"
            " asked_at = $6, poked_at = CASE WHEN poked_at <= $9 THEN NULL ELSE poked_at END"
            " WHERE table_name = $7 AND sys_id = $8"
        )
        self.watch_unpoke = q(
            "UPDATE ticket_watch SET poked_at = NULL WHERE table_name = $1 AND sys_id = $2 AND poked_at <= $3"
        )
        # Followed tickets only: an id the bot does not follow changes nothing. The later of two
        # pokes stays, so one made during a round outlives that round.
        self.watch_poke = q(
            "UPDATE ticket_watch SET poked_at = CASE WHEN poked_at IS NULL OR poked_at < $1 THEN $1"
            " ELSE poked_at END WHERE table_name = $2 AND sys_id = $3"
        )
        self.watch_poked = q(
            "SELECT " + WATCH_COLUMNS + " FROM ticket_watch WHERE poked_at IS NOT NULL"
            " ORDER BY poked_at, table_name, sys_id LIMIT $1"
        )
        self.watch_of_peer = q(
            "SELECT " + WATCH_COLUMNS + " FROM ticket_watch WHERE peer = $1 ORDER BY asked_at DESC, added_at DESC"
            " LIMIT 100"
        )
        self.watch_drop = q("DELETE FROM ticket_watch WHERE table_name = $1 AND sys_id = $2")
        self.prune = tuple(q(s) for s in (
            # Handled events only: one received but not yet handled is work still to do.
            "DELETE FROM inbox WHERE received_at < $1 AND handled_at IS NOT NULL",
            "DELETE FROM auth_sends WHERE sent_at < $1",
            "DELETE FROM auth_codes WHERE expires_at < $1",
            # Unsent notices (sent_at NULL) are never older than anything.
            "DELETE FROM notices WHERE sent_at < $1",
            # Failed items wait for an operator, untold ones for the user to hear of them.
            "DELETE FROM outbox WHERE state = 'done' AND told AND finished_at < $1",
        ))

        # forget (engine/ports/privacy.py): one person's rows. An address is the person of the
        # peers bound to it (addresses compared as typed or lower-cased alike); a peer that was
        # only sent a code there (a typo, someone else's chat) loses just the rows under the
        # address (forget_send_log_of), never its own session, binding or tickets.
        self.forget_peers_of = q("SELECT peer FROM bindings WHERE lower(email) = $1")
        self.outbox_pending_summary = q("SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'")
        self.outbox_failed_count = q("SELECT count(*) FROM outbox WHERE state = 'failed'")
        self.forget_pending = q("SELECT id FROM outbox WHERE peer = $1 AND state = 'pending' ORDER BY seq")
        self.forget_slots = q("SELECT slots FROM sessions WHERE peer = $1")
        # Pending items only when forced ($2): one a worker committed after the check survives.
        self.forget_outbox = q("DELETE FROM outbox WHERE peer = $1 AND (state <> 'pending' OR $2)"
                               " RETURNING payload")
        # An event's id stays (VK may send it again: it must stay a duplicate); who sent it, what it
        # said and what was answered go. One not handled yet is closed unhandled — except in the
        # bot's own step (the event it is handling is one: its commit must still mark it).
        self.forget_inbox = q(
            "UPDATE inbox SET peer = NULL, body = NULL, replies = NULL, handled_at = coalesce(handled_at, $2)"
            " WHERE peer = $1"
        )
        self.forget_inbox_handled = q(
            "UPDATE inbox SET peer = NULL, body = NULL, replies = NULL WHERE peer = $1 AND handled_at IS NOT NULL"
        )
        self.forget_by_peer = {
            "sessions": q("DELETE FROM sessions WHERE peer = $1"),
            "bindings": q("DELETE FROM bindings WHERE peer = $1"),
            "codes": q("DELETE FROM auth_codes WHERE peer = $1"),
            "notices": q("DELETE FROM notices WHERE peer = $1"),
            "watched tickets": q("DELETE FROM ticket_watch WHERE peer = $1"),
        }
        self.forget_send_log = (q("DELETE FROM auth_sends WHERE peer = $1"),
                                q("DELETE FROM auth_owners WHERE peer = $1"))
        self.forget_send_log_of = (q("DELETE FROM auth_sends WHERE lower(email) = $1"),
                                   q("DELETE FROM auth_owners WHERE lower(email) = $1"),
                                   q("DELETE FROM auth_codes WHERE lower(email) = $1"))
        # Retention of drafts: a session nobody stepped since $1 goes (the next message starts afresh).
        self.prune_sessions = q("DELETE FROM sessions WHERE updated_at < $1")
        self.prune_codes = q("DELETE FROM auth_codes WHERE expires_at < $1")

    def mark_handled(self, count: int) -> str:
        return self.dialect.sql(
            "UPDATE inbox SET handled_at = $1, body = NULL WHERE handled_at IS NULL AND "
            + self.dialect.any_of("event_id", 2, count)
        )

    def replies_sent(self, count: int) -> str:
        return self.dialect.sql(
            "UPDATE inbox SET sent_at = $1, replies = NULL WHERE " + self.dialect.any_of("event_id", 2, count)
        )

    def notices_sent(self, count: int) -> str:
        # The first sending counts: a resend does not push back its pruning.
        return self.dialect.sql(
            "UPDATE notices SET sent_at = $1 WHERE sent_at IS NULL AND " + self.dialect.any_of("id", 2, count)
        )

    def outbox_list(self, count: int) -> str:
        where = " WHERE " + self.dialect.any_of("state", 2, count) if count else ""
        return self.dialect.sql("SELECT " + OUTBOX_COLUMNS + " FROM outbox" + where + " ORDER BY seq LIMIT $1")
