"""`supportbot`: the bot's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

# Only what every command needs: each command imports its own modules (a start pays for what it uses).
from engine.flows.findings import FlowSetInvalid
from supportbot.config import DEFAULT_MAIL_DOMAIN, ConfigError, describe, is_postgres_url, load_config


def _setup_logging(level: str, log_format: str | None = None) -> None:
    from supportbot.logs import setup_logging

    setup_logging(level, log_format or os.environ.get("LOG_FORMAT", "text").strip().lower())


def quiet_transitions() -> None:
    """The third-party loggers (transitions, aiohttp…) at WARNING unless the log is at DEBUG."""
    from supportbot.logs import quiet_third_party

    quiet_third_party()


def _unless_set(name: str, chat_default: float, configured: float) -> float:
    return configured if os.environ.get(name) else chat_default


async def _chat(peer: str, verbose: bool) -> int:
    from adapters.console import ConsoleChat, stdin_lines
    from engine.flows.schema import ValidFlowCache, default_cache_dir
    from supportbot.app import build_app, install_reload_signal, reload_report

    config = load_config()
    if config.simpleone is None:
        # The in-process SimpleOne, played by /agent: what the agent does shows in seconds.
        config = replace(config, status_poll=_unless_set("STATUS_POLL_SECONDS", 3.0, config.status_poll),
                         comment_poll=_unless_set("COMMENT_POLL_SECONDS", 3.0, config.comment_poll))
    # Logs go to stderr; in the chat they would drown the dialogue unless asked for.
    _setup_logging(config.log_level if verbose else "WARNING", config.log_format)
    app = await build_app(config, terminal=sys.stdout, allow_emulator=True,
                          schema_cache=ValidFlowCache(default_cache_dir()))
    install_reload_signal(app.flows)
    interactive = sys.stdin.isatty()
    try:
        if interactive:
            print("supportbot terminal chat — " + "; ".join(describe(config)))
            print("type a message, a button's number or label; /help for console commands, /quit to leave")
        agent = None
        if app.emulator is not None:
            from supportbot.demo import agent_console

            agent = agent_console(app.emulator)
        chat = ConsoleChat(app.engine.handle, peer, sys.stdout, echo=not interactive, agent=agent,
                           reload=partial(reload_report, app.flows))
        app.tasks.append(asyncio.create_task(chat.show_notices(app.storage)))
        await chat.run(stdin_lines())
    finally:
        await app.close()
    return 0


async def _vk(mode: str, host: str = "", port: int = 0, path: str = "/", metrics_port: int | None = None) -> int:
    from engine.flows.schema import ValidFlowCache, default_cache_dir
    from supportbot.app import build_app, install_reload_signal
    from supportbot.config import require_vk
    from supportbot.health import new_telemetry
    from supportbot.vk_app import run_longpoll, serve_callback

    config = load_config()
    vk = require_vk(config, callback=mode == "serve")
    _setup_logging(config.log_level, config.log_format)
    log = logging.getLogger("supportbot")
    for line in describe(config):
        log.info("%s", line)
    api = urlsplit(vk.api_url)
    if api.scheme == "http" and api.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("VK_API_URL is plain http to %s: the token travels unencrypted", api.hostname)
    if vk.rate_limit > 20:
        log.warning("VK_RATE_LIMIT %g is above the ~20 calls/s VK allows a token: expect error 6", vk.rate_limit)
    telemetry = new_telemetry(config)
    app = await build_app(config, schema_cache=ValidFlowCache(default_cache_dir()), telemetry=telemetry)
    install_reload_signal(app.flows)
    try:
        if mode == "run":
            await run_longpoll(app, vk, telemetry, metrics_port if metrics_port is not None else config.metrics_port)
        else:
            await serve_callback(app, vk, host, port, path, telemetry)
    finally:
        await app.close()
    return 0


async def _migrate(from_sqlite: Path | None) -> int:
    from supportbot.app import open_storage

    config = load_config()
    url = config.database_url
    if from_sqlite is not None:
        if not is_postgres_url(url):
            raise ConfigError(["--from-sqlite copies into PostgreSQL: set SUPPORTBOT_DATABASE_URL=postgresql://…"])
        from adapters.storage.sqlite_to_postgres import TargetNotEmpty, copy_sqlite_to_postgres

        try:
            copied = await copy_sqlite_to_postgres(from_sqlite, url)
        except (FileNotFoundError, TargetNotEmpty) as exc:
            print(f"supportbot migrate: {exc}", file=sys.stderr)
            return 1
        print("copied: " + ", ".join(f"{name} {count}" for name, count in copied.items()))
        return 0
    storage = await open_storage(url, pool_size=2)  # opening applies what is missing
    await storage.close()
    print(f"schema up to date: {url.split('@')[-1]}")
    return 0


async def _emulator(host: str, port: int, domains: list[str], console: bool) -> int:
    from supportbot.demo import serve_simpleone

    _setup_logging(os.environ.get("LOG_LEVEL", "INFO").upper())
    await serve_simpleone(host, port, domains, console=console)
    return 0


def _stats(parser: argparse.ArgumentParser, since: str, fmt: str) -> int:
    from datetime import UTC, datetime

    from supportbot.stats_cli import BadSince, parse_since, stats_command

    try:  # checked before the database is opened: a typo is told at once
        parse_since(since, datetime.now(UTC).date())
    except BadSince as exc:
        parser.error(str(exc))
    return asyncio.run(stats_command(load_config(), since, fmt, sys.stdout))


def _loopback(host: str) -> bool:
    from adapters.web.server import is_loopback

    return is_loopback(host)


HEALTH_PATHS = ("/metrics", "/healthz", "/readyz")


def _add_health_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = sub.add_parser(
        "health", help="is the bot ready? exit 0, or 1 with the reason (for systemd and monitoring)",
        description="Ask a running bot's /readyz (--port: `serve`'s callback port or `run`'s metrics port; "
                    "--url: any address; with neither, METRICS_PORT if set), else check the configuration, "
                    "flows and database directly. Prints one line; exits 0 if ready, 1 if not.")
    where = health.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="the port on 127.0.0.1 whose /readyz to ask")
    where.add_argument("--url", help="the /readyz URL to ask, e.g. http://10.0.0.5:9464/readyz")


def _health(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from supportbot.health import health_command

    url: str | None = args.url
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            parser.error(f"--port must be from 1 to 65535, got {args.port}")
        url = f"http://127.0.0.1:{args.port}/readyz"
    elif url is not None and urlsplit(url).scheme not in ("http", "https"):
        parser.error(f"--url must be an http(s) URL such as http://127.0.0.1:8080/readyz, got {url!r}")
    config = None
    if url is None:
        try:
            config = load_config()
        except ConfigError as exc:  # exit 1, not 2: for systemd the bot is simply not ready
            print("not ready: " + "; ".join(exc.problems))
            return 1
        if config.metrics_port is not None:  # `run` serves /readyz there: ask it
            host = config.metrics_host if config.metrics_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
            url = f"http://{'[' + host + ']' if ':' in host else host}:{config.metrics_port}/readyz"
    return asyncio.run(health_command(config, url, sys.stdout))


def _add_forget(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    forget = sub.add_parser(
        "forget", help="delete what the bot keeps about one person (sessions, sign-in, notices, kept replies, "
                       "outbox items and files); prints what went",
        description="Delete one person's sessions and drafts, binding, sign-in codes and sign-in log, notices, "
                    "followed tickets, kept replies and outbox items (with their files). Refused while one of "
                    "their tickets or comments is still on its way to SimpleOne, unless --force.")
    person = forget.add_mutually_exclusive_group(required=True)
    person.add_argument("--peer", help="the chat, e.g. vk:123456 (the VK user's id)")
    person.add_argument("--email", help="a corporate address: every chat bound to it (chats only sent a code there lose"
                                             " just the rows under the address)")
    forget.add_argument("--force", action="store_true",
                        help="delete unfinished outbox items too (their tickets or comments never reach SimpleOne)")


def main(argv: Sequence[str] | None = None) -> int:
    from supportbot.demo import CONSOLE_HELP  # the emulator's agent console, for its --help

    parser = argparse.ArgumentParser(prog="supportbot", description="RANEPA IT-support bot")
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="talk to the bot in this terminal (embedded defaults, no outside service)")
    chat.add_argument("--peer", default=os.environ.get("USER", "local"),
                      help="who you are to the bot (each peer has its own session)")
    chat.add_argument("-v", "--verbose", action="store_true", help="show the bot's log on stderr")
    emu = sub.add_parser(
        "simpleone-emulator", help="serve a SimpleOne API emulator for tests and demos",
        description="Serve a SimpleOne API emulator for tests and demos. Unless --no-console, stdin is\n"
                    "an agent console: type commands to act as a support agent on the bot's tickets.",
        epilog=CONSOLE_HELP + "\n\nThe same over HTTP: POST /_emulator/agent "
               '{"action": "comment"|"note"|"state", "ticket": "INC0000001", "value": "..."}',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8090)
    emu.add_argument("--domains", default=DEFAULT_MAIL_DOMAIN,
                     help="comma-separated mail domains whose users exist on first look-up")
    emu.add_argument("--no-console", action="store_true", help="do not read agent commands from stdin")
    run = sub.add_parser("run", help="the bot in the VK community over Bots Long Poll (one process per community)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve /metrics, /healthz and /readyz on this port of METRICS_HOST (default: METRICS_PORT; "
                          "unset: not served)")
    serve = sub.add_parser("serve", help="the Callback API endpoint for the VK community")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (behind a TLS proxy)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--path", default="/", help="URL path VK posts to")
    sub.add_parser("config", help="check the configuration and print it (secrets hidden)")
    migrate = sub.add_parser("migrate", help="bring the database's schema up to date (the bot also does at start)")
    migrate.add_argument("--from-sqlite", metavar="FILE", type=Path,
                         help="copy an embedded SQLite deployment into the (empty) PostgreSQL database")
    outbox = sub.add_parser("outbox", help="tickets and comments waiting for SimpleOne: list, show, retry, drop")
    outbox_sub = outbox.add_subparsers(dest="outbox_action", required=True)
    listing = outbox_sub.add_parser("list", help="items waiting or failed (by default)")
    listing.add_argument("--state", choices=("open", "pending", "failed", "done", "all"), default="open")
    for name, text in (("show", "one item in full (its payload holds what the user typed)"),
                       ("retry", "try a failed item again at once"),
                       ("drop", "delete a pending or failed item and its files; the user is not told")):
        outbox_sub.add_parser(name, help=text).add_argument("id")
    check = sub.add_parser("simpleone-check", help="try the configured SimpleOne instance, read-only: login, "
                           "table rights, a caller look-up, state labels")
    check.add_argument("--email", help="a corporate address to look up as a caller, as sign-in will")
    studio = sub.add_parser(
        "studio", help="a page for support leads: the flows' map, findings, a simulator, the conversation tests",
        description="Serve the studio page: the flows' map and findings, live as files are saved; a chat "
                    "with the bot on these flows (SimpleOne emulated in process unless SIMPLEONE_URL is set); "
                    "the conversation tests of FLOWS_DIR/tests.")
    studio.add_argument("flows_dir", nargs="?", type=Path, metavar="FLOWS_DIR",
                        help="the flows to work on (default: FLOWS_DIR from the configuration, or flows/)")
    studio.add_argument("--host", default="127.0.0.1", help="address to listen on (not loopback: needs --token)")
    studio.add_argument("--port", type=int, default=8088)
    studio.add_argument("--token", help="the token the page asks for (or SUPPORTBOT_STUDIO_TOKEN)")
    stats = sub.add_parser(
        "stats", help="figures for the support lead: tickets by day and group, sign-ins, time to the number, "
                      "hints, ratings, free text, where people give up; and what the flows count",
        description="Figures for the support lead from the counters the bot keeps per day (UTC), kept "
                    "STATS_KEEP_DAYS days (default 400).")
    stats.add_argument("--since", default="7d", help="7d (days, today included), 4w (weeks) or a first day "
                                                      "2026-11-01 (default 7d)")
    stats.add_argument("--days", type=int, help="the same as --since Nd (older scripts)")
    stats.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="a readable table (default), or csv / json for tools")
    _add_health_parser(sub)
    _add_forget(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "chat":
            return asyncio.run(_chat(f"console:{args.peer}", args.verbose))
        if args.command == "run":
            if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
                parser.error(f"--metrics-port must be from 1 to 65535, got {args.metrics_port}")
            return asyncio.run(_vk("run", metrics_port=args.metrics_port))
        if args.command == "health":
            return _health(parser, args)
        if args.command == "serve":
            if not args.path.startswith("/"):
                parser.error(f"--path must start with '/', got {args.path!r}")
            if args.path.rstrip("/") in HEALTH_PATHS:
                parser.error(f"--path {args.path} is where metrics and health are served; choose another")
            if args.path.rstrip("/") == "/simpleone/events":
                parser.error("--path /simpleone/events is where SimpleOne's events are taken; choose another")
            return asyncio.run(_vk("serve", args.host, args.port, args.path))
        if args.command == "simpleone-emulator":
            domains = [d.strip() for d in args.domains.split(",") if d.strip()]
            return asyncio.run(_emulator(args.host, args.port, domains, not args.no_console))
        if args.command == "migrate":
            return asyncio.run(_migrate(args.from_sqlite))
        if args.command == "outbox":
            from supportbot.outbox_cli import outbox_command

            return asyncio.run(outbox_command(load_config(), args.outbox_action, getattr(args, "id", None),
                                              getattr(args, "state", "open"), sys.stdout))
        if args.command == "simpleone-check":
            from supportbot.simpleone_check import simpleone_check_command

            return asyncio.run(simpleone_check_command(load_config(), args.email, sys.stdout))
        if args.command == "studio":
            from supportbot.studio_cli import TOKEN_ENV, studio_command

            token = args.token or os.environ.get(TOKEN_ENV, "")
            if not _loopback(args.host) and not token:
                parser.error(f"--host {args.host} is not loopback: give --token (or {TOKEN_ENV}) too")
            if args.flows_dir is not None and not args.flows_dir.is_dir():
                parser.error(f"FLOWS_DIR {str(args.flows_dir)!r} is not a directory")
            _setup_logging(os.environ.get("LOG_LEVEL", "INFO").upper())
            return asyncio.run(studio_command(load_config(), args.flows_dir, args.host, args.port, token))
        if args.command == "stats":
            return _stats(parser, args.since if args.days is None else f"{args.days}d", args.format)
        if args.command == "forget":
            from supportbot.forget_cli import check_person, forget_command

            if (problem := check_person(args.peer, args.email)) is not None:
                parser.error(problem)
            return asyncio.run(forget_command(load_config(), args.peer, args.email, args.force, sys.stdout))
        for line in describe(load_config()):  # the "config" command
            print(line)
        return 0
    except ConfigError as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 2
    except FlowSetInvalid as exc:
        print(f"supportbot: cannot start, {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
