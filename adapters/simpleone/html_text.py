"""A journal comment's HTML -> the plain text a VK message can carry.

Agents answer in SimpleOne's rich-text editor, so a comment read from a real journal may be
HTML (`<p>Проверьте&nbsp;кабель</p>`); the bot's own comments and the emulator's are plain text.
The standard library's html.parser does the parsing (no regular expressions over markup):

- `<br>`, the end of a `<p>` or `<div>` (and of the other blocks below) and each `<li>` start a
  new line, an item prefixed "• "; a block's start begins a line when text precedes it;
- entities are unescaped (`&nbsp;` becomes a plain space), tags are dropped, and so is all the
  content of `<script>`, `<style>` and `<template>`;
- whitespace in the markup's text collapses to one space, as a browser shows it (not inside
  `<pre>`); a link keeps its address after its text when the text does not already show it;
- trailing spaces are stripped from every line and runs of blank lines collapse to one;
- a tag cut off by the end of the text is dropped, and an unparsable marked section
  (`<![foo[`, on which html.parser raises) is read as text.

A text without any markup (nothing the parser takes for a tag, a comment or a declaration) is
returned exactly as it is, apart from `strip()`: entities in it stay as typed. Limit: a plain
text with `<word … >` in it reads as markup (`if a<b and c>d`); a rich-text editor escapes
`<` in what an agent types, and the bot's own comments carry no such text in practice.
"""

from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["html_to_text"]

# Tags whose start and end break the line (their start only when text precedes it on the line).
_BLOCKS = frozenset({
    "p", "div", "ul", "ol", "table", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6",
    "section", "article", "header", "footer", "dl", "dt", "dd", "hr",
})
_HIDDEN = frozenset({"script", "style", "template"})  # their content is never text
_SPACE = " \t\n\r\f"  # HTML's ASCII whitespace; a no-break space is not collapsed


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.markup = False  # any tag, comment or declaration seen
        self._hidden = 0
        self._pre = 0
        self._links: list[tuple[str, int]] = []  # (href, where the link's text starts in parts)

    # -- output helpers

    def _tail(self) -> str:
        for part in reversed(self.parts):
            if part:
                return part[-1]
        return "\n"  # the start counts as a line start

    def _line_break(self) -> None:
        self.parts.append("\n")

    def _begin_line(self) -> None:
        if self._tail() != "\n":
            self.parts.append("\n")

    # -- parser callbacks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.markup = True
        if tag in _HIDDEN:
            self._hidden += 1
        elif self._hidden:
            return  # a <template>'s markup shows nothing
        elif tag == "br":
            self._line_break()
        elif tag == "li":
            self._begin_line()
            self.parts.append("• ")
        elif tag in _BLOCKS:
            self._begin_line()
            if tag == "pre":
                self._pre += 1
        elif tag == "a":
            href = next((v for k, v in attrs if k == "href" and v), "")
            self._links.append((href.strip(), len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        self.markup = True
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif self._hidden:
            return
        elif tag in _BLOCKS:
            self._line_break()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            shown = "".join(self.parts[start:])
            if href.lower().startswith(("http://", "https://", "mailto:")):
                address = href[len("mailto:"):] if href.lower().startswith("mailto:") else href
                if address not in shown:
                    self.parts.append(f" ({address})" if shown.strip() else address)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # `<br/>`, `<hr/>`, `<p/>`: what the start alone means (an empty element).
        self.handle_starttag(tag, attrs)
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "hr" and not self._hidden:
            self._line_break()

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if not self._pre:
            data = " ".join(_collapse(data))
            if self._tail() in " \n":
                data = data.lstrip(" ")  # one space between words, none at a line's start
        self.parts.append(data)

    def handle_comment(self, data: str) -> None:
        self.markup = True

    def handle_decl(self, decl: str) -> None:
        self.markup = True

    def handle_pi(self, data: str) -> None:
        self.markup = True

    def unknown_decl(self, data: str) -> None:
        self.markup = True


def _collapse(data: str) -> list[str]:
    """The words of a text run, with an empty word at either end where whitespace was (so that
    joining them with spaces collapses every run of HTML whitespace to one space)."""
    words: list[str] = []
    word: list[str] = []
    for char in data:
        if char in _SPACE:
            if word or not words:
                words.append("".join(word))
                word = []
        else:
            word.append(char)
    words.append("".join(word))
    return words


def _parse(text: str) -> _TextCollector:
    parser = _TextCollector()
    parser.feed(text)
    # What feed() left unparsed is a construct the text ends inside of (or text held back for a
    # possible entity). A cut-off tag, comment or declaration is dropped, not shown (close()
    # would pass it on as text); in a text without other markup it stays, as all of it does.
    rest = parser.rawdata
    if rest[:1] == "<" and (rest[1:2].isalpha() or rest[1:2] in ("/", "!", "?")):
        parser.rawdata = ""
    parser.close()
    return parser


def _tidy(text: str) -> str:
    """Trailing spaces off every line, runs of blank lines down to one, none at either end."""
    lines: list[str] = []
    for raw in text.replace("\xa0", " ").split("\n"):
        line = raw.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


def html_to_text(text: str) -> str:
    """`text` as plain text: converted if it holds markup, else only stripped. Never raises."""
    try:
        parser = _parse(text)
    except AssertionError:  # html.parser on an unknown marked section ("<![foo[…]]>")
        parser = _parse(text.replace("<![", "&lt;!["))
    if not parser.markup:
        return text.strip()
    return _tidy("".join(parser.parts))
