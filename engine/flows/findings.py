"""Lint findings: what flowlint prints and what a refused reload logs."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


# One code per kind of mistake, so that support leads can search for it in the README.
CODES: dict[str, str] = {
    "F001": "file cannot be read or parsed as YAML",
    "F002": "file does not match the flow schema",
    "F003": "file is too large, too deep or expands too much",
    "F010": "unknown target state",
    "F011": "unknown target flow",
    "F012": "state cannot be reached",
    "F013": "state has no way out",
    "F014": "event is raised but nothing handles it",
    "F020": "unknown action",
    "F021": "an action's outcome is not handled",
    "F030": "unknown slot in a template",
    "F031": "broken template",
    "F040": "duplicate id",
    "F050": "keyboard has too many rows or buttons for VK",
    "F051": "button label too long for VK",
    "F052": "button payload too long for VK",
    "F060": "catalogue entry has no SimpleOne mapping",
    "F070": "missing or conflicting settings",
}


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    col: int
    code: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to a misspelt one, if any is close enough to be meant."""
    found = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest known name, or '' when none is near."""
    found = nearest(name, known)
    return f" (did you mean {found}?)" if found else ""


class FlowSetInvalid(Exception):
    """A flow set refused at start, with its errors (here, so that the command line can catch
    it without importing the loader)."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = list(findings)
        lines = "\n".join(str(f) for f in self.findings[:50])
        super().__init__(f"the flow set has {len(self.findings)} error(s):\n{lines}")
