"""The outbox's due query on a large outbox in PostgreSQL: its plan, and its time.

Every worker runs the claim (`outbox_take`: the due query with FOR UPDATE SKIP LOCKED, then the
update) every poll, so it must cost what the pending items cost, not what the whole table holds.
A scratch database on the server SUPPORTBOT_TEST_POSTGRES_URL (or --postgres) names is migrated
and filled with --rows outbox rows, nearly all done or failed (the history prune has not removed
yet), plus pending ones: --due due now (a tenth of them on records with an older pending item,
a tenth held by processes that are gone), --waiting due later (backing off), and an inbox of the
same size (the held-by-gone branch looks into it). Then ANALYZE, EXPLAIN (ANALYZE, BUFFERS) of
the due query and of the claim (rolled back), and the median time of --repeat runs of each.
The --unsent inbox rows whose replies are not sent yet are other users' (the held-by-gone
branch's NOT EXISTS finds none: its worst case).
The database is dropped afterwards. Numbers only; nothing is asserted.

Run: .venv/bin/python bench/outbox_due.py [--rows 200000] [--due 300] [--waiting 2000] [--unsent 200]
     [--no-analyze] [--repeat 50] [--plans] (print the plans in full)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # type: ignore[import-untyped]

from adapters.storage.dialect import POSTGRESQL
from adapters.storage.postgres import _OUTBOX_TAKE, open_postgres
from adapters.storage.sql import OUTBOX_DUE
from emulators.scratch_postgres import create_scratch_database, drop_database

NOW = 1_800_000_000.0
LEASES = json.dumps({"ticket.create": 60.0, "ticket.comment": 60.0, "ticket.upload": 300.0})

# seq order is insertion order: the history first, then what is pending (as in a real outbox,
# where old items are finished). Kinds and records as the bot writes them; payloads of a
# realistic size (a ticket's fields), so that a scan of the table costs what it would.
FILL = """
INSERT INTO outbox (id, peer, kind, payload, state, attempts, next_at, created_at, updated_at, finished_at,
                    last_error, progress, result, told, record, held, held_by)
SELECT 'h' || n, 'vk:' || (n % 5000), CASE WHEN n % 3 = 0 THEN 'ticket.create' ELSE 'ticket.comment' END,
       '{"fields": {"description": "' || repeat('x', 400) || '"}}',
       CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'done' END, 1, $1 - 86400 + n * 0.1, $1 - 86400 + n * 0.1,
       $1 - 86400 + n * 0.1, $1 - 86400 + n * 0.1, '', '{}', '{}', TRUE,
       CASE WHEN n % 3 = 0 THEN NULL ELSE 'itsm_incident/' || (n % 20000) END, FALSE, NULL
FROM generate_series(1, $2::int) AS n
"""
PENDING = """
INSERT INTO outbox (id, peer, kind, payload, state, attempts, next_at, created_at, updated_at, finished_at,
                    last_error, progress, result, told, record, held, held_by)
SELECT 'p' || n, 'vk:' || (n % 5000), CASE WHEN n % 3 = 0 THEN 'ticket.create' ELSE 'ticket.comment' END,
       '{"fields": {"description": "' || repeat('x', 400) || '"}}', 'pending',
       CASE WHEN n % 10 = 1 THEN 1 ELSE 0 END,
       -- due: now or before (a tenth held by a gone process, its lease not yet out); waiting: later
       CASE WHEN n > $2 THEN $1 + 60 WHEN n % 10 = 1 THEN $1 + 30 ELSE $1 - 5 END,
       $1 - 60, $1 - 60, NULL, '', '{}', NULL, FALSE,
       CASE WHEN n % 3 = 0 THEN NULL ELSE 'itsm_incident/p' || (n % ($2 / 10 + 1)) END,
       n % 10 = 1 AND n <= $2, CASE WHEN n % 10 = 1 AND n <= $2 THEN 'gone:' || n END
FROM generate_series(1, $2::int + $3::int) AS n
"""
INBOX = """
INSERT INTO inbox (event_id, peer, body, received_at, handled_at, replies, sent_at, handled_by)
SELECT 'e' || n, CASE WHEN n <= $3 THEN 'vk:' || (5000 + n) ELSE 'vk:' || (n % 5000) END, '{}',
       $1 - 86400 + n * 0.1, $1 - 86400 + n * 0.1,
       CASE WHEN n <= $3 THEN '[]' END, $1 - 86400 + n * 0.1, 'gone:' || (n % 7)
FROM generate_series(1, $2::int) AS n
"""


async def fill(dsn: str, rows: int, due: int, waiting: int, unsent: int, analyze: bool) -> float:
    storage = await open_postgres(dsn)  # migrates the schema
    await storage.close()
    conn = await asyncpg.connect(dsn)
    try:
        start = time.perf_counter()
        await conn.execute(FILL, NOW, rows)
        await conn.execute(PENDING, NOW, due, waiting)
        await conn.execute(INBOX, NOW, rows, unsent)
        await conn.execute("VACUUM ANALYZE" if analyze else "VACUUM")
        return time.perf_counter() - start
    finally:
        await conn.close()


def summary(plan: list[Any]) -> tuple[float, int, list[str]]:
    """Execution time, shared buffers touched, and each scan node: kind, relation, index, rows."""
    top = plan[0]
    scans: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Scan" in node["Node Type"]:
            where = node.get("Index Name") or node.get("Relation Name") or node.get("Function Name", "")
            scans.append(f"{node['Node Type']} {where}: {node['Actual Rows']} rows x {node['Actual Loops']}")
        for child in node.get("Plans", ()):
            walk(child)

    walk(top["Plan"])
    buffers = top["Plan"].get("Shared Hit Blocks", 0) + top["Plan"].get("Shared Read Blocks", 0)
    return top["Execution Time"], buffers, scans


async def rolled_back(conn: Any, sql: str, *args: Any) -> str:
    """The statement's output (one column, its rows joined by lines), its changes rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        return "\n".join(str(r[0]) for r in await conn.fetch(sql, *args))
    finally:
        await tr.rollback()


async def measure(dsn: str, repeat: int, plans: bool) -> None:
    due_sql = POSTGRESQL.sql(OUTBOX_DUE)
    conn = await asyncpg.connect(dsn)
    try:
        for name, sql, args in (
            ("due", due_sql, (NOW, 100)),
            ("take", _OUTBOX_TAKE, (NOW, 100, LEASES, 300.0, "bench")),
        ):
            # Rolled back: the claim's EXPLAIN ANALYZE runs its update.
            plan = json.loads(await rolled_back(conn, f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args))
            ms, buffers, scans = summary(plan)
            print(f"{name}: EXPLAIN ANALYZE {ms:.2f} ms, {buffers} buffers")
            for scan in scans:
                print(f"  {scan}")
            if plans:
                print(await rolled_back(conn, f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args))
            times = []
            for _ in range(repeat):
                tr = conn.transaction()
                await tr.start()
                start = time.perf_counter()
                got = await conn.fetch(sql, *args)
                times.append((time.perf_counter() - start) * 1000)
                await tr.rollback()
            print(f"  {len(got)} rows; median {statistics.median(times):.2f} ms, p90 "
                  f"{sorted(times)[int(len(times) * 0.9)]:.2f} ms over {repeat} runs")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL"))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--waiting", type=int, default=2000)
    parser.add_argument("--unsent", type=int, default=200, help="inbox rows whose replies are not sent yet")
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="leave the tables without statistics (as before autovacuum's first ANALYZE)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--plans", action="store_true")
    args = parser.parse_args()
    if not args.postgres:
        parser.error("give --postgres or SUPPORTBOT_TEST_POSTGRES_URL (a server's admin URL)")
    dsn = await create_scratch_database(args.postgres)
    try:
        seconds = await fill(dsn, args.rows, args.due, args.waiting, args.unsent, args.analyze)
        print(f"{args.rows} finished rows, {args.due} due, {args.waiting} waiting, {args.unsent} unsent replies"
              f"{'' if args.analyze else ', no statistics'}; filled in {seconds:.1f} s")
        await measure(dsn, args.repeat, args.plans)
    finally:
        await drop_database(args.postgres, dsn)


if __name__ == "__main__":
    asyncio.run(main())
