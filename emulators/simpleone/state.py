"""The SimpleOne emulator's data: tables, journals, attachments, tokens, and how records render.

Pure in-memory state with no HTTP in it, so tests can seed and inspect it directly. Values are
stored as strings, the way the Table API returns them: booleans as "1"/"0" (so `active=1` works
in a query), numbers as their decimal text, references as the referenced sys_id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from emulators.simpleone.faults import Faults
from emulators.simpleone.query import Query, as_text, parse_query

Clock = Callable[[], datetime]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

NUMBER_PREFIXES: Mapping[str, str] = {
    "itsm_incident": "INC",
    "itsm_request": "REQ",
    "itsm_inquiry": "INQ",
    "itsm_task": "TASK",
}
TICKET_DEFAULTS: Mapping[str, str] = {"state": "-2", "active": "1"}  # -2 = Registered
DEFAULT_REFERENCES: Mapping[str, str] = {
    "caller": "user",
    "opened_by": "user",
    "assigned_user": "user",
    "assignment_group": "sys_group",
    "service": "c_service",
    # [seen: shared/reference/simpleone-api.md, "Comments"] a journal entry's type_id references
    # its activity type, whose `name` a query dot-walks to (`type_id.name=…`). The activity
    # type's and the tables' table names are [guess]: only the `name` column is seen.
    "type_id": "sys_activity_type",
    "table_id": "sys_db_table",
}
# [doc] `employee` (Сотрудники) is a child table of `user` (shared/reference/simpleone-api.md,
# "ITSM tables"): an employee's record is a user's record too, found under the same sys_id in
# both tables; a plain user (a student) is only in `user`. Child table -> parent table.
PARENT_TABLES: Mapping[str, str] = {"employee": "user"}
DEFAULT_TABLES: tuple[str, ...] = (*NUMBER_PREFIXES, "user", "employee", "sys_attachment", "sys_group", "c_service",
                                   "sys_choice", "sys_activity_feed_item", "sys_activity_type",
                                   "sys_db_table")
# A choice field's labels live in `sys_choice` [doc: shared/reference/simpleone-api.md, "State
# codes"]: table_id, column_id, value, language → title. Here table_id and column_id hold the
# table's and the column's names [guess: a real instance may hold references to sys_db_table and
# sys_db_column]. The state names are the documented ones [doc], in Russian [guess: the
# instance's own wording]; the codes -2, 0, 2, 3, 4, 7, 10 were seen on real instances [seen],
# 5 and 8 are [guess].
CHOICE_TABLE = "sys_choice"
STATE_TITLES: Mapping[str, str] = {
    "-2": "Зарегистрирован",  # Registered
    "0": "Назначен",  # Assigned
    "2": "В работе",  # In Progress
    "3": "Требуется информация",  # Information Needed
    "4": "Отложен",  # Postponed
    "5": "Внешняя обработка",  # External Processing
    "7": "Выполнен",  # Completed
    "8": "Отклонен пользователем",  # Rejected by User
    "10": "Закрыт",  # Closed
}
# [guess] States that end a ticket: ITSM's task logic clears `active` when a ticket is closed or
# cancelled (`10` is "Отменено"/closed in the doc examples); a state set back revives it.
INACTIVE_STATES: frozenset[str] = frozenset({"10", "Closed", "Cancelled"})
CHOICE_LANGUAGE = "ru"
JOURNAL_FIELDS: frozenset[str] = frozenset({"additional_comments", "work_notes"})
# [seen, same page] journal entries are records of this table: type_id, content (JSON text),
# table_id, record_id (the ticket's sys_id), sys_created_at, sys_created_by.
FEED_TABLE = "sys_activity_feed_item"
ACTIVITY_TYPE_TABLE = "sys_activity_type"
DB_TABLE = "sys_db_table"
HISTORY_TYPE = "history"  # [seen] the activity type of field changes
# [guess] which columns write a `history` entry when they change: real instances audit the
# columns their admins choose; the emulator audits the state, what the bot tells users about.
HISTORY_FIELDS: tuple[str, ...] = ("state",)
AGENT = "agent"  # sys_created_by of what a test or a human does as a support agent
# What an agent may do to a ticket through the control API and the console: the field it sets.
AGENT_ACTIONS: Mapping[str, str] = {"comment": "additional_comments", "note": "work_notes", "state": "state"}
# Written by the platform, never by a Table API client.
SYSTEM_FIELDS: frozenset[str] = frozenset({"sys_id", "number", "sys_created_at", "sys_updated_at"})
ATTACHMENT_TABLE = "sys_attachment"
# What the undocumented reply to an upload carries: "records" = the envelope with the new
# sys_attachment records, "empty" = HTTP 200 with no body at all. [guess] both; a client must
# treat any 2xx as success and depend on neither (shared/reference/simpleone-api.md, Attachments).
UploadReply = Literal["records", "empty"]
UPLOAD_REPLIES: tuple[str, ...] = get_args(UploadReply)


def document_id(table_id: str, record_id: str) -> str:
    """A record's Document ID, as `sys_attachment.record_document_id` holds it.

    [doc] the field holds a Document ID: a 32-character UUID built from the table's and the
    record's ids (`ss.getDocIdByIds`), not the record's sys_id. [guess] the derivation: the
    instance's is unpublished, so here it is the MD5 of both ids, as 32 hex digits — what
    matters is that it is neither the sys_id nor computable by a client that does not know it.
    """
    return hashlib.md5(f"{table_id}:{record_id}".encode(), usedforsecurity=False).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand, to simulate token expiry or the passing of days."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 15, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ApiError(Exception):
    """A request the emulator refuses; becomes a JSON error body with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class JournalEntry:
    field: str  # "additional_comments" or "work_notes"
    text: str
    author: str
    created_at: str


@dataclass(slots=True)
class _Token:
    username: str
    generation: int
    issued_at: datetime


@dataclass(slots=True)
class RequestLogEntry:
    method: str
    path: str
    status: int = 0  # 0 while in progress; 499 for a connection dropped or hung by a fault


# The emulator's own account, printed by serve_forever: a test double's, not a secret.
DEMO_USER = "bot"
DEMO_PASSWORD = "bot-password"


@dataclass(slots=True, repr=False)
class EmulatorState:
    username: str = DEMO_USER
    password: str = DEMO_PASSWORD
    static_token: str | None = None
    token_ttl: float | None = None  # seconds; None = tokens live until expired by a fault switch
    auto_users_domains: Sequence[str] = ()
    # Where auto-created people go: "employee" (found in `employee` and `user`) or "user" (a
    # student, found only in `user`).
    auto_users_table: str = "employee"
    clock: Clock = utc_now
    references: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REFERENCES))
    max_upload_bytes: int = 10 * 1024 * 1024
    # [seen] a comment entry's content is {"message": "…"} or {"message": {"display_value": "…"}};
    # which one an instance writes is unknown, so either can be chosen (True: the nested one).
    nested_journal_content: bool = False
    upload_reply: UploadReply = "records"
    faults: Faults = field(default_factory=Faults)
    tables: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    journals: dict[tuple[str, str], list[JournalEntry]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    request_log: list[RequestLogEntry] = field(default_factory=list)
    # What every successful reply carries in its `messages` list: [doc] the documented examples
    # carry `"messages": []`; tests put something here to see the client log it.
    messages: list[Any] = field(default_factory=list)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _numbers: dict[str, int] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(166031411802010329, 7))
    # Each table's own sys_id (a sys_db_table record on an instance), given on first use: the
    # table half of a Document ID. Kept across reset(), like an instance's schema.
    _table_ids: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # the full state is large and holds the password
        sizes = ", ".join(f"{name}={len(rows)}" for name, rows in self.tables.items() if rows)
        return f"EmulatorState(username={self.username!r}, {sizes or 'empty'})"

    def __post_init__(self) -> None:
        self.auto_users_domains = tuple(d.lower().lstrip("@") for d in self.auto_users_domains)
        if self.auto_users_table not in (*PARENT_TABLES, *PARENT_TABLES.values()):
            raise ValueError(f"auto_users_table must be a people table, not {self.auto_users_table!r}")
        self.reset()

    # -- housekeeping ------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty every table, journal and attachment and disarm the faults; tokens stay valid."""
        self.tables = {name: {} for name in DEFAULT_TABLES}
        self.journals.clear()
        self.blobs.clear()
        self.request_log.clear()
        self.messages.clear()
        self._numbers.clear()
        self.faults.clear()
        self.seed_state_choices()

    def seed_state_choices(self, tables: Sequence[str] = ("itsm_incident", "itsm_request")) -> None:
        """The `state` column's labels of these tables in sys_choice (STATE_TITLES)."""
        rows = self.tables[CHOICE_TABLE]
        for table in tables:
            for order, (value, title) in enumerate(STATE_TITLES.items()):
                # Ids of their own, so records made in tests get the same ids as before.
                sys_id = f"{166031411700000000 + len(rows)}"
                self.create(CHOICE_TABLE, {"sys_id": sys_id, "table_id": table, "column_id": "state", "value": value,
                                           "title": title, "language": CHOICE_LANGUAGE, "sequence": order * 10},
                            author="seed", trusted=True)

    def choice_title(self, table: str, column: str, value: str) -> str | None:
        """The sys_choice label of a choice field's value, if it has one."""
        for choice in self.tables.get(CHOICE_TABLE, {}).values():
            if (choice.get("table_id"), choice.get("column_id"), choice.get("value"),
                    choice.get("language")) == (table, column, value, CHOICE_LANGUAGE):
                return choice.get("title") or None
        return None

    def now_text(self) -> str:
        now = self.clock()
        if now.tzinfo is not None:
            now = now.astimezone(UTC)
        return now.strftime(TIME_FORMAT)

    def new_sys_id(self) -> str:
        return str(next(self._ids))  # stays 18 digits for ~10^16 records

    # -- auth --------------------------------------------------------------------------------

    def check_password(self, username: str, password: str) -> bool:
        return secrets.compare_digest(username.encode(), self.username.encode()) and secrets.compare_digest(
            password.encode(), self.password.encode()
        )

    def issue_token(self, username: str) -> str:
        token = secrets.token_hex(16)  # 32 characters, like a real auth_key
        self._tokens[token] = _Token(username, self.faults.token_generation, self.clock())
        return token

    def user_for_token(self, token: str) -> str | None:
        """The API user a bearer token belongs to, or None if it is unknown or expired."""
        if self.static_token is not None and secrets.compare_digest(
            token.encode(), self.static_token.encode()
        ):
            return self.username
        issued = self._tokens.get(token)
        if issued is None or issued.generation != self.faults.token_generation:
            return None
        if self.token_ttl is not None and (self.clock() - issued.issued_at).total_seconds() > self.token_ttl:
            return None
        return issued.username

    # -- tables ------------------------------------------------------------------------------

    def table(self, name: str) -> dict[str, dict[str, str]]:
        rows = self.tables.get(name)
        if rows is None:
            raise ApiError(404, f"Table '{name}' not found")
        return rows

    def get(self, table: str, sys_id: str) -> dict[str, str]:
        record = self.table(table).get(sys_id)
        if record is None:
            raise ApiError(404, f"Record '{sys_id}' not found in table '{table}'")
        return record

    def create(self, table: str, fields: Mapping[str, object], *, author: str, trusted: bool = False) -> str:
        """Insert a record; `trusted` (seeding from Python) may set system fields too."""
        rows = self.table(table)
        values = _store_values(fields)
        journal = {f: values.pop(f) for f in JOURNAL_FIELDS & values.keys()}
        if not trusted:
            for name in SYSTEM_FIELDS:
                values.pop(name, None)
        now = self.now_text()
        record: dict[str, str] = {"sys_id": values.pop("sys_id", "") or self.new_sys_id()}
        if table in NUMBER_PREFIXES:
            record["number"] = values.pop("number", "") or self._next_number(table)
            record.update(TICKET_DEFAULTS)
        record["sys_created_at"] = now
        record["sys_updated_at"] = now
        record.update(values)
        rows[record["sys_id"]] = record
        for parent in self.ancestors(table):  # [doc] a child table's record is its parents' too
            self.tables.setdefault(parent, {})[record["sys_id"]] = record
        for name, text in journal.items():
            self._append_journal(table, record["sys_id"], name, text, author)
        return record["sys_id"]

    def update(self, table: str, sys_id: str, fields: Mapping[str, object], *, author: str) -> dict[str, str]:
        record = self.get(table, sys_id)
        values = _store_values(fields)
        for name in SYSTEM_FIELDS:
            values.pop(name, None)
        for name in JOURNAL_FIELDS & values.keys():
            self._append_journal(table, sys_id, name, values.pop(name), author)
        changed = [(name, record.get(name, ""), values[name]) for name in HISTORY_FIELDS
                   if table in NUMBER_PREFIXES and name in values and values[name] != record.get(name, "")]
        if changed:
            self._append_history(table, sys_id, changed, author)
            if "active" not in values:
                values["active"] = "0" if values["state"] in INACTIVE_STATES else "1"
        record.update(values)
        record["sys_updated_at"] = self.now_text()
        return record

    def delete(self, table: str, sys_id: str) -> None:
        record = self.get(table, sys_id)
        for rows in self.tables.values():  # the record leaves its parent and child tables too
            if rows.get(sys_id) is record:
                del rows[sys_id]
        self.journals.pop((table, sys_id), None)
        feed = self.tables[FEED_TABLE]
        for item_id in [i for i, item in feed.items() if item.get("record_id") == sys_id]:
            del feed[item_id]
        doc_id = self.document_id(table, sys_id)
        for att_id, att in list(self.tables[ATTACHMENT_TABLE].items()):
            if att.get("record_document_id") == doc_id:
                del self.tables[ATTACHMENT_TABLE][att_id]
                self.blobs.pop(att_id, None)

    def select(self, table: str, query: Query) -> list[dict[str, str]]:
        rows = self.table(table)
        return query.apply(rows.values(), lambda record: self.getter(table, record))

    @staticmethod
    def ancestors(table: str) -> list[str]:
        """The tables `table` extends, nearest first (`employee` -> [`user`])."""
        found: list[str] = []
        while (table := PARENT_TABLES.get(table, "")) and table not in found:
            found.append(table)
        return found

    def _next_number(self, table: str) -> str:
        self._numbers[table] = self._numbers.get(table, 0) + 1
        return f"{NUMBER_PREFIXES[table]}{self._numbers[table]:07d}"

    def _append_journal(self, table: str, sys_id: str, name: str, text: str, author: str) -> None:
        if not text:
            return
        entry = JournalEntry(name, text, author, self.now_text())
        self.journals.setdefault((table, sys_id), []).append(entry)
        # [doc] the field's value does not stay on the record: it becomes an activity-feed entry.
        message: object = {"display_value": text} if self.nested_journal_content else text
        self._append_feed_item(table, sys_id, f"{name}.{table}", {"message": message}, author)

    def _append_history(self, table: str, sys_id: str, changes: Sequence[tuple[str, str, str]], author: str) -> None:
        # [seen] {"history_items": [{column_id, old_db_value, new_db_value, old_display_value,
        # new_display_value}]}; [guess] column_id holds the column's name, display values the raw
        # values (labels live in sys_choice).
        items = [{"column_id": name, "old_db_value": old, "new_db_value": new,
                  "old_display_value": old, "new_display_value": new} for name, old, new in changes]
        self._append_feed_item(table, sys_id, HISTORY_TYPE, {"history_items": items}, author)

    def _append_feed_item(self, table: str, sys_id: str, type_name: str, content: object, author: str) -> str:
        return self.create(
            FEED_TABLE,
            {
                "type_id": self._named(ACTIVITY_TYPE_TABLE, type_name),
                "content": json.dumps(content, ensure_ascii=False),
                "table_id": self._named(DB_TABLE, table),
                "record_id": sys_id,
                "sys_created_by": author,
            },
            author=author,
        )

    def _named(self, table: str, name: str) -> str:
        """The sys_id of the record called `name` in a lookup table, made on first use."""
        for record in self.tables[table].values():
            if record.get("name") == name:
                return record["sys_id"]
        return self.create(table, {"name": name}, author="system")

    # -- references and dot-walking ---------------------------------------------------------

    def walk(self, table: str, record: Mapping[str, str], path: str) -> tuple[str, str | None] | None:
        """Follow `a.b.c` through reference fields: (value, referenced table or None), or None if absent."""
        *hops, last = path.split(".")
        current: Mapping[str, str] = record
        for hop in hops:
            target_table = self.references.get(hop)
            target_id = current.get(hop, "")
            target = self.tables.get(target_table or "", {}).get(target_id)
            if target_table is None or target is None:
                return None
            current = target
        if last not in current:
            return None
        return current[last], self.references.get(last)

    def getter(self, table: str, record: Mapping[str, str]) -> Callable[[str], object]:
        def get(path: str) -> object:
            found = self.walk(table, record, path)
            return None if found is None else found[0]

        return get

    def display_value(self, table: str, sys_id: str) -> str:
        record = self.tables.get(table, {}).get(sys_id)
        if record is None:
            return sys_id
        # [doc] a person has first_name and last_name; `display_name` is not a documented field.
        for name in ("name", "number"):
            if record.get(name):
                return record[name]
        full = f"{record.get('first_name', '')} {record.get('last_name', '')}".strip()
        return full or sys_id

    def render(
        self,
        table: str,
        record: Mapping[str, str],
        *,
        base_url: str,
        fields: Sequence[str] | None = None,
        display: bool = False,
        links: bool = True,
    ) -> dict[str, Any]:
        """One record as the Table API returns it."""
        names = list(fields) if fields else list(record)
        out: dict[str, Any] = {}
        for name in names:
            found = self.walk(table, record, name)
            if found is None:
                if fields and name in JOURNAL_FIELDS:
                    out[name] = ""  # [doc] a journal field reads back empty after the save
                continue
            value, ref_table = found
            if ref_table is None or value == "":
                # A choice field's display value is its sys_choice label [doc: sysparm_display_value].
                title = self.choice_title(table, name, value) if display and "." not in name else None
                out[name] = value if title is None else title
                continue
            # [doc] sysparm_display_value=1 gives display values, and a reference comes as
            # {"value": sys_id, "link": ".../rest/v1/table/<table>/<sys_id>"} unless
            # sysparm_exclude_reference_link=1; a display value beside a link is keyed
            # "display_value" [guess].
            shown = self.display_value(ref_table, value) if display else value
            if not links:
                out[name] = shown
            else:
                link = f"{base_url}/rest/v1/table/{ref_table}/{value}"
                out[name] = {"display_value" if display else "value": shown, "link": link}
        return out

    # -- users -------------------------------------------------------------------------------

    def add_user(
        self, email: str, first_name: str, last_name: str, *, active: bool = True, table: str = "user"
    ) -> str:
        """A person with the documented fields [doc]: table "user" makes a plain user (a student,
        found only in `user`), "employee" an employee (found in `employee` and in `user`)."""
        if table not in (*PARENT_TABLES, *PARENT_TABLES.values()):
            raise ValueError(f"people live in {', '.join(sorted({*PARENT_TABLES, *PARENT_TABLES.values()}))}")
        return self.create(
            table,
            {
                "email": email,
                "username": email.partition("@")[0],
                "first_name": first_name,
                "last_name": last_name,
                "active": active,
            },
            author="seed",
        )

    def auto_create_user(self, table: str, query: Query) -> None:
        """Demo mode: a look-up of `email=<addr>` (other conditions aside) at an allowed domain
        makes the person exist, in `auto_users_table`, when `table` would show them."""
        if table not in (self.auto_users_table, *self.ancestors(self.auto_users_table)):
            return
        emails = [c.value for c in query.conditions() if c.field == "email" and c.op == "="]
        if len(emails) != 1 or any(len(group) > 1 for group in query.groups):
            return
        email = emails[0]
        local, at, domain = email.rpartition("@")
        allowed = {d.lower().lstrip("@") for d in self.auto_users_domains}  # may be reassigned by callers
        if not at or not local or domain.lower() not in allowed:
            return
        people = [self.auto_users_table, *self.ancestors(self.auto_users_table)]
        if any(u.get("email", "").lower() == email.lower() for name in people for u in self.tables[name].values()):
            return
        parts = [p.capitalize() for p in local.replace("_", ".").split(".") if p]
        self.add_user(email, parts[0] if parts else local, " ".join(parts[1:]), table=self.auto_users_table)

    # -- attachments -------------------------------------------------------------------------

    def document_id(self, table: str, sys_id: str) -> str:
        """The Document ID of a record of `table` (see `document_id`)."""
        table_id = self._table_ids.get(table)
        if table_id is None:
            table_id = self._table_ids[table] = self.new_sys_id()
        return document_id(table_id, sys_id)

    def add_attachment(self, table: str, sys_id: str, file_name: str, mime: str, data: bytes) -> str:
        self.get(table, sys_id)
        att_id = self.create(
            ATTACHMENT_TABLE,
            {
                # [doc] the Document ID of the record, not its sys_id (see `document_id`).
                "record_document_id": self.document_id(table, sys_id),
                "file_name": file_name,
                "mime_content_type": mime,
                "size_bytes": len(data),
            },
            author="attachments",
        )
        self.blobs[att_id] = data
        return att_id

    # -- accessors for tests and the control API -------------------------------------------

    def add_record(self, table: str, fields: Mapping[str, object]) -> str:
        """Seed a record (system fields such as number or sys_created_at may be given)."""
        self.tables.setdefault(table, {})
        return self.create(table, fields, author="seed", trusted=True)

    def set_field(self, table: str, sys_id: str, field_name: str, value: object) -> None:
        """Change one field as an agent would (e.g. a status change); bumps sys_updated_at."""
        self.update(table, sys_id, {field_name: value}, author="agent")

    def record(self, table: str, sys_id: str) -> dict[str, str] | None:
        found = self.tables.get(table, {}).get(sys_id)
        return None if found is None else dict(found)

    def records(self, table: str, query: str = "") -> list[dict[str, str]]:
        return [dict(r) for r in self.select(table, parse_query(query))]

    def journal(self, table: str, sys_id: str) -> list[JournalEntry]:
        return list(self.journals.get((table, sys_id), []))

    def feed(self, table: str, sys_id: str) -> list[dict[str, str]]:
        """The record's sys_activity_feed_item rows, oldest first, with the type's name added."""
        types = self.tables[ACTIVITY_TYPE_TABLE]
        return [
            {**item, "type_name": types.get(item.get("type_id", ""), {}).get("name", "")}
            for item in self.select(FEED_TABLE, parse_query(f"record_id={sys_id}^ORDERBYsys_id"))
            if self.tables[DB_TABLE].get(item.get("table_id", ""), {}).get("name") == table
        ]

    def activity_type(self, name: str) -> str:
        """The sys_id of the activity type called `name` (e.g. "additional_comments.itsm_incident"),
        made on first use: for tests that seed journal entries by hand."""
        return self._named(ACTIVITY_TYPE_TABLE, name)

    def find_ticket(self, ticket: str) -> tuple[str, str]:
        """(table, sys_id) of a ticket named by its number (INC0000001) or its sys_id."""
        for table in NUMBER_PREFIXES:
            for record in self.tables.get(table, {}).values():
                if ticket in (record.get("number"), record["sys_id"]):
                    return table, record["sys_id"]
        raise ApiError(404, f"No ticket {ticket!r}")

    def act_as_agent(self, action: str, ticket: str, value: str, *, author: str = AGENT) -> tuple[str, str]:
        """What a support agent does in SimpleOne's form: `comment` (public), `note` (a work note,
        internal) or `state` (a new state code). Returns the ticket's (table, sys_id).

        A comment's text is stored exactly as given, HTML included: agents type in a rich-text
        editor, whose markup the journal keeps [guess: the brief of issue 14; no instance's
        content was seen with markup], so a test can give the editor's HTML."""
        field_name = AGENT_ACTIONS.get(action)
        if field_name is None:
            raise ApiError(400, f"unknown agent action {action!r} (known: {', '.join(AGENT_ACTIONS)})")
        if not value.strip():
            raise ApiError(400, f"agent action {action!r} needs a text or a state code")
        table, sys_id = self.find_ticket(ticket)
        self.update(table, sys_id, {field_name: value}, author=author)
        return table, sys_id

    def attachments(self, table: str, sys_id: str) -> list[dict[str, str]]:
        """Attachment records of one record (the `table` argument guards against id mix-ups)."""
        self.get(table, sys_id)
        doc_id = self.document_id(table, sys_id)
        return [dict(a) for a in self.tables[ATTACHMENT_TABLE].values() if a["record_document_id"] == doc_id]

    def attachment_bytes(self, attachment_sys_id: str) -> bytes:
        return self.blobs[attachment_sys_id]

    def snapshot(self) -> dict[str, Any]:
        return {
            "tables": {name: list(rows.values()) for name, rows in self.tables.items()},
            "journals": {
                f"{table}/{sys_id}": [
                    {"field": e.field, "text": e.text, "author": e.author, "created_at": e.created_at}
                    for e in entries
                ]
                for (table, sys_id), entries in self.journals.items()
            },
            "faults": self.faults.snapshot(),
            "requests": [[e.method, e.path, e.status] for e in self.request_log],
        }


def _store_values(fields: Mapping[str, object]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ApiError(400, f"bad field name {name!r}")
        if isinstance(value, dict) and "value" in value:
            value = value["value"]  # a reference object sent back as-is
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ApiError(400, f"field {name!r} must be a string, number or boolean")
        values[name] = as_text(value)
    return values
