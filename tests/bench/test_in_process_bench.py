"""bench/in_process.py runs both bots end to end, and every reply is what the dialogue says: the
bench cannot silently measure a bot that answers something else (or nothing). Not timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.in_process import STEPS, DialogueError, InProcessVk, check_nothing_more, dialogue, measure


@pytest.mark.parametrize("kind", ["supportbot", "vkbottle"])
async def test_two_users_through_the_dialogue(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # vkbottle's polling saves its ts under the working directory
    done = await measure(kind, 2, tmp_path, warmup=1, repeat=2)  # raises on any reply the dialogue does not say
    assert {mode: m.events for mode, m in done.items()} == {"seq": 2 * 2 * len(STEPS), "conc": 2 * 2 * len(STEPS)}


async def test_a_wrong_reply_fails_the_run() -> None:
    vk = InProcessVk()
    user = vk.user(7)
    # A "bot" that answers the first step with something the dialogue does not say.
    vk.call("messages.send", {"peer_id": 7, "message": "Что-то другое", "random_id": 1})
    with pytest.raises(DialogueError, match="Главное меню"):
        await dialogue(user)


def test_a_reply_too_many_fails_the_run() -> None:
    vk = InProcessVk()
    for n in range(len(STEPS) + 1):
        vk.call("messages.send", {"peer_id": 7, "message": f"ответ {n}", "random_id": n + 1})
    with pytest.raises(DialogueError, match="8 messages for 7 steps"):
        check_nothing_more(vk, [7])
