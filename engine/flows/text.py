"""How typed text is compared with button labels, commands and list items."""

from __future__ import annotations

import re
from functools import lru_cache

_WORDS = re.compile(r"\w+")
# Russian writers use the Cyrillic yo (U+0451) and ye (U+0435) interchangeably.
_YO = str.maketrans({"\u0451": "\u0435"})


def fold_case(text: str) -> str:
    """text with case and the yo/ye difference folded away."""
    return text.casefold().translate(_YO)


@lru_cache(maxsize=4096)  # labels and commands repeat on every step
def normalize_text(text: str) -> str:
    """Case, punctuation, emoji, extra spaces and yo/ye differences ignored."""
    return " ".join(_WORDS.findall(fold_case(text)))
