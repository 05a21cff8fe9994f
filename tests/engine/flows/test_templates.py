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
