"""Free text to catalogue entries: what a user typed ("не ловит вайфай в общаге") to the few
entries it most likely means.

A small full-text search over each entry's name, label and keywords and its group's, built once
per flow set. Words are reduced to their stems (Snowball's Russian and English stemmers, through
PyStemmer), so "паролем" finds "пароль". A word the catalogue does not know is matched to those
it does within one or two typos, a swap of two letters counting as one (rapidfuzz's optimal
string alignment), or by a shared beginning ("сдошка" → "сдо"). A stem is worth more the fewer
entries have it (idf), and more in an entry's keywords than in its name, and more in its name
than in its group's. Words the catalogue lists under `search.ignore` (greetings, "не работает",
"помогите") count for nothing.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from weakref import WeakKeyDictionary

import Stemmer
from rapidfuzz import process
from rapidfuzz.distance import OSA

from engine.flows.model import CatalogEntry, FlowSet
from engine.flows.text import fold_case

_WORD: Final = re.compile(r"[^\W_]+")  # letters and digits, of any script
# Latin letters people type for Cyrillic ones in "1С" (the product is written both ways).
_ONE_C: Final = re.compile(r"\b1c\b")

KEYWORD, NAME, GROUP = 3.0, 2.0, 1.0  # what a stem is worth where it is found
PHRASE_BONUS: Final = 1.0  # times the phrase's idf, when every word of a keyword phrase is there
MIN_SCORE: Final = 2.5  # below this nothing is proposed (a lone common group word)
RELATIVE: Final = 0.35  # the others proposed must score at least this share of the best
TYPO_SIMILARITY: Final = {1: 0.8, 2: 0.6}  # a match within this many edits counts this much
MIN_TYPO_LENGTH: Final = 5  # a shorter stem is a typo away from too many others
PREFIX_SIMILARITY: Final = 0.7

_russian = Stemmer.Stemmer("russian")
_english = Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-case words, ё as е, hyphenated ones also joined ("wi-fi" → wi, fi, wifi)."""
    text = _ONE_C.sub("1\u0441", fold_case(text))  # the Cyrillic с of "1С"
    found: list[str] = []
    for chunk in text.split():
        parts = _WORD.findall(chunk)
        found.extend(parts)
        if len(parts) > 1 and "-" in chunk:
            found.append("".join(parts))
    return found


def stem(word: str) -> str:
    stemmer = _english if word.isascii() else _russian
    stemmed: str = stemmer.stemWord(word)
    return stemmed


def stems(text: str) -> list[str]:
    return [stem(w) for w in words(text)]


@dataclass(frozen=True, slots=True)
class Match:
    entry: CatalogEntry
    score: float


class CatalogIndex:
    """The catalogue's entries, searchable by free text."""

    def __init__(self, entries: Sequence[CatalogEntry], ignore: Iterable[str] = ()) -> None:
        self.entries = tuple(entries)
        self.ignore = frozenset(s for phrase in ignore for s in stems(phrase))
        weights: dict[str, dict[int, float]] = defaultdict(dict)
        self.phrases: list[tuple[int, frozenset[str]]] = []

        def add(n: int, text: str, weight: float) -> None:
            for s in stems(text):
                if s not in self.ignore and weights[s].get(n, 0.0) < weight:
                    weights[s][n] = weight

        for n, entry in enumerate(self.entries):
            for text in (entry.group_name, entry.group_label, *entry.group_keywords):
                add(n, text, GROUP)
            add(n, entry.name, NAME)
            add(n, entry.label, NAME)
            for keyword in entry.keywords:
                add(n, keyword, KEYWORD)
                phrase = frozenset(stems(keyword)) - self.ignore
                if len(phrase) > 1:
                    self.phrases.append((n, phrase))
        total = len(self.entries)
        self.weights = dict(weights)
        self.idf = {s: math.log(1 + total / len(found)) for s, found in weights.items()}
        self.vocabulary = sorted(self.weights)

    def search(self, text: str, limit: int = 3) -> list[Match]:
        """The entries `text` most likely means, best first; none when it says nothing the
        catalogue knows."""
        query = [s for s in dict.fromkeys(stems(text)) if s not in self.ignore]
        scores: dict[int, float] = defaultdict(float)
        known: set[str] = set()
        for q in query:
            best: dict[int, float] = {}
            for found, similarity in self._near(q):
                known.add(found)
                idf = self.idf[found]
                for n, weight in self.weights[found].items():
                    best[n] = max(best.get(n, 0.0), similarity * weight * idf)
            for n, value in best.items():
                scores[n] += value
        for n, phrase in self.phrases:
            if phrase <= known:
                scores[n] += PHRASE_BONUS * sum(self.idf[s] for s in phrase)
        if not scores:
            return []
        top = max(scores.values())
        if top < MIN_SCORE:
            return []
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [Match(self.entries[n], score) for n, score in ranked[:limit] if score >= RELATIVE * top]

    def _near(self, q: str) -> list[tuple[str, float]]:
        """Catalogue stems that q stands for: itself; else those a typo or two away (long words
        only: short ones are a typo away from too much), and those it extends by a suffix the
        stemmer kept ("сдошк" → "сдо"; not the other way: "стран" is no "страниц")."""
        if q in self.weights:
            return [(q, 1.0)]
        found: dict[str, float] = {}
        if len(q) >= MIN_TYPO_LENGTH:
            allowed = 1 if len(q) < 9 else 2
            for s, distance, _ in process.extract(q, self.vocabulary, scorer=OSA.distance,
                                                  score_cutoff=allowed, limit=5):
                if abs(len(s) - len(q)) <= allowed:
                    found[s] = TYPO_SIMILARITY[int(distance)]
        if len(q) >= 4:
            for s in self.vocabulary:
                if len(s) >= 3 and q.startswith(s) and len(q) - len(s) <= 2:
                    found[s] = max(found.get(s, 0.0), PREFIX_SIMILARITY)
        return list(found.items())


_indexes: WeakKeyDictionary[FlowSet, CatalogIndex] = WeakKeyDictionary()


def index_of(flows: FlowSet) -> CatalogIndex:
    """The flow set's catalogue index, built once and kept as long as the flow set."""
    index = _indexes.get(flows)
    if index is None:
        entries = [e for g in flows.catalog.groups for e in g.entries]
        index = _indexes[flows] = CatalogIndex(entries, flows.catalog.ignore)
    return index
