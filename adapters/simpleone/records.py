"""Turning SimpleOne Table API records into the engine's Person and Ticket values.

Real instances return references as {"value": sys_id, "link": ...} or as plain strings
(with sysparm_exclude_reference_link), and booleans as "1"/"0", "true"/"false" or JSON
booleans; everything here accepts each of those shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.ports import Person, Ticket

TICKET_FIELDS: tuple[str, ...] = (
    "sys_id",
    "number",
    "subject",
    "description",
    "state",
    "caller",
    "sys_created_at",
    "sys_updated_at",
    "active",
)
# [doc] the documented person fields (`employee` and `user`); `display_name` is not one of them.
PERSON_FIELDS: tuple[str, ...] = (
    "sys_id",
    "email",
    "first_name",
    "last_name",
    "username",
    "active",
)


def text(value: object) -> str:
    """A field as plain text: references give their sys_id, missing values give ""."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return text(value.get("value", value.get("display_value")))
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def flag(value: object, *, default: bool) -> bool:
    """A boolean field; absent or unrecognised values give `default`."""
    if isinstance(value, bool):
        return value
    raw = text(value).strip().lower()
    if raw in {"1", "true", "yes"}:
        return True
    if raw in {"0", "false", "no"}:
        return False
    return default


def person_from(record: Mapping[str, Any]) -> Person:
    """The name is built from first and last name [doc]; `display_name` is not documented."""
    parts = (text(record.get("first_name")).strip(), text(record.get("last_name")).strip())
    return Person(sys_id=text(record.get("sys_id")), email=text(record.get("email")),
                  name=" ".join(part for part in parts if part))


def ticket_from(table: str, record: Mapping[str, Any]) -> Ticket:
    return Ticket(
        table=table,
        sys_id=text(record.get("sys_id")),
        number=text(record.get("number")),
        subject=text(record.get("subject")),
        description=text(record.get("description")),
        state=text(record.get("state")),
        caller_id=text(record.get("caller")),
        created_at=text(record.get("sys_created_at")),
        updated_at=text(record.get("sys_updated_at")),
        active=flag(record.get("active"), default=True),
    )
