"""How a failed conversation step is told: the reply as the user saw it, and what differs.

`flowlint test` prints these under the failing step; a support lead reads them to tell a changed
text from a broken flow, so each shows the whole reply with its line breaks and marks the place.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from engine.replies import Button

INDENT = "    "


def reply_block(text: str, mark: str = "") -> list[str]:
    """The reply line by line ("| …"), with the first place of `mark` underlined."""
    if not text:
        return ["(the bot said nothing)"]
    out: list[str] = []
    marked = False
    for line in text.split("\n"):
        out.append(f"| {line}".rstrip())
        at = line.casefold().find(mark.casefold()) if mark and not marked else -1
        if at >= 0:
            out.append("  " + " " * at + "^" * len(mark))
            marked = True
    return out


def missing(fragment: str, text: str) -> list[str]:
    """Detail lines for a fragment the reply lacks: its nearest place in the reply, marked."""
    window = _nearest(fragment, text)
    if window is None:
        return ["nothing like it in the reply"]
    expected_marks = [" "] * len(fragment)
    reply_marks = [" "] * len(window)
    matcher = difflib.SequenceMatcher(None, fragment.casefold(), window.casefold(), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        for i in range(i1, i2):
            expected_marks[i] = "^"
        for j in range(j1, j2):
            reply_marks[j] = "^"
    pad = " " * len(_NEAREST)
    out = [f"{'expected:':<{len(pad)}}{fragment}"]
    if "^" in expected_marks:
        out.append(pad + "".join(expected_marks).rstrip())
    out.append(_NEAREST + window)
    if "^" in reply_marks:
        out.append(pad + "".join(reply_marks).rstrip())
    return out


_NEAREST = "nearest in the reply: "


def _nearest(fragment: str, text: str) -> str | None:
    """The stretch of one reply line most like the fragment, if any is somewhat like it."""
    want = fragment.casefold()
    best, best_ratio = None, 0.7
    size = len(fragment)
    for line in text.split("\n"):
        low = line.casefold()
        for length in {max(1, size - 2), size, size + 2}:
            for start in range(max(1, len(low) - length + 1)):
                if start and low[start - 1].isalnum():
                    continue  # from the start of a word only
                piece = low[start : start + length]
                matcher = difflib.SequenceMatcher(None, want, piece, autojunk=False)
                if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
                    continue
                ratio = matcher.ratio()
                if ratio > best_ratio:
                    best, best_ratio = line[start : start + length].strip(), ratio
    return best


def keyboard(rows: Sequence[Sequence[Button]]) -> list[str]:
    """The buttons as the user sees them: one line a row."""
    if not rows:
        return ["(no buttons)"]
    return [" ".join(f"[{b.label}]" for b in row) for row in rows]


def shown(rows: Sequence[Sequence[Button]], title: str = "shown:") -> list[str]:
    """The keyboard under a title, its rows aligned."""
    grid = keyboard(rows)
    pad = " " * max(10, len(title) + 1)
    return [title.ljust(len(pad)) + grid[0], *(pad + line for line in grid[1:])]


def buttons(expected: Sequence[str], rows: Sequence[Sequence[Button]]) -> list[str]:
    """Expected labels against the shown keyboard, with the label meant by each missing one."""
    labels = [b.label for row in rows for b in row]
    out = ["expected: " + " ".join(f"[{label}]" for label in expected), *shown(rows)]
    for label in expected:
        if label in labels:
            continue
        near = difflib.get_close_matches(label, labels, n=1, cutoff=0.6)
        if near:
            out.append(f"'{label}' is not shown; did you mean '{near[0]}'?")
    return out


def detail(summary: str, lines: Sequence[str]) -> str:
    """A failure's message: the summary, then its detail lines (indented by the printer)."""
    return "\n".join([summary, *(INDENT + line for line in lines)])
