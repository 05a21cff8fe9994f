"""Reading a ticket's public comments from its journal (sys_activity_feed_item), over HTTP
against the emulator: only `additional_comments` entries ever come back, never work notes."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.simpleone.transport import AiohttpTransport, HttpAnswer, HttpRequest
from emulators.simpleone.server import RunningEmulator
from engine.ports import Comment, Journal, TicketSystem
from tests.simpleone_fixtures import STATIC_TOKEN, USERNAME

INCIDENT = "itsm_incident"
TAIL = "(добавлено через бот ВКонтакте)"
JOURNAL = Journal(bot_tail=TAIL)
SECRET = "Пароль от админки: Qwerty123"  # a work note no user may ever read


class ServerIgnoringQueries:
    """Real HTTP to the emulator, but the journal's sysparm_query is dropped on the way: the
    server answers every entry of every ticket, work notes included (a server that ignores or
    misreads the filter)."""

    def __init__(self) -> None:
        self.http = AiohttpTransport(tls=False, max_connections=4, connect_timeout=5, read_timeout=5,
                                     pool_timeout=5)
        self.queries: list[str] = []

    async def send(self, request: HttpRequest) -> HttpAnswer:
        if request.url.endswith("/sys_activity_feed_item"):
            self.queries.extend(v for k, v in request.params if k == "sysparm_query")
            request = replace(request, params=[(k, v) for k, v in request.params if k != "sysparm_query"])
        return await self.http.send(request)

    async def close(self) -> None:
        await self.http.close()


def new_ticket(emulator: RunningEmulator, subject: str = "Принтер") -> tuple[str, str]:
    sys_id = emulator.state.create(INCIDENT, {"subject": subject}, author=USERNAME)
    return sys_id, emulator.state.get(INCIDENT, sys_id)["number"]


async def busy_ticket(client: SimpleOneClient, emulator: RunningEmulator) -> tuple[str, list[str]]:
    """A ticket whose journal mixes the bot's and agents' comments with work notes and state
    changes (and another ticket's comments in between); returns it and its public texts."""
    state = emulator.state
    sys_id, number = new_ticket(emulator)
    _other, other_number = new_ticket(emulator, "Чужая заявка")
    await client.add_comment(INCIDENT, sys_id, "additional_comments", f"Не печатает\n\n{TAIL}")
    state.act_as_agent("note", number, SECRET)
    state.act_as_agent("comment", other_number, "Чужой комментарий")
    state.act_as_agent("comment", number, "Проверьте кабель")
    state.act_as_agent("state", number, "3")
    await client.add_comment(INCIDENT, sys_id, "work_notes", f"{SECRET} (bot)")
    state.act_as_agent("note", number, SECRET)
    state.act_as_agent("comment", number, "Перезагрузите принтер")
    return sys_id, [f"Не печатает\n\n{TAIL}", "Проверьте кабель", "Перезагрузите принтер"]


def test_the_port_has_list_comments(client: SimpleOneClient) -> None:
    port: TicketSystem = client
    assert callable(port.list_comments)


async def test_public_comments_only_oldest_first_with_who_wrote_them(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    sys_id, texts = await busy_ticket(client, emulator)
    comments = await client.list_comments(INCIDENT, sys_id, journal=JOURNAL)
    assert [c.text for c in comments] == texts
    assert [(c.author, c.by_bot) for c in comments] == [(USERNAME, True), ("agent", False), ("agent", False)]
    assert all(c.created_at == emulator.state.now_text() for c in comments)
    feed = {row["sys_id"]: row for row in emulator.state.feed(INCIDENT, sys_id)}
    assert all(feed[c.sys_id]["type_name"] == "additional_comments.itsm_incident" for c in comments)


async def test_after_reads_only_newer_comments(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    sys_id, texts = await busy_ticket(client, emulator)
    first, *rest = await client.list_comments(INCIDENT, sys_id)
    assert [c.text for c in await client.list_comments(INCIDENT, sys_id, after=first.sys_id)] == texts[1:]
    assert await client.list_comments(INCIDENT, sys_id, after=rest[-1].sys_id) == []
    emulator.state.act_as_agent("comment", sys_id, "Готово")
    (new,) = await client.list_comments(INCIDENT, sys_id, after=rest[-1].sys_id)
    assert new.text == "Готово" and int(new.sys_id) > int(rest[-1].sys_id)


async def test_paging_with_limit_and_after_reads_everything_once(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    sys_id, texts = await busy_ticket(client, emulator)
    for limit in (1, 2):
        seen: list[Comment] = []
        after = None
        while page := await client.list_comments(INCIDENT, sys_id, after=after, limit=limit):
            assert len(page) <= limit
            seen.extend(page)
            after = page[-1].sys_id
        assert [c.text for c in seen] == texts


@pytest.mark.parametrize("ignoring", [False, True], ids=["honest server", "server ignoring the query"])
@pytest.mark.parametrize("nested", [False, True], ids=["plain content", "display_value content"])
async def test_work_notes_never_reach_a_user_whatever_the_query_or_paging(
    emulator: RunningEmulator, ignoring: bool, nested: bool
) -> None:
    emulator.state.nested_journal_content = nested
    transport = ServerIgnoringQueries() if ignoring else None
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN), transport=transport) as client:
        sys_id, texts = await busy_ticket(client, emulator)
        every_entry = [row["sys_id"] for row in emulator.state.records("sys_activity_feed_item")]
        assert len(every_entry) == 8  # notes, history and the other ticket's comment are all there
        for after in [None, *every_entry]:
            for limit in (1, 2, 3, 50):
                comments = await client.list_comments(INCIDENT, sys_id, after=after, limit=limit)
                assert len(comments) <= limit
                for comment in comments:
                    assert SECRET not in comment.text and comment.text in texts
                    if after is not None:
                        assert int(comment.sys_id) > int(after)
        # A page of nothing but work notes is paged past, not taken for the end (a server that
        # ignores the query gives its first page again and again: nothing newer, and no note).
        for _ in range(5):
            emulator.state.act_as_agent("note", sys_id, SECRET)
        emulator.state.act_as_agent("comment", sys_id, "Последний")
        last_seen = (await client.list_comments(INCIDENT, sys_id))[-2].sys_id
        newer = [c.text for c in await client.list_comments(INCIDENT, sys_id, after=last_seen, limit=2)]
        assert newer == ([] if ignoring else ["Последний"])
    if isinstance(transport, ServerIgnoringQueries):
        assert transport.queries  # the filter was asked for, and dropped on the way


async def test_the_documented_query_is_asked(emulator: RunningEmulator) -> None:
    transport = ServerIgnoringQueries()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN), transport=transport) as client:
        sys_id, _number = new_ticket(emulator)
        await client.list_comments(INCIDENT, sys_id, after="166031411802010329", limit=7)
    assert transport.queries == [f"type_id.name=additional_comments.itsm_incident^record_id={sys_id}"
                                 "^sys_id>166031411802010329^ORDERBYsys_id"]


async def test_a_custom_journal_table_is_read(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    sys_id, _number = new_ticket(emulator)
    emulator.state.tables["u_feed"] = {}
    emulator.state.add_record("u_feed", {
        "type_id": emulator.state.activity_type("u_public.itsm_incident"),
        "content": '{"message": "Из своей таблицы"}', "record_id": sys_id,
    })
    comments = await client.list_comments(INCIDENT, sys_id, journal=Journal(public="u_public", table="u_feed"))
    assert [c.text for c in comments] == ["Из своей таблицы"]
    assert await client.list_comments(INCIDENT, sys_id) == []


@pytest.mark.parametrize("content", [
    "not json", '{"message": 5}', '{"message": {"value": "x"}}', '["message"]', '{"text": "hi"}', "",
])
async def test_an_unreadable_content_is_skipped_with_a_warning_never_shown_raw(
    client: SimpleOneClient, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    sys_id, number = new_ticket(emulator)
    emulator.state.act_as_agent("comment", number, "До")
    bad = emulator.state.add_record("sys_activity_feed_item", {
        "type_id": emulator.state.activity_type("additional_comments.itsm_incident"),
        "content": content, "record_id": sys_id,
    })
    emulator.state.act_as_agent("comment", number, "После")
    with caplog.at_level(logging.WARNING, logger="adapters.simpleone.journal"):
        comments = await client.list_comments(INCIDENT, sys_id)
    assert [c.text for c in comments] == ["До", "После"]
    assert [r.getMessage() for r in caplog.records] == [
        f"journal entry {bad} of {sys_id}: its content is not a comment's JSON; skipped"]


async def test_the_bot_s_own_comments_are_told_by_account_or_by_tail(
    make_client: Any, emulator: RunningEmulator
) -> None:
    by_token = make_client(token=STATIC_TOKEN)  # knows no username: only the tail tells
    sys_id, number = new_ticket(emulator)
    await by_token.add_comment(INCIDENT, sys_id, "additional_comments", f"Текст\n\n{TAIL}")
    emulator.state.act_as_agent("comment", number, "Ответ агента")
    emulator.state.act_as_agent("comment", number, f"Агент процитировал: {TAIL} и ответил")
    assert [c.by_bot for c in await by_token.list_comments(INCIDENT, sys_id, journal=JOURNAL)] == [
        True, False, False]
    assert [c.by_bot for c in await by_token.list_comments(INCIDENT, sys_id)] == [False, False, False]
    by_login = make_client()  # signed in as USERNAME: its entries are its own without a tail
    assert [c.by_bot for c in await by_login.list_comments(INCIDENT, sys_id)] == [True, False, False]


@pytest.mark.parametrize("nested", [False, True], ids=["plain content", "display_value content"])
async def test_an_agent_s_html_comment_reads_as_plain_text(
    client: SimpleOneClient, emulator: RunningEmulator, nested: bool
) -> None:
    emulator.state.nested_journal_content = nested
    sys_id, number = new_ticket(emulator)
    html = "<p>Здравствуйте!</p><p>Проверьте&nbsp;кабель:</p><ul><li>питание</li><li>сеть</li></ul><p><br></p>"
    emulator.state.act_as_agent("comment", number, html)  # stored as given, as the editor sends it
    emulator.state.act_as_agent("comment", number, "  Обычный текст &amp; <3  ")
    assert emulator.state.journal(INCIDENT, sys_id)[0].text == html
    comments = await client.list_comments(INCIDENT, sys_id)
    assert [c.text for c in comments] == ["Здравствуйте!\nПроверьте кабель:\n• питание\n• сеть",
                                          "Обычный текст &amp; <3"]
