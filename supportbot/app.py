"""Wiring: configuration in, a running engine with its adapters out. The only place that
knows every adapter; the engine stays unaware of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TextIO

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.simpleone.timed import timed_ticket_system
from adapters.spool import DiskSpool
from adapters.storage.sqlite import open_sqlite, sqlite_path_from_url
from engine.actions.context import AuthPolicy, Services
from engine.actions.ticket_items import UPLOAD, spooled_files
from engine.dialogue.runtime import Engine
from engine.figures import utc_day
from engine.flows.schema import ValidFlowCache
from engine.ports import NULL_TELEMETRY, OUTBOX_FAILED, OUTBOX_PENDING, Mailer, Storage, Telemetry
from engine.reload import FlowHolder
from engine.work.leases import JobLease
from engine.work.outbox import OutboxPolicy, OutboxWorker
from engine.work.status_watch import StatusWatcher
from engine.work.ticket_outbox import ticket_outbox
from supportbot import demo
from supportbot.config import Config, ConfigError, Retention, SimpleOneSettings, SmtpSettings, is_postgres_url

log = logging.getLogger(__name__)


@dataclass(slots=True)
class App:
    config: Config
    engine: Engine
    flows: FlowHolder
    storage: Storage
    tickets: SimpleOneClient
    outbox: OutboxWorker
    emulator: demo.RunningEmulator | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    telemetry: Telemetry = NULL_TELEMETRY  # what the channels report metrics to

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.tickets.close()
        await self.storage.close()
        if self.emulator is not None:
            await self.emulator.close()


async def open_storage(url: str, *, pool_size: int = 10,
                       synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> Storage:
    """synchronous: SQLite's (SQLITE_SYNCHRONOUS); PostgreSQL's durability is the server's."""
    if url.startswith("sqlite:"):
        try:
            path = sqlite_path_from_url(url)
        except ValueError as exc:
            raise ConfigError([f"SUPPORTBOT_DATABASE_URL: {exc}"]) from exc
        return await open_sqlite(path, synchronous=synchronous)
    if is_postgres_url(url):
        from adapters.storage.postgres import OPEN_ERRORS, open_postgres  # asyncpg only where it is used

        try:
            return await open_postgres(url, max_size=pool_size)
        except OPEN_ERRORS as exc:
            problem = f"SUPPORTBOT_DATABASE_URL: cannot use PostgreSQL ({type(exc).__name__}: {exc})"
            raise ConfigError([problem]) from exc
    raise ConfigError([f"SUPPORTBOT_DATABASE_URL: {url.split(':', 1)[0]} storage is not supported; "
                       "use sqlite:///FILE or postgresql://USER@HOST:PORT/DB"])


def make_mailer(smtp: SmtpSettings | None, terminal: TextIO) -> Mailer:
    if smtp is None:
        return demo.terminal_mailer(terminal)
    from adapters.smtp import SmtpMailer  # aiosmtplib and email.mime only where mail is sent

    return SmtpMailer(smtp.host, smtp.port, from_addr=smtp.sender, username=smtp.user, password=smtp.password,
                      starttls=smtp.starttls, use_tls=smtp.tls, timeout=smtp.timeout)


def simpleone_client(so: SimpleOneSettings) -> SimpleOneClient:
    """The client for the configured instance (the bot's, and `simpleone-check`'s)."""
    return SimpleOneClient(SimpleOneConfig(
        so.url, token=so.token, username=None if so.token else so.username,
        password=None if so.token else so.password, auth=so.auth, read_timeout=so.timeout,
        ca_bundle=so.ca_bundle, read_budget=so.read_budget, labels_ttl=so.labels_ttl,
        choice_query=so.choice_query))


async def build_app(config: Config, *, terminal: TextIO = sys.stdout, allow_emulator: bool = False,
                    clock: Callable[[], float] | None = None, schema_cache: ValidFlowCache | None = None,
                    telemetry: Telemetry = NULL_TELEMETRY) -> App:
    """Everything the bot needs, started. allow_emulator: run SimpleOne in process if no URL is set.
    schema_cache: flow files validated before (the commands keep one; see ValidFlowCache).
    telemetry: where the engine, the workers and SimpleOne's calls report (metrics)."""
    holder = FlowHolder([config.flows_dir], schema_cache=schema_cache)
    holder.load()
    emulator: demo.RunningEmulator | None = None
    if config.simpleone is None:
        if not allow_emulator:
            raise ConfigError(["SIMPLEONE_URL is required (only `supportbot chat` runs an emulator in process)"])
        emulator, client = await demo.start_simpleone(config.auth_domains)
        log.info("SimpleOne emulator running in process at %s", emulator.url)
    else:
        client = simpleone_client(config.simpleone)
    storage = await open_storage(config.database_url, pool_size=config.pool_size,
                                 synchronous=config.sqlite_synchronous)
    spool = DiskSpool(config.spool_dir, max_bytes=config.spool_max_bytes)
    # SimpleOne's calls timed for metrics; the client itself is closed by App.close.
    tickets = client if telemetry is NULL_TELEMETRY else timed_ticket_system(client, telemetry)
    services = Services(
        storage=storage,
        tickets=tickets,
        mailer=make_mailer(config.smtp, terminal),
        spool=spool,
        auth=AuthPolicy(config.auth_domains, config.auth_code_ttl, config.auth_max_attempts,
                        config.auth_resend_cooldown, config.auth_max_codes_per_hour),
        idle_timeout=config.session_idle,
        telemetry=telemetry,
    )
    if clock is not None:
        services.clock = clock
    # An attempt makes up to three calls (look up, write, settle): its time limit follows the
    # client's, or a slow SimpleOne would have every attempt cut short and never get a ticket.
    call = config.simpleone.timeout if config.simpleone else 30.0
    policy = OutboxPolicy(wait=config.outbox_wait, give_up_after=config.outbox_give_up,
                          backoff_cap=config.outbox_retry_max, default_timeout=3 * call + 5,
                          timeouts={UPLOAD: max(120.0, 4 * call)})
    worker = ticket_outbox(services, holder, policy)
    app = App(config, Engine(holder, services), holder, storage, client, worker, emulator, telemetry=telemetry)
    if config.flows_watch:
        app.tasks.append(asyncio.create_task(holder.watch()))
    app.tasks.append(asyncio.create_task(worker.run()))
    polls = [p for p in (config.status_poll, config.comment_poll) if p > 0]
    if polls:
        # One round reads states and journals: as often as the more frequent of the two asks.
        watcher = StatusWatcher(storage, tickets, holder, interval=min(polls), clock=services.clock,
                                comments=config.comment_poll > 0)
        app.tasks.append(asyncio.create_task(watcher.run()))
    app.tasks.append(asyncio.create_task(housekeeping(storage, spool, config.session_idle,
                                                          retention=config.retention,
                                                          keep_counts=config.stats_keep_days)))
    return app


async def outbox_files(storage: Storage, failed_since: float = 0.0) -> set[str]:
    """Spool files that outbox items still have to upload: housekeeping must keep them. Those of
    items given up on (failed) are kept while an admin may still retry them: those that failed
    at or after failed_since."""
    keep: set[str] = set()
    for item in await storage.outbox_list((OUTBOX_PENDING, OUTBOX_FAILED), limit=100_000):
        if item.state == OUTBOX_PENDING or item.updated_at >= failed_since:
            keep.update(f.id for f in spooled_files(item.payload.get("files")))
    return keep


async def housekeeping(storage: Storage, spool: DiskSpool, idle: float, every: float = 3600.0,
                       retention: Retention | None = None, *, keep_counts: int = 400) -> None:
    """Keep the inbox, the sign-in tables, the counters and the spool bounded, and personal data
    no longer than the retention says (docs/operations.md, Personal data).

    Handled event ids, kept replies, sent notices and finished items go after retention.events
    (at least a day: VK resends within hours); sessions, with their drafts, after
    retention.drafts idle; codes once expired. Files of drafts go after a day (or two idle
    timeouts): by then the dialogue that held them has expired; uploaded ones went at once.
    Counters go after `keep_counts` days (STATS_KEEP_DAYS).
    """
    kept = retention or Retention()
    # Several workers: one prunes at a time (each still sweeps its own spool, if not shared).
    lease = JobLease(storage, "housekeeping", ttl=every / 2)
    while True:
        try:
            now = time.time()
            removed = 0
            if await lease.hold():
                removed = await storage.prune(now - kept.events, sessions_before=now - kept.drafts, codes_before=now)
                removed += await storage.prune_counts(counts_horizon(now, keep_counts))
            swept = await spool.sweep(max(86400.0, 2 * idle),
                                      keep=await outbox_files(storage, now - kept.failed_files))
            if removed or swept:
                log.info("housekeeping: %d old rows, %d abandoned files removed", removed, swept)
        except Exception:
            log.exception("housekeeping failed; will try again")
        await asyncio.sleep(every)


def counts_horizon(now: float, keep_days: int) -> str:
    """The first day whose counters are kept: today and the keep_days - 1 days before it."""
    return utc_day(now - (keep_days - 1) * 86400)


_reloads: set[asyncio.Task[object]] = set()


async def reload_report(holder: FlowHolder) -> str:
    """Re-read the flows as SIGHUP does (the terminal chat's /reload); what happened, to print."""
    result = await holder.reload()
    if result.flow_set is None:
        errors = result.errors or result.findings
        lines = [f"flows refused: {len(errors)} error(s); the previous flows keep running"]
        lines += [str(f) for f in errors[:10]]
        if len(errors) > 10:
            lines.append(f"… and {len(errors) - 10} more: flowlint check")
        return "\n".join(lines)
    warnings = len(result.findings)
    return (f"flows reloaded: version {result.flow_set.version}, {len(result.flow_set.states)} steps"
            + (f", {warnings} warning(s): flowlint check" if warnings else ""))


def install_reload_signal(holder: FlowHolder) -> None:
    """SIGHUP re-reads the flows; an invalid set is refused and logged, the old one keeps serving."""
    loop = asyncio.get_running_loop()

    def reload() -> None:
        task: asyncio.Task[object] = loop.create_task(holder.reload())
        _reloads.add(task)  # keep a reference until it is done, and hear of its failure
        task.add_done_callback(_reload_done)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, reload)


def _reload_done(task: asyncio.Task[object]) -> None:
    _reloads.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("flow reload failed: %r", task.exception())
