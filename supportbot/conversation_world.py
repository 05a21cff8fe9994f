"""The world `flowlint test` runs conversations in: the SimpleOne emulator in this process
(on loopback, spoken to by the real client), SQLite in memory, a temporary file spool."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.simpleone.client import SimpleOneClient
from adapters.simpleone.journal import message_of
from adapters.spool import DiskSpool
from adapters.storage.sqlite import open_sqlite
from engine.ports import Journal, Storage
from supportbot.config import DEFAULT_MAIL_DOMAIN
from supportbot.demo import AGENT, FaultRule, MemoryMailSink, start_simpleone

if TYPE_CHECKING:
    from supportbot.demo import RunningEmulator


class EmulatorWorld:
    def __init__(self, emulator: RunningEmulator, client: SimpleOneClient, spool_dir: Path,
                 ticket_tables: Sequence[str]) -> None:
        self.emulator = emulator
        self.ticket_tables = tuple(ticket_tables)  # the flows' simpleone.ticket_tables
        self.tickets = client
        self._spool_dir = spool_dir
        self._domains = tuple(emulator.state.auto_users_domains)
        self.spool = DiskSpool(spool_dir)
        self._journal_fault: FaultRule | None = None

    @property
    def spool_dir(self) -> Path:
        """Where the spool keeps files (tests look at what is left there)."""
        return self._spool_dir

    @classmethod
    async def start(cls, ticket_tables: Sequence[str],
                    domains: Sequence[str] = (DEFAULT_MAIL_DOMAIN,)) -> EmulatorWorld:
        """ticket_tables: where the flows keep tickets (FlowSet.tickets.tables)."""
        emulator, client = await start_simpleone(domains, read_timeout=5.0)
        return cls(emulator, client, Path(tempfile.mkdtemp(prefix="supportbot-convtest-")), ticket_tables)

    async def fresh_storage(self) -> Storage:
        return await open_sqlite(":memory:")

    def fresh_mail_sink(self) -> MemoryMailSink:
        return MemoryMailSink()

    async def control(self, spec: Mapping[str, Any]) -> None:
        state = self.emulator.state
        if "outage" in spec:
            state.faults.set_outage(bool(spec["outage"]))
        if "auto_users" in spec:
            state.auto_users_domains = self._domains if spec["auto_users"] else ()
        if "add_person" in spec:
            person = spec["add_person"]
            state.add_user(str(person["email"]), str(person["first_name"]), str(person["last_name"]),
                           table=str(person.get("table", "user")))
        if "fail_next" in spec:
            state.faults.fail_next(int(spec["fail_next"]))
        if "fail_every" in spec:
            state.faults.set_fail_every(int(spec["fail_every"]))
        if "state_labels" in spec:
            # false: SimpleOne has no labels of its own for ticket states (the flows' fallback
            # is shown); true: it has them again.
            state.tables["sys_choice"].clear()
            if spec["state_labels"]:
                state.seed_state_choices()
            self.tickets.forget_state_labels()
        if "reject_uploads" in spec:
            state.faults.fail_next(int(spec["reject_uploads"]), status=400, method="POST",
                                   path_prefix="/v1/attachments/upload/")
        if "reject_next" in spec:
            state.faults.fail_next(int(spec["reject_next"]), status=400, method="POST", path_prefix="/rest/v1/table/")
        # An agent's comment first, then the state it leads to, as in SimpleOne's form.
        for key, action in (("agent_comment", "comment"), ("work_note", "note"), ("ticket_state", "state")):
            if key in spec:
                state.act_as_agent(action, self._newest_ticket(), str(spec[key]))
        if "ticket_active" in spec:
            # SimpleOne marks a closed ticket inactive (active=0): it leaves the open list.
            table, sys_id = state.find_ticket(self._newest_ticket())
            state.update(table, sys_id, {"active": "1" if spec["ticket_active"] else "0"}, author=AGENT)
        if "journal_down" in spec:
            # Every read of tickets' journals fails (HTTP 500) until it is switched off again.
            if self._journal_fault is not None:
                self._journal_fault.count = 0
                self._journal_fault = None
            if spec["journal_down"]:
                self._journal_fault = state.faults.fail_next(
                    1_000_000, path_prefix=f"/rest/v1/table/{Journal().table}")

    def _newest_ticket(self) -> str:
        """The sys_id of the ticket created last in the flows' tables."""
        state = self.emulator.state
        rows = [r for table in self.ticket_tables for r in state.records(table)]
        if not rows:
            raise AssertionError("no ticket in the emulator for an agent to write on")
        return max(rows, key=lambda r: (r.get("sys_created_at", ""), r["sys_id"]))["sys_id"]

    async def newest_ticket(self) -> tuple[str, list[str]] | None:
        state = self.emulator.state
        rows = [(table, r) for table in self.ticket_tables for r in state.records(table)]
        if not rows:
            return None
        table, newest = max(rows, key=lambda item: (item[1].get("sys_created_at", ""), item[1]["sys_id"]))
        public = f"{Journal().public}.{table}"
        comments = [message_of(item.get("content")) or "" for item in state.feed(table, newest["sys_id"])
                    if item["type_name"] == public]
        return newest.get("state", ""), comments

    async def count_tickets(self, email: str) -> int:
        state = self.emulator.state
        users = state.records("user", f"email={email}")
        if not users:
            return 0
        caller = users[0]["sys_id"]
        return sum(len(state.records(table, f"caller={caller}")) for table in self.ticket_tables)

    async def reset(self) -> None:
        self.emulator.state.reset()
        self._journal_fault = None
        self.emulator.state.auto_users_domains = self._domains
        self.tickets.forget_state_labels()

    async def close(self) -> None:
        await self.tickets.close()
        await self.emulator.close()
        shutil.rmtree(self._spool_dir, ignore_errors=True)
