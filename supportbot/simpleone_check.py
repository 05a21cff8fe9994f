"""`supportbot simpleone-check`: prove a SimpleOne instance before users arrive (read-only).

It tries what the bot will do, with the configured account: log in, read each table the bot
reads (ticket tables, people, attachments, the journal, state labels), look one caller up by
an address given on the command line, and read the state labels; and prints, line by line,
what works and what does not, and what to ask the instance's administrator for. Nothing is
written to the instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from adapters.simpleone.client import ATTACHMENT_TABLE, AccessDenied, RecordNotFound, SimpleOneClient
from engine.flows.model import TicketSettings
from engine.load import load_flow_set
from engine.ports import TicketSystemError, TicketSystemUnavailable
from supportbot.config import Config, ConfigError


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"  {'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


def _why(exc: TicketSystemError) -> str:
    text = str(exc)
    if isinstance(exc, TicketSystemUnavailable):
        return f"SimpleOne did not answer ({text})"
    if "401" in text:
        return f"the credentials were refused ({text})"
    if isinstance(exc, AccessDenied):
        return f"the account may not read it ({text}); ask for read rights"
    if isinstance(exc, RecordNotFound):
        return f"no such table on this instance ({text})"
    return text


async def check_instance(client: SimpleOneClient, settings: TicketSettings, email: str | None,
                         say: Callable[[str], None]) -> bool:
    """Run every check, saying each result as it comes; True if all passed."""
    findings: list[Finding] = []

    def note(finding: Finding) -> None:
        findings.append(finding)
        say(finding.line())

    try:
        await client.authenticate()
        # A token or Basic credentials are proved by a read, not by a login: one is made here.
        await client.list_records(settings.tables[0], limit=1, fields=("sys_id",))
        note(Finding(True, "login", f"as {client.account}"))
    except TicketSystemError as exc:
        if "401" in str(exc) or isinstance(exc, TicketSystemUnavailable):
            note(Finding(False, "login", _why(exc)))
            return False  # nothing else can work
        note(Finding(True, "login", f"as {client.account}"))  # refused the read, not the login
    tables: list[tuple[str, str]] = [(t, "tickets") for t in settings.tables]
    tables += [(t, "people (sign-in)") for t in settings.people_tables]
    tables += [(ATTACHMENT_TABLE, "files on tickets"), (settings.journal.table, "the tickets' journal"),
               (client.choice_table, "state labels")]
    seen: set[str] = set()
    for table, why in tables:
        if table in seen:
            continue
        seen.add(table)
        try:
            rows = await client.list_records(table, limit=1, fields=("sys_id",))
            note(Finding(True, f"read {table}", f"{why}; {'records visible' if rows else 'readable, empty'}"))
        except TicketSystemError as exc:
            note(Finding(False, f"read {table}", f"{why}: {_why(exc)}"))
    if email:
        try:
            person = await client.find_person(email, tables=settings.people_tables)
            if person is None:
                note(Finding(False, f"caller {email}", "not found (active=1) in " + ", ".join(settings.people_tables)))
            else:
                note(Finding(True, f"caller {email}", f"{person.name or '(no name)'}, sys_id {person.sys_id}"))
        except TicketSystemError as exc:
            note(Finding(False, f"caller {email}", _why(exc)))
    for table in settings.tables:
        client.forget_state_labels()
        labels = await client.state_labels(table)
        overrides = {**settings.status_labels.get("default", {}), **settings.status_labels.get(table, {})}
        shown = ", ".join(f"{code}={settings.status_label(table, code, label)}"
                          for code, label in sorted(labels.items()))
        if labels:
            note(Finding(True, f"state labels {table}", f"{len(labels)} from SimpleOne ({shown})"
                         + (f"; {len(overrides)} overridden in flows" if overrides else "")))
        else:
            note(Finding(False, f"state labels {table}", "none read from SimpleOne: users see the flows' "
                         "status_fallback labels (see the log line above)"))
    failed = [f for f in findings if not f.ok]
    tickets = ", ".join(settings.tables)
    say(f"  not checked (this check writes nothing): creating records in {tickets}, writing "
        f"{settings.comment_field} on them, uploading files to them")
    say(f"simpleone-check: {len(findings) - len(failed)} ok, {len(failed)} failed")
    return not failed



async def simpleone_check_command(config: Config, email: str | None, out: TextIO) -> int:
    """The command: 0 if everything works, 1 if something does not, 2 if it cannot start."""
    from supportbot.app import simpleone_client

    if config.simpleone is None:
        raise ConfigError(["SIMPLEONE_URL is not set: there is no instance to check"])
    loaded = load_flow_set([config.flows_dir])
    if loaded.flow_set is None:
        raise ConfigError([f"the flows in {config.flows_dir} have errors: run `flowlint check` first"])
    # Warnings (a table it cannot read, labels it cannot get) go to stderr beside the findings.
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s %(name)s: %(message)s")
    client = simpleone_client(config.simpleone)
    print(f"SimpleOne at {config.simpleone.url}", file=out)
    try:
        ok = await check_instance(client, loaded.flow_set.tickets, email, lambda line: print(line, file=out))
    finally:
        await client.close()
    return 0 if ok else 1
