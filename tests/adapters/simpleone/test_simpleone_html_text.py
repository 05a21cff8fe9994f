"""A journal comment's HTML (an agent's rich-text editor) -> plain text; plain text untouched."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.simpleone.html_text import html_to_text


@pytest.mark.parametrize(("html", "text"), [
    ("<p>Проверьте&nbsp;кабель</p>", "Проверьте кабель"),
    ("<p>Здравствуйте!</p><p>Перезагрузите принтер.</p>", "Здравствуйте!\nПерезагрузите принтер."),
    ("Строка 1<br>Строка 2<br/>Строка 3", "Строка 1\nСтрока 2\nСтрока 3"),
    ("<div>a</div><div>b</div>", "a\nb"),
    ("Шаги:<ul><li>Выключите</li><li> Включите <b>снова</b> </li></ul>Готово",
     "Шаги:\n• Выключите\n• Включите снова\nГотово"),
    ("<p>a</p><p><br></p><p><br></p><p><br></p><p>b</p>", "a\n\nb"),  # blank runs -> one
    ("<p>текст   </p>\n\n<p>  ещё\n   строка </p>", "текст\nещё строка"),  # source whitespace collapses
    ("<p>A &amp; B &lt;C&gt; &quot;D&quot; &#8470;5</p>", 'A & B <C> "D" №5'),
    ("<p>x</p><script>alert('секрет')</script><style>p{color:red}</style>y", "x\ny"),
    ('<p>Инструкция <a href="https://sd.ranepa.ru/kb/1">здесь</a></p>', "Инструкция здесь (https://sd.ranepa.ru/kb/1)"),
    ('<a href="https://sd.ranepa.ru/kb/1">https://sd.ranepa.ru/kb/1</a>', "https://sd.ranepa.ru/kb/1"),
    ('<a href="mailto:it@ranepa.ru">it@ranepa.ru</a>', "it@ranepa.ru"),
    ('<a href="javascript:alert(1)">ссылка</a>', "ссылка"),
    ("<!-- редактор --><p>Готово</p><!-- конец", "Готово"),
    ("<p>Готово</p><span class=", "Готово"),  # a tag cut off by the end
    ("<template><p>скрыто</p></template>видно", "видно"),
    ("<![foo[x]]><b>ok</b>", "<![foo[x]]>ok"),  # html.parser raises on it: read as text
    ("<P>Верхний <BR>регистр</P>", "Верхний\nрегистр"),
])
def test_html_becomes_plain_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize("plain", [
    "Не печатает принтер в 305",
    "  Строка 1\n\n\n\nСтрока 2  \n",  # only strip(): inner blank lines stay as typed
    "AT&amp;T, 2 < 3, 5 > 4, a <b",  # no tag: entities and brackets stay as typed
    "Текст\n\n(добавлено через бот ВКонтакте)",
])
def test_plain_text_stays_as_it_is_apart_from_strip(plain: str) -> None:
    assert html_to_text(plain) == plain.strip()


@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    assert isinstance(html_to_text(text), str)


_MARKUP = st.sampled_from([
    "<p>", "</p>", "<div>", "</div>", "<br>", "<br/>", "<ul>", "<li>", "</li>", "</ul>", "<b>", "</b>",
    "<a href='https://x.ru'>", "</a>", "<!--", "-->", "<![CDATA[", "]]>", "<![x[", "<!DOCTYPE html>", "<?x?>",
    "<", ">", "/", "&nbsp;", "&amp;", "&#", ";", "\n", " ", "\xa0", "\t", "текст", "a", "=", "'", '"',
])


@given(st.lists(_MARKUP, max_size=30).map("".join))
def test_never_raises_on_tag_soup(text: str) -> None:
    out = html_to_text(text)
    assert out == out.strip()
    if out != text.strip():  # converted (a text whose only markup is cut off stays as typed)
        assert "\n\n\n" not in out
        assert all(line == line.rstrip() for line in out.split("\n"))


_SOUP = st.lists(_MARKUP.filter(lambda s: "&" not in s), max_size=12).map("".join)
_SCRIPT_BODY = st.text(alphabet=st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=30)


@given(_SOUP, st.sampled_from(["script", "SCRIPT", "style", "Script"]), _SCRIPT_BODY, _SOUP, st.booleans())
def test_script_content_never_comes_out(before: str, tag: str, body: str, after: str, closed: bool) -> None:
    secret = "СЕКРЕТ" + body + "СЕКРЕТ"
    html = f"<p>{before}</p><{tag} type='x'>{secret}" + (f"</{tag}>{after}" if closed else "")
    out = html_to_text(html)
    assert "СЕКРЕТ" not in out
    assert "<script" not in out.lower()


@given(st.text(alphabet=st.characters(blacklist_characters="<", blacklist_categories=("Cs",))))
def test_a_text_without_markup_is_unchanged(text: str) -> None:
    assert html_to_text(text) == text.strip()
