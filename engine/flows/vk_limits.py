"""VK's limits on what a community bot sends (dev.vk.com: bots, keyboards, messages.send).

The one statement of them: flowlint checks flows against them, the picker makes labels that
fit, and the VK adapter renders every reply within them. (The fake VK server states them again
on its own, as VK's side: a double that read them here would agree with any mistake in them.)
"""

from __future__ import annotations

from typing import Final

__all__ = ["KEYBOARD_LIMITS", "MAX_LABEL", "MAX_MESSAGE_LENGTH", "MAX_PAYLOAD", "MAX_PER_ROW", "pack", "shorten"]

KEYBOARD_LIMITS: Final = {False: (10, 40), True: (6, 10)}  # inline → (rows, buttons)
MAX_PER_ROW: Final = 5  # buttons in a row
MAX_LABEL: Final = 40  # characters of a button's label
MAX_PAYLOAD: Final = 255  # characters of a button's payload (JSON)
MAX_MESSAGE_LENGTH: Final = 4096  # characters of a message's text


def shorten(label: str, limit: int = MAX_LABEL) -> str:
    """`label` on one line, cut to `limit` characters with an ellipsis where it was longer."""
    label = " ".join(label.split()) or "…"
    return label if len(label) <= limit else label[: limit - 1].rstrip() + "…"


# The longest label that still reads whole beside others on a phone, by buttons in the row: a
# 360 dp wide screen gives each of two buttons about 165 dp, some 22 characters of VK's font.
FITS_BESIDE: Final = {1: MAX_LABEL, 2: 22, 3: 13}


def pack(labels: list[str], columns: int) -> list[list[int]]:
    """The labels' indices in rows of up to `columns`, in order: a label too long to share a row
    (FITS_BESIDE) gets one of its own, so that no label is cut to fit."""
    columns = max(1, min(columns, max(FITS_BESIDE)))
    rows: list[list[int]] = []
    for i, label in enumerate(labels):
        alone = columns == 1 or len(label) > FITS_BESIDE[columns]
        last = rows[-1] if rows else None
        if not alone and last and len(last) < columns and len(labels[last[0]]) <= FITS_BESIDE[columns]:
            last.append(i)
        else:
            rows.append([i])
    return rows
