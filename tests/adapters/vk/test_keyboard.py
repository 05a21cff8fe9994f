"""Keyboards VK accepts whatever the reply holds; long texts split at sensible places."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from adapters.vk import keyboard
from adapters.vk.keyboard import VkMessage, render, split_text
from adapters.vk.sender import random_id
from engine.flows.vk_limits import MAX_LABEL
from engine.replies import Button, Reply


def _check_vk_rules(keyboard: str, inline: bool) -> None:
    """dev.vk.com's keyboard rules, restated independently of the renderer."""
    data = json.loads(keyboard)
    rows = data["buttons"]
    max_rows, max_buttons = (6, 10) if inline else (10, 40)
    assert len(rows) <= max_rows
    assert sum(len(r) for r in rows) <= max_buttons
    assert not (data.get("inline") and data.get("one_time"))
    for row in rows:
        assert 1 <= len(row) <= 5
        for button in row:
            action = button["action"]
            assert action["type"] == "text"
            assert 1 <= len(action["label"]) <= 40
            assert len(action["payload"]) <= 255
            json.loads(action["payload"])
            assert button.get("color", "secondary") in {"primary", "secondary", "positive", "negative"}


def test_a_reply_becomes_text_and_a_keyboard() -> None:
    reply = Reply("Меню", [[Button("Создать заявку", "create", color="primary")],
                           [Button("Мои заявки", "mine"), Button("Помощь", "help")]])
    message = render(reply)
    data = json.loads(message.keyboard)
    assert message.text == "Меню"
    assert data["one_time"] is False
    assert data["buttons"][0][0] == {"action": {"type": "text", "label": "Создать заявку", "payload": '{"e":"create"}'},
                                     "color": "primary"}
    assert [b["action"]["label"] for b in data["buttons"][1]] == ["Мои заявки", "Помощь"]


def test_no_buttons_hides_the_keyboard() -> None:
    assert json.loads(render(Reply("Готово")).keyboard) == {"buttons": [], "one_time": False}


def test_long_labels_are_shortened_and_kept_whole_in_the_text() -> None:
    full = "Системы дистанционного образования (СДО дополнительного образования)"
    message = render(Reply("Выберите:", [[Button(full, "pick", index=0)]]))
    label = json.loads(message.keyboard)["buttons"][0][0]["action"]["label"]
    assert len(label) == MAX_LABEL and label.endswith("…")
    assert message.text.endswith(full)
    # A name the text already shows in full is not repeated.
    assert render(Reply(f"1. {full}", [[Button(full, "pick", index=0)]])).text == f"1. {full}"


labels = st.text(min_size=0, max_size=60)
buttons = st.builds(Button, labels, st.sampled_from(["menu", "pick", "x" * 300]),
                    st.one_of(st.none(), st.integers(0, 10**6)),
                    st.sampled_from([None, "primary", "negative", "purple"]))


@given(st.lists(st.lists(buttons, min_size=0, max_size=9), max_size=14), st.booleans())
def test_any_reply_renders_to_a_keyboard_vk_accepts(rows: list[list[Button]], inline: bool) -> None:
    _check_vk_rules(render(Reply("текст", rows, inline=inline)).keyboard, inline)


def _fresh(reply: Reply) -> VkMessage:
    """The reply rendered with nothing cached."""
    keyboard._RENDERED.clear()
    return render(reply)


def _copy(rows: list[list[Button]]) -> list[list[Button]]:
    return [[Button(b.label, b.event, b.index, b.color, b.number) for b in row] for row in rows]


@given(st.lists(st.tuples(st.lists(st.lists(buttons, max_size=6), max_size=8), st.booleans(),
                          st.sampled_from(["текст", "Выберите:"])), min_size=1, max_size=8))
def test_a_cached_keyboard_is_the_keyboard_rendered_afresh(grids: list[tuple[list[list[Button]], bool, str]]) -> None:
    replies = [Reply(text, rows, inline=inline) for rows, inline, text in grids]
    fresh = [_fresh(r) for r in replies]
    keyboard._RENDERED.clear()
    # Every grid cached, then each rendered again from equal (not the same) buttons.
    first = [render(r) for r in replies]
    again = [render(Reply(r.text, _copy(r.buttons), inline=r.inline)) for r in replies]
    assert first == again == fresh


def test_the_cache_of_keyboards_is_bounded() -> None:
    keyboard._RENDERED.clear()
    for i in range(keyboard.RENDERED_KEPT + 50):
        render(Reply("t", [[Button(f"Кнопка {i}", "pick", index=i)]]))
    assert len(keyboard._RENDERED) == keyboard.RENDERED_KEPT
    last = keyboard.RENDERED_KEPT + 49
    newest = render(Reply("t", [[Button(f"Кнопка {last}", "pick", index=last)]]))
    assert json.loads(newest.keyboard)["buttons"][0][0]["action"]["label"] == f"Кнопка {last}"


def test_text_is_split_at_paragraphs_lines_and_words() -> None:
    paragraph = "Абзац " * 300
    parts = split_text(f"{paragraph}\n\n{paragraph}\n\n{paragraph}", limit=4096)
    assert len(parts) == 2 and all(len(p) <= 4096 for p in parts)
    assert parts[0].endswith("Абзац")
    one_word = "я" * 10000
    assert [len(p) for p in split_text(one_word)] == [4096, 4096, 1808]
    assert split_text("   ") == ["…"]


@given(st.text(max_size=20000))
def test_splitting_keeps_every_word(text: str) -> None:
    parts = split_text(text, limit=500)
    assert all(0 < len(p) <= 500 for p in parts)
    if text.strip():  # cuts fall on whitespace only: every other character survives, in order
        assert "".join("".join(parts).split()) == "".join(text.split())
    else:
        assert parts == ["…"]


def test_random_ids_are_stable_distinct_and_nonzero() -> None:
    assert random_id("ev1:0", 0) == random_id("ev1:0", 0)
    ids = {random_id(f"ev{i}:{j}", k) for i in range(50) for j in range(3) for k in range(3)}
    assert len(ids) == 450 and 0 not in ids and max(ids) < 2**63


def test_a_paragraph_end_is_preferred_to_a_line_or_a_word() -> None:
    text = "а" * 3600 + "\n\n" + ("слово " * 80) + "\n" + "б" * 300
    parts = split_text(text)
    assert parts[0] == "а" * 3600 and parts[1].startswith("слово")
