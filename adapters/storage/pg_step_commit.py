"""PostgreSQL's step commit and peer lock in one round trip each: two server-side functions
(created by schema migration 12) and what the client sends them.

sb_commit_steps writes a group commit's steps in one statement, run in autocommit: per step, in
a block of its own (a subtransaction: a refused or failing step stands or falls alone), exactly
what the savepoint path (postgres.py, core.py `_step_rest`) writes, in the same order. A step's
session columns come as arrays; what few steps have besides (outbox items, sign-in writes,
watched tickets, counters, outcomes, replaced replies) as one JSON text per step, decoded inside
its block, so a value PostgreSQL refuses there fails that step alone.

A batch carries a token (a fresh UUID), recorded in step_batches in the same statement, first:
a call whose answer was lost with its connection is sent again with the same token and, if the
first one committed, gets its results back instead of applying the steps twice (a first call
still running holds the token's key, and the second waits for its end). Results are stored only
when some step was not written (NULL: every step was).

sb_peer_locks takes and lets go peer locks (pg_peer_locks.py) and returns, for each lock taken,
its peer's session, read by a statement that begins after the lock was had: a worker commits a
step before letting the lock go, so the session read is the latest, and the step needs no read
of its own (PostgresStorage.load_session).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, Final

from adapters.storage.rows import OutcomeRows, SignInRows, StepRow

# The call: token, process, time received, then the steps' columns as arrays.
COMMIT_CALL: Final = "SELECT sb_commit_steps($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
# Locks: keys, take (else let go), the peer whose session to read (NULL for a release).
LOCK_CALL: Final = "SELECT * FROM sb_peer_locks($1::bigint[], $2::bool[], $3::text[])"
# What the prune deletes: the tokens of batches older than ten minutes, whatever the horizon (a
# token only answers a call sent again after a lost answer, within seconds; the horizon is for
# the inbox, days), so they never pile up like the inbox.
PRUNE_BATCHES: Final = "DELETE FROM step_batches WHERE made_at < extract(epoch FROM clock_timestamp()) - 600"

# The step a function refuses after writing part of it (an event handled, an outcome recorded
# meanwhile): raised in its block, which undoes it.
_REFUSED: Final = "SB001"

_INSERT_OUTBOX_VALUES: Final = (
    "INSERT INTO outbox (id, peer, kind, payload, state, attempts, next_at, created_at, updated_at, last_error,"
    " progress, result, told, record, retried_at, held, finished_at, held_by)"
    " VALUES (v_row->>0, v_row->>1, v_row->>2, v_row->>3, v_row->>4, (v_row->>5)::INTEGER,"
    " (v_row->>6)::DOUBLE PRECISION, (v_row->>7)::DOUBLE PRECISION, (v_row->>8)::DOUBLE PRECISION, v_row->>9,"
    " v_row->>10, v_row->>11, (v_row->>12)::BOOLEAN, v_row->>13, (v_row->>14)::DOUBLE PRECISION,"
    " (v_row->>15)::BOOLEAN, (v_row->>16)::DOUBLE PRECISION, p_process)"
)
# sql.py's insert_watch, from a JSON row.
_LATER: Final = "excluded.updated_at > ticket_watch.updated_at AND excluded.state <> ''"
_INSERT_WATCH_VALUES: Final = (
    "INSERT INTO ticket_watch (table_name, sys_id, number, peer, state, updated_at, active, added_at,"
    " comment_after) VALUES (v_row->>0, v_row->>1, v_row->>2, v_row->>3, v_row->>4, v_row->>5,"
    " (v_row->>6)::BOOLEAN, (v_row->>7)::DOUBLE PRECISION, v_row->>8)"
    " ON CONFLICT (table_name, sys_id) DO UPDATE SET peer = excluded.peer,"
    f" state = CASE WHEN {_LATER} THEN excluded.state ELSE ticket_watch.state END,"
    f" active = CASE WHEN {_LATER} THEN excluded.active ELSE ticket_watch.active END,"
    f" updated_at = CASE WHEN {_LATER} THEN excluded.updated_at ELSE ticket_watch.updated_at END"
)

# No braces anywhere below: schema.py renders statements with str.format_map.
STEP_BATCHES_TABLE: Final = """CREATE TABLE IF NOT EXISTS step_batches (
    token UUID PRIMARY KEY,
    made_at DOUBLE PRECISION NOT NULL,
    results TEXT[]
)"""
STEP_BATCHES_INDEX: Final = "CREATE INDEX IF NOT EXISTS step_batches_made_at ON step_batches (made_at)"

COMMIT_FUNCTION: Final = f"""CREATE OR REPLACE FUNCTION sb_commit_steps(
    p_token UUID, p_process TEXT, p_at DOUBLE PRECISION, p_peer TEXT[], p_state TEXT[], p_slots TEXT[],
    p_flow TEXT[], p_updated DOUBLE PRECISION[], p_expected BIGINT[], p_event TEXT[], p_replies TEXT[],
    p_rest TEXT[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $fn$
DECLARE
    v_steps INTEGER := coalesce(array_length(p_peer, 1), 0);
    v_results TEXT[] := ARRAY[]::TEXT[];
    v_all_written BOOLEAN := TRUE;
    v_version BIGINT;
    v_rest JSON;
    v_row JSON;
    v_outcome JSON;
    v_changed INTEGER;
BEGIN
    -- First: a second call with this token waits here for the first one's end.
    INSERT INTO step_batches (token, made_at) VALUES (p_token, p_at) ON CONFLICT (token) DO NOTHING;
    IF NOT FOUND THEN
        RETURN (SELECT coalesce(b.results, array_fill('t'::TEXT, ARRAY[v_steps]))
                FROM step_batches AS b WHERE b.token = p_token);
    END IF;
    FOR n IN 1 .. v_steps LOOP
        BEGIN
            IF p_expected[n] = 0 THEN
                INSERT INTO sessions (peer, state, slots, flow_version, updated_at, version)
                VALUES (p_peer[n], p_state[n], p_slots[n], p_flow[n], p_updated[n], 1)
                ON CONFLICT (peer) DO NOTHING RETURNING version INTO v_version;
            ELSE
                UPDATE sessions SET state = p_state[n], slots = p_slots[n], flow_version = p_flow[n],
                    updated_at = p_updated[n], version = p_expected[n] + 1
                WHERE peer = p_peer[n] AND version = p_expected[n] RETURNING version INTO v_version;
            END IF;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'session changed' USING ERRCODE = '{_REFUSED}';
            END IF;
            IF p_event[n] IS NOT NULL THEN
                INSERT INTO inbox AS i (event_id, peer, received_at, handled_at, replies, version, handled_by)
                VALUES (p_event[n], p_peer[n], p_at, p_at, p_replies[n], v_version, p_process)
                ON CONFLICT (event_id) DO UPDATE SET handled_at = excluded.handled_at, body = NULL,
                    replies = excluded.replies, peer = coalesce(i.peer, excluded.peer), version = excluded.version,
                    handled_by = excluded.handled_by
                WHERE i.handled_at IS NULL;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'event handled' USING ERRCODE = '{_REFUSED}';
                END IF;
            END IF;
            IF p_rest[n] IS NOT NULL THEN
                v_rest := p_rest[n]::JSON;
                FOR v_row IN SELECT value FROM json_array_elements(v_rest -> 'outbox') LOOP
                    {_INSERT_OUTBOX_VALUES};
                END LOOP;
                v_row := v_rest -> 'put_binding';
                IF v_row IS NOT NULL THEN
                    INSERT INTO bindings (peer, email, caller_id, name, bound_at)
                    VALUES (v_row->>0, v_row->>1, v_row->>2, v_row->>3, (v_row->>4)::DOUBLE PRECISION)
                    ON CONFLICT (peer) DO UPDATE SET email = excluded.email, caller_id = excluded.caller_id,
                        name = excluded.name, bound_at = excluded.bound_at;
                END IF;
                v_row := v_rest -> 'put_owner';
                IF v_row IS NOT NULL THEN
                    INSERT INTO auth_owners (email, peer, verified_at)
                    VALUES (v_row->>0, v_row->>1, (v_row->>2)::DOUBLE PRECISION)
                    ON CONFLICT (email, peer) DO UPDATE SET verified_at = excluded.verified_at;
                END IF;
                v_row := v_rest -> 'delete_binding';
                IF v_row IS NOT NULL THEN
                    DELETE FROM bindings WHERE peer = v_row->>0;
                END IF;
                v_row := v_rest -> 'put_code';
                IF v_row IS NOT NULL THEN
                    INSERT INTO auth_codes (peer, email, code_hash, salt, created_at, expires_at, attempts)
                    VALUES (v_row->>0, v_row->>1, decode(v_row->>2, 'hex'), decode(v_row->>3, 'hex'),
                        (v_row->>4)::DOUBLE PRECISION, (v_row->>5)::DOUBLE PRECISION, (v_row->>6)::INTEGER)
                    ON CONFLICT (peer) DO UPDATE SET email = excluded.email, code_hash = excluded.code_hash,
                        salt = excluded.salt, created_at = excluded.created_at, expires_at = excluded.expires_at,
                        attempts = excluded.attempts;
                END IF;
                v_row := v_rest -> 'delete_code';
                IF v_row IS NOT NULL THEN
                    DELETE FROM auth_codes WHERE peer = v_row->>0;
                END IF;
                FOR v_row IN SELECT value FROM json_array_elements(v_rest -> 'watch') LOOP
                    {_INSERT_WATCH_VALUES};
                END LOOP;
                FOR v_row IN SELECT value FROM json_array_elements(v_rest -> 'counts') LOOP
                    INSERT INTO counters (name, day, count) VALUES (v_row->>0, v_row->>1, 1)
                    ON CONFLICT (name, day) DO UPDATE SET count = counters.count + 1;
                END LOOP;
                FOR v_outcome IN SELECT value FROM json_array_elements(v_rest -> 'outcomes') LOOP
                    -- Pending only: an outcome recorded meanwhile was told already, and the step
                    -- would tell it twice: it is undone as a whole.
                    v_row := v_outcome -> 'finish';
                    UPDATE outbox SET state = v_row->>0, result = v_row->>1, progress = v_row->>2,
                        attempts = (v_row->>3)::INTEGER, last_error = v_row->>4, held = FALSE,
                        told = told OR (v_row->>5)::BOOLEAN, updated_at = (v_row->>6)::DOUBLE PRECISION,
                        finished_at = (v_row->>7)::DOUBLE PRECISION
                    WHERE id = v_row->>8 AND state = 'pending';
                    GET DIAGNOSTICS v_changed = ROW_COUNT;
                    IF v_changed <> 1 THEN
                        RAISE EXCEPTION 'outcome recorded meanwhile' USING ERRCODE = '{_REFUSED}';
                    END IF;
                    FOR v_row IN SELECT value FROM json_array_elements(v_outcome -> 'notices') LOOP
                        INSERT INTO notices (id, peer, text, created_at, buttons)
                        VALUES (v_row->>0, v_row->>1, v_row->>2, (v_row->>3)::DOUBLE PRECISION, v_row->>4)
                        ON CONFLICT (id) DO NOTHING;
                    END LOOP;
                    FOR v_row IN SELECT value FROM json_array_elements(v_outcome -> 'follow_ups') LOOP
                        {_INSERT_OUTBOX_VALUES} ON CONFLICT (id) DO NOTHING;
                    END LOOP;
                    FOR v_row IN SELECT value FROM json_array_elements(v_outcome -> 'watch') LOOP
                        {_INSERT_WATCH_VALUES};
                    END LOOP;
                END LOOP;
                -- Already sent (or never kept) is no failure: the replies then go out live only.
                IF v_rest ->> 'reply_of' IS NOT NULL THEN
                    UPDATE inbox SET replies = p_replies[n], version = p_expected[n] + 1
                    WHERE event_id = v_rest ->> 'reply_of' AND replies IS NOT NULL;
                END IF;
            END IF;
            v_results := v_results || 't'::TEXT;
        EXCEPTION
            WHEN SQLSTATE '{_REFUSED}' THEN
                v_results := v_results || 'f'::TEXT;
                v_all_written := FALSE;
            WHEN integrity_constraint_violation OR data_exception OR program_limit_exceeded THEN
                v_results := v_results || (SQLSTATE || ' ' || SQLERRM);
                v_all_written := FALSE;
        END;
    END LOOP;
    IF NOT v_all_written THEN
        UPDATE step_batches SET results = v_results WHERE token = p_token;
    END IF;
    RETURN v_results;
END
$fn$"""

LOCK_FUNCTION: Final = """CREATE OR REPLACE FUNCTION sb_peer_locks(p_keys BIGINT[], p_takes BOOLEAN[], p_peers TEXT[])
RETURNS TABLE (o_taken BOOLEAN, o_peer TEXT, o_state TEXT, o_slots TEXT, o_flow_version TEXT,
               o_updated_at DOUBLE PRECISION, o_version BIGINT,
               o_bound_peer TEXT, o_email TEXT, o_caller_id TEXT, o_name TEXT, o_bound_at DOUBLE PRECISION)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_answers BOOLEAN[] := ARRAY[]::BOOLEAN[];
BEGIN
    -- Releases come first in the arrays: a peer let go and asked for again gets it.
    FOR n IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        IF p_takes[n] THEN
            v_answers := v_answers || pg_try_advisory_lock(p_keys[n]);
        ELSE
            v_answers := v_answers || pg_advisory_unlock(p_keys[n]);
        END IF;
    END LOOP;
    -- A statement of its own, so its snapshot is taken after the locks were had: a session (or a
    -- binding) committed before its lock was let go is seen.
    RETURN QUERY
        SELECT t.answer, s.peer, s.state, s.slots, s.flow_version, s.updated_at, s.version,
               b.peer, b.email, b.caller_id, b.name, b.bound_at
        FROM unnest(v_answers, p_peers) WITH ORDINALITY AS t(answer, peer, n)
        LEFT JOIN sessions AS s ON t.answer AND s.peer = t.peer
        LEFT JOIN bindings AS b ON t.answer AND b.peer = t.peer
        ORDER BY t.n;
END
$fn$"""


def new_token() -> uuid.UUID:
    return uuid.uuid4()


def commit_args(steps: Sequence[StepRow]) -> tuple[Any, ...]:
    """sb_commit_steps's arrays for these steps (after the token, process and time). Raises
    ValueError for a value JSON cannot carry exactly (a float that is not finite): the batch is
    then written the savepoint way."""
    return (
        [s.peer for s in steps], [s.state for s in steps], [s.slots for s in steps],
        [s.flow_version for s in steps], [s.updated_at for s in steps], [s.expected for s in steps],
        [s.event_id for s in steps], [s.replies for s in steps],
        [_rest_json(s) if s.has_rest else None for s in steps],
    )


def _rest_json(step: StepRow) -> str:
    rest: dict[str, Any] = {}
    if step.outbox:
        rest["outbox"] = step.outbox
    if step.sign_in is not None:
        rest.update(_sign_in(step.sign_in))
    if step.watch:
        rest["watch"] = step.watch
    if step.counts:
        rest["counts"] = step.counts
    if step.outcomes:
        rest["outcomes"] = [_outcome(o) for o in step.outcomes]
    if step.reply_of is not None and step.replies is not None:
        rest["reply_of"] = step.reply_of
    # Floats as repr writes them (float8 reads them back exactly); no NaN or infinity (ValueError).
    return json.dumps(rest, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _sign_in(rows: SignInRows) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, row in rows._asdict().items():
        if row is not None:
            found[name] = [v.hex() if isinstance(v, bytes) else v for v in row]
    return found


def _outcome(outcome: OutcomeRows) -> dict[str, Any]:
    return {"finish": outcome.finish, "notices": outcome.notices, "follow_ups": outcome.follow_ups,
            "watch": outcome.watch}


def step_results(answers: Sequence[str]) -> list[bool | Exception]:
    """sb_commit_steps's answers: 't' written, 'f' refused, else "SQLSTATE message", the
    step's own error (as asyncpg would have raised it)."""
    # Here, not at the top: the schema (which SQLite uses too) imports this module's SQL.
    import asyncpg  # type: ignore[import-untyped]

    results: list[bool | Exception] = []
    for answer in answers:
        if answer in ("t", "f"):
            results.append(answer == "t")
        else:
            code, _, message = answer.partition(" ")
            results.append(asyncpg.PostgresError.new({"C": code, "M": message, "S": "ERROR"}))
    return results
