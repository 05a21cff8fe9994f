from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.flows.templates import TemplateError, lookup, parse


def test_renders_slots_fields_and_filters() -> None:
    tpl = parse("{service.group} → {service.name}: {files|count} ({files|names})")
    values = {"service": {"group": "Сеть", "name": "Wi-Fi"}, "files": [{"name": "a.png"}, {"name": "b.pdf"}]}
    assert tpl.render(values) == "Сеть → Wi-Fi: 2 (a.png, b.pdf)"


def test_missing_values_render_empty_and_braces_escape() -> None:
    assert parse("{{literal}} [{absent.deep}]").render({}) == "{literal} []"


def test_user_text_is_never_expanded_again() -> None:
    # A description that looks like a template must come out verbatim.
    tpl = parse("Описание: {description}")
    out = tpl.render({"description": "{user.email} {__class__} {0}", "user": {"email": "secret@ranepa.ru"}})
    assert out == "Описание: {user.email} {__class__} {0}"


def test_no_attribute_or_index_access() -> None:
    with pytest.raises(TemplateError):
        parse("{description.__class__.__mro__[1]}")
    with pytest.raises(TemplateError):
        parse("{description!r:>10}")
    # Dotted look-ups only walk dictionaries: a string has no "upper" field.
    assert parse("{description.upper}").render({"description": "abc"}) == ""


@pytest.mark.parametrize("bad, offset", [("text {open", 5), ("a } b", 2), ("{9lives}", 0), ("{x|shout}", 0)])
def test_errors_say_where(bad: str, offset: int) -> None:
    with pytest.raises(TemplateError) as info:
        parse(bad)
    assert info.value.offset == offset


def test_refs_list_every_slot_used() -> None:
    refs = parse("{a} and {b.c|count}").refs
    assert [(r.path, r.filter) for r in refs] == [(("a",), None), (("b", "c"), "count")]


def test_lookup_walks_dicts_only() -> None:
    assert lookup({"a": {"b": 1}}, "a.b") == 1
    assert lookup({"a": [1]}, "a.b") is None


@given(st.text())
def test_parse_raises_only_template_errors(source: str) -> None:
    try:
        tpl = parse(source)
    except TemplateError:
        return
    tpl.render({})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["a", "b", "files"]), json_values))
def test_render_never_raises_on_any_slot_values(values: dict[str, object]) -> None:
    parse("{a} {a.b} {b|count} {files|names} {files|count}").render(values)


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 файлов"), (1, "1 файл"), (2, "2 файла"), (4, "4 файла"), (5, "5 файлов"), (11, "11 файлов"),
    (12, "12 файлов"), (14, "14 файлов"), (21, "21 файл"), (22, "22 файла"), (111, "111 файлов"), (3601, "3601 файл"),
])
def test_plural_puts_the_noun_in_the_form_its_number_needs(n: int, text: str) -> None:
    assert parse("{n|plural:файл,файла,файлов}").render({"n": n}) == text


def test_short_cuts_at_a_word() -> None:
    tpl = parse("{t|short:20}")
    assert tpl.render({"t": "Не работает интернет в общежитии"}) == "Не работает…"
    assert tpl.render({"t": "Коротко  и\nясно"}) == "Коротко и ясно"


@pytest.mark.parametrize("source", ["{n|plural:файл,файла}", "{n|plural}", "{t|short}", "{t|short:x}",
                                    "{l|count:3}"])
def test_a_filter_with_a_wrong_argument_is_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        parse(source)


def test_each_says_its_parts_for_every_item_in_order_with_the_items_fields() -> None:
    from engine.flows.model import SayPart, render_say

    line = (SayPart(parse("{date} — Вы: {text}"), when=("mine",)),
            SayPart(parse("{date} — Специалист: {text}"), unless=("mine",)))
    say = (SayPart(parse("Заявка {number}")), SayPart(parse(""), each="talk", parts=line),
           SayPart(parse("конец"), when=("text",)))
    talk = [{"date": "1", "text": "а", "mine": False}, {"date": "2", "text": "б", "mine": True}]
    assert render_say(say, {"number": "INC1", "talk": talk}) == "Заявка INC1\n1 — Специалист: а\n2 — Вы: б"
    # No list (or not a list): nothing is said for it, and an item's fields do not leak out.
    assert render_say(say, {"number": "INC1"}) == render_say(say, {"number": "INC1", "talk": "x"}) == "Заявка INC1"
