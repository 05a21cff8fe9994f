"""What may leave the bot as text, and JSON from outside bounded before it is parsed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.dialogue.matching import parse_payload
from engine.text_safety import (
    MAX_FILE_NAME,
    TooDeep,
    clean_file_name,
    clean_json_strings,
    clean_outgoing,
    loads_bounded,
    nesting,
)


@given(st.text())
def test_outgoing_text_has_no_control_characters_and_keeps_the_rest(text: str) -> None:
    cleaned = clean_outgoing(text)
    assert not any((ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
                   for c in cleaned)
    assert clean_outgoing(cleaned) == cleaned
    cleaned.encode("utf-8")  # no lone surrogate is left to break an encoder
    plain = "".join(c for c in text if c.isalnum() or c == " ")
    assert clean_outgoing(plain) == plain


def test_a_nul_and_escapes_are_taken_out_and_line_ends_made_one() -> None:
    assert clean_outgoing("a\x00b\x1b[31mc\r\nd\re\tf") == "ab[31mc\nd\ne\tf"
    assert clean_json_strings({"text": "x\x00y", "n": 1, "l": ["\x07z"]}) == {"text": "xy", "n": 1, "l": ["z"]}


@given(st.text(max_size=400))
def test_a_file_name_is_one_safe_part(name: str) -> None:
    cleaned = clean_file_name(name)
    assert cleaned and "/" not in cleaned and "\\" not in cleaned and len(cleaned) <= MAX_FILE_NAME
    assert not any(c.isspace() and c != " " for c in cleaned)
    assert clean_file_name(cleaned) == cleaned


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\x00b\r\nc.pdf", "a b c.pdf"), ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\скан.png", "скан.png"),
    ("doc\u202egnp.exe", "docgnp.exe"), ("", "file"), ("...", "file"),
    ("я" * 300 + ".docx", "я" * (MAX_FILE_NAME - 6) + "….docx"),
])
def test_file_names_as_shown(raw: str, shown: str) -> None:
    assert clean_file_name(raw) == shown


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=20))
def test_nesting_is_the_depth_of_json_whatever_its_strings_hold(value: object) -> None:
    text = json.dumps(value)

    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    assert nesting(text) == depth(value)
    assert nesting(json.dumps(["[[[{{", value])) == max(1, 1 + depth(value))


def test_deep_json_is_refused_before_parsing() -> None:
    with pytest.raises(TooDeep):
        loads_bounded("[" * 100_000, 32)
    assert loads_bounded('{"a": [1, "[[[["]}', 2) == {"a": [1, "[[[["]}


@pytest.mark.parametrize("payload", ["[" * 1000, "{" * 1000, '{"e":' * 300, '{"e": [[[[["x"]]]]]}'])
def test_a_deep_payload_is_no_button_and_raises_nothing(payload: str) -> None:
    assert parse_payload(payload) is None
