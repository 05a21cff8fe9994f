"""How typed text is compared with button labels, commands and list items."""

from __future__ import annotations

import re

_WORDS = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """Case, punctuation, emoji, extra spaces and ё/е differences ignored."""
    return " ".join(_WORDS.findall(text.casefold().replace("ё", "е")))
