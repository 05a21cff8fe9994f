"""The catalogue's free-text search: words to stems, typos, ignored words, and how well it finds
the entry of realistic messages it was not tuned on (bench/free_text.py prints the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.free_text import load_messages, measure
from engine.dialogue.catalog_search import CatalogIndex, index_of, words
from engine.flows.model import CatalogEntry, FlowSet, TicketMapping, Where
from engine.load import load_flow_set

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def shipped() -> FlowSet:
    flow_set = load_flow_set([ROOT / "flows"]).flow_set
    assert flow_set is not None
    return flow_set


def entry(entry_id: str, name: str, *keywords: str, group: str = "Группа") -> CatalogEntry:
    return CatalogEntry(entry_id, name, "g", group, TicketMapping(), Where("catalog.yaml", 1, 1),
                        keywords=keywords)


INDEX = CatalogIndex([
    entry("wifi", "Беспроводная сеть (Wi-Fi)", "вайфай", "интернет в общежитии"),
    entry("mail", "Корпоративная почта", "почтовый ящик", "outlook"),
    entry("printer", "Обслуживание техники", "принтер", "сканер"),
], ignore=["не", "работает", "здравствуйте", "у", "меня"])


def found(text: str) -> list[str]:
    return [m.entry.id for m in INDEX.search(text)]


def test_words_are_lower_case_with_yo_as_ye_and_hyphenated_ones_joined_too() -> None:
    assert words("Wi-Fi в общежитии ЁЛКА 1C") == ["wi", "fi", "wifi", "в", "общежитии", "елка", "1с"]


def test_word_forms_find_their_entry() -> None:
    assert found("Здравствуйте, у меня не работает интернет в общежитиях")[0] == "wifi"
    assert found("почты нет со вчерашнего дня")[0] == "mail"
    assert found("принтеры не печатают")[0] == "printer"


def test_a_typo_in_a_long_word_still_finds_it() -> None:
    assert found("принетр зажевал бумагу")[0] == "printer"
    assert found("outlok не синхронизируется")[0] == "mail"


def test_ignored_words_alone_propose_nothing() -> None:
    assert found("здравствуйте, у меня не работает") == []
    assert found("") == [] and found("!!!") == []


def test_a_keyword_phrase_counts_more_than_its_words_apart() -> None:
    best = INDEX.search("интернет в общежитии")
    assert best[0].entry.id == "wifi" and best[0].score > INDEX.search("интернет")[0].score


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_at_most_three_distinct_entries_best_first(text: str) -> None:
    matches = INDEX.search(text)
    assert len(matches) <= 3 and len({m.entry.id for m in matches}) == len(matches)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)


def test_the_shipped_catalogue_finds_messages_it_was_not_tuned_on(shipped: FlowSet) -> None:
    """The issue's targets, on the held-out half of bench/free_text_messages.yaml: the right entry
    among the three proposed for at least 90 %, first for at least 70 %."""
    held_out = load_messages()[1::2]
    result = measure(index_of(shipped), held_out)
    assert result.top3_share >= 0.90, result.misses
    assert result.top1_share >= 0.70, result.misses


def test_the_index_is_built_once_per_flow_set(shipped: FlowSet) -> None:
    assert index_of(shipped) is index_of(shipped)
