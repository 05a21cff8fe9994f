"""Two-way support (issue 14) over HTTP against the emulator: the journal of many tickets in one
query (journal_since), a ticket's newest comments (latest_comments), writing fields
(update_ticket), the names of a ticket's files (list_attachment_names) and recently closed
tickets (list_tickets closed_since). Only public comments ever come back, whatever the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.simpleone.client import RecordNotFound, SimpleOneClient, SimpleOneConfig
from adapters.simpleone.transport import AiohttpTransport, HttpAnswer, HttpRequest
from emulators.simpleone.server import RunningEmulator
from emulators.simpleone.state import ManualClock
from engine.ports import Attachment, Comment, TicketSystem, TicketSystemRejected, TicketSystemUnavailable, Upload
from tests.simpleone_fixtures import STATIC_TOKEN, USERNAME

INCIDENT = "itsm_incident"
FEED_PATH = "/rest/v1/table/sys_activity_feed_item"
SECRET = "Пароль от админки: Qwerty123"  # a work note no user may ever read


class Recorder:
    """Real HTTP to the emulator, recording the journal queries asked; `ignoring`: the query is
    dropped on the way, so the server answers every entry of every ticket (work notes too)."""

    def __init__(self, *, ignoring: bool = False) -> None:
        self.http = AiohttpTransport(tls=False, max_connections=4, connect_timeout=5, read_timeout=5,
                                     pool_timeout=5)
        self.ignoring = ignoring
        self.queries: list[str] = []

    async def send(self, request: HttpRequest) -> HttpAnswer:
        if request.url.endswith("/sys_activity_feed_item"):
            self.queries.extend(v for k, v in request.params if k == "sysparm_query")
            if self.ignoring:
                request = replace(request, params=[(k, v) for k, v in request.params if k != "sysparm_query"])
        return await self.http.send(request)

    async def close(self) -> None:
        await self.http.close()


def new_ticket(emulator: RunningEmulator, subject: str = "Принтер", **fields: str) -> str:
    return emulator.state.create(INCIDENT, {"subject": subject, **fields}, author=USERNAME)


def feed_reads(emulator: RunningEmulator) -> int:
    return sum(1 for e in emulator.state.request_log if e.method == "GET" and e.path == FEED_PATH)


def comment(emulator: RunningEmulator, sys_id: str, text: str) -> None:
    emulator.state.act_as_agent("comment", sys_id, text)


def note(emulator: RunningEmulator, sys_id: str) -> None:
    emulator.state.act_as_agent("note", sys_id, SECRET)


def three_busy_tickets(emulator: RunningEmulator) -> tuple[list[str], str, list[tuple[str, str]]]:
    """Three tickets whose comments interleave with work notes, state changes and a fourth
    ticket's comments; returns them, the fourth, and the public (ticket, text) in order."""
    a, b, c, other = (new_ticket(emulator, s) for s in ("A", "B", "C", "Чужая"))
    public: list[tuple[str, str]] = []
    for round_ in range(2):
        for ticket in (a, b, c):
            comment(emulator, ticket, f"{ticket[-3:]} #{round_}")
            public.append((ticket, f"{ticket[-3:]} #{round_}"))
            note(emulator, ticket)
        comment(emulator, other, "Чужой комментарий")
        emulator.state.act_as_agent("state", b, str(2 + round_))
    return [a, b, c], other, public


def test_the_client_is_still_a_ticket_system(client: SimpleOneClient) -> None:
    port: TicketSystem = client
    for name in ("journal_since", "latest_comments", "update_ticket", "list_attachment_names"):
        assert callable(getattr(port, name))


# --------------------------------------------------------------------------- journal_since


async def test_journal_since_reads_several_tickets_in_one_query(emulator: RunningEmulator) -> None:
    tickets, _other, public = three_busy_tickets(emulator)
    recorder = Recorder()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN), transport=recorder) as client:
        emulator.state.request_log.clear()
        comments = await client.journal_since(INCIDENT, tickets, after=None)
    assert feed_reads(emulator) == 1
    assert recorder.queries == [f"type_id.name=additional_comments.itsm_incident^record_idIN{'@'.join(tickets)}"
                                "^ORDERBYsys_id"]
    assert [(c.record_id, c.text) for c in comments] == public
    assert [int(c.sys_id) for c in comments] == sorted(int(c.sys_id) for c in comments)
    assert all(c.author == "agent" and not c.by_bot for c in comments)


async def test_journal_since_reads_only_after_the_cursor(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    tickets, _other, public = three_busy_tickets(emulator)
    every = await client.journal_since(INCIDENT, tickets, after=None)
    for index, seen in enumerate(every):
        newer = await client.journal_since(INCIDENT, tickets, after=seen.sys_id)
        assert [(c.record_id, c.text) for c in newer] == public[index + 1 :]
    comment(emulator, tickets[2], "Новое")
    (new,) = await client.journal_since(INCIDENT, tickets, after=every[-1].sys_id)
    assert (new.record_id, new.text) == (tickets[2], "Новое")
    # Duplicated ids are asked once; no ids, no request.
    emulator.state.request_log.clear()
    assert await client.journal_since(INCIDENT, [tickets[2], tickets[2]], after=every[-1].sys_id) == [new]
    assert await client.journal_since(INCIDENT, [], after=None) == []
    assert await client.journal_since(INCIDENT, tickets, after=None, limit=0) == []
    assert feed_reads(emulator) == 1


async def test_journal_since_pages_past_the_limit_and_reads_everything_once(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    tickets, _other, public = three_busy_tickets(emulator)
    for limit in (1, 2, 4):
        seen: list[Comment] = []
        after = None
        while page := await client.journal_since(INCIDENT, tickets, after=after, limit=limit):
            assert len(page) <= limit
            seen.extend(page)
            after = page[-1].sys_id
        assert [(c.record_id, c.text) for c in seen] == public
    # A full page of entries left out (public by type, but unreadable) is paged past with
    # sys_id>, not taken for the end.
    for _ in range(5):
        emulator.state.add_record("sys_activity_feed_item", {
            "type_id": emulator.state.activity_type("additional_comments.itsm_incident"),
            "content": "not json", "record_id": tickets[0],
        })
    comment(emulator, tickets[1], "После заметок")
    emulator.state.request_log.clear()
    (last,) = await client.journal_since(INCIDENT, tickets, after=after, limit=2)
    assert last.text == "После заметок"
    assert feed_reads(emulator) > 1


@pytest.mark.parametrize("ignoring", [False, True], ids=["honest server", "server ignoring the query"])
async def test_journal_since_never_returns_a_work_note_or_another_ticket_s_comment(
    emulator: RunningEmulator, ignoring: bool
) -> None:
    tickets, other, public = three_busy_tickets(emulator)
    recorder = Recorder(ignoring=ignoring)
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN), transport=recorder) as client:
        await client.add_comment(INCIDENT, tickets[0], "work_notes", f"{SECRET} (bot)")
        every_entry = [row["sys_id"] for row in emulator.state.records("sys_activity_feed_item")]
        for after in [None, *every_entry]:
            for limit in (1, 3, 200):
                comments = await client.journal_since(INCIDENT, tickets, after=after, limit=limit)
                assert len(comments) <= limit
                for c in comments:
                    assert SECRET not in c.text and (c.record_id, c.text) in public
                    assert c.record_id != other and (after is None or int(c.sys_id) > int(after))
    assert recorder.queries


async def test_journal_since_asks_at_most_100_ids_per_query(emulator: RunningEmulator) -> None:
    tickets = [new_ticket(emulator, f"T{i}") for i in range(250)]
    for index in (249, 0, 120, 180, 5):  # comments in every batch, in this order of time
        comment(emulator, tickets[index], f"#{index}")
    recorder = Recorder()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN), transport=recorder) as client:
        emulator.state.request_log.clear()
        comments = await client.journal_since(INCIDENT, tickets, after=None)
        assert [c.text for c in comments] == ["#249", "#0", "#120", "#180", "#5"]  # merged, oldest first
        assert feed_reads(emulator) == 3
        asked = [q.split("^")[1].removeprefix("record_idIN").split("@") for q in recorder.queries]
        assert [len(ids) for ids in asked] == [100, 100, 50]
        assert [i for ids in asked for i in ids] == tickets
        # The limit takes the oldest across batches: what is left out is newer than the last.
        first_three = await client.journal_since(INCIDENT, tickets, after=None, limit=3)
        assert [c.text for c in first_three] == ["#249", "#0", "#120"]
        rest = await client.journal_since(INCIDENT, tickets, after=first_three[-1].sys_id, limit=3)
        assert [c.text for c in rest] == ["#180", "#5"]


# --------------------------------------------------------------------------- latest_comments


async def test_latest_comments_newest_page_then_the_page_before(emulator: RunningEmulator) -> None:
    sys_id = new_ticket(emulator)
    texts = [f"Ответ {i}" for i in range(7)]
    for text in texts:
        comment(emulator, sys_id, text)
        note(emulator, sys_id)
    comment(emulator, new_ticket(emulator, "Чужая"), "Чужой")
    recorder = Recorder()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN), transport=recorder) as client:
        newest = await client.latest_comments(INCIDENT, sys_id, limit=3)
        assert [c.text for c in newest] == texts[4:]  # returned oldest first
        assert all(c.record_id == sys_id for c in newest)
        before = await client.latest_comments(INCIDENT, sys_id, before=newest[0].sys_id, limit=3)
        assert [c.text for c in before] == texts[1:4]
        oldest = await client.latest_comments(INCIDENT, sys_id, before=before[0].sys_id, limit=3)
        assert [c.text for c in oldest] == texts[:1]
        assert await client.latest_comments(INCIDENT, sys_id, before=oldest[0].sys_id) == []
        assert [c.text for c in await client.latest_comments(INCIDENT, sys_id)] == texts[2:]  # default 5
    assert recorder.queries[1] == (f"type_id.name=additional_comments.itsm_incident^record_id={sys_id}"
                                   f"^sys_id<{newest[0].sys_id}^ORDERBYDESCsys_id")


@pytest.mark.parametrize("ignoring", [False, True], ids=["honest server", "server ignoring the query"])
async def test_latest_comments_never_returns_a_work_note(emulator: RunningEmulator, ignoring: bool) -> None:
    sys_id = new_ticket(emulator)
    for i in range(3):
        comment(emulator, sys_id, f"Ответ {i}")
        for _ in range(4):
            note(emulator, sys_id)  # a server ignoring the query: pages of notes, paged past downwards
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token=STATIC_TOKEN),
                               transport=Recorder(ignoring=ignoring)) as client:
        every_entry = [row["sys_id"] for row in emulator.state.records("sys_activity_feed_item")]
        for before in [None, *every_entry]:
            for limit in (1, 2, 5):
                comments = await client.latest_comments(INCIDENT, sys_id, before=before, limit=limit)
                assert len(comments) <= limit
                assert [int(c.sys_id) for c in comments] == sorted(int(c.sys_id) for c in comments)
                for c in comments:
                    assert SECRET not in c.text and (before is None or int(c.sys_id) < int(before))
        if not ignoring:
            assert [c.text for c in await client.latest_comments(INCIDENT, sys_id, limit=2)] == ["Ответ 1", "Ответ 2"]


# --------------------------------------------------------------------------- update_ticket


async def test_update_ticket_changes_the_state_and_writes_a_comment(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    sys_id = new_ticket(emulator)
    await client.authenticate()
    emulator.state.request_log.clear()
    await client.update_ticket(INCIDENT, sys_id, {"state": "7", "additional_comments": "Проблема решена, спасибо"})
    assert [(e.method, e.status) for e in emulator.state.request_log] == [("PATCH", 200)]
    assert emulator.state.get(INCIDENT, sys_id)["state"] == "7"
    (entry,) = emulator.state.journal(INCIDENT, sys_id)
    assert (entry.field, entry.text, entry.author) == ("additional_comments", "Проблема решена, спасибо", USERNAME)
    assert [row["type_name"] for row in emulator.state.feed(INCIDENT, sys_id)] == [
        "additional_comments.itsm_incident", "history"]
    (read,) = await client.latest_comments(INCIDENT, sys_id)
    assert read.text == "Проблема решена, спасибо" and read.by_bot
    emulator.state.request_log.clear()
    await client.update_ticket(INCIDENT, sys_id, {})  # nothing to write: nothing sent
    assert emulator.state.request_log == []


async def test_who_made_the_latest_state_change_is_read_from_the_history(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    sys_id = new_ticket(emulator)
    assert await client.state_changed_by_bot(INCIDENT, sys_id) is False  # no history yet
    await client.update_ticket(INCIDENT, sys_id, {"state": "10", "additional_comments": "Подтверждено"})
    assert await client.state_changed_by_bot(INCIDENT, sys_id) is True
    comment(emulator, sys_id, "Комментарий после")  # not a state change: does not count
    assert await client.state_changed_by_bot(INCIDENT, sys_id) is True
    emulator.state.act_as_agent("state", sys_id, "2")
    assert await client.state_changed_by_bot(INCIDENT, sys_id) is False


async def test_update_ticket_is_never_retried_and_fails_as_add_comment_does(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    sys_id = new_ticket(emulator)
    await client.authenticate()
    emulator.state.request_log.clear()
    emulator.state.faults.fail_after_write(method="PATCH")
    with pytest.raises(TicketSystemUnavailable) as unclear:
        await client.update_ticket(INCIDENT, sys_id, {"state": "7"})
    assert unclear.value.maybe_done
    assert emulator.state.get(INCIDENT, sys_id)["state"] == "7"  # done, and sent once only
    emulator.state.faults.fail_next(status=503, method="PATCH")
    with pytest.raises(TicketSystemUnavailable) as refused:
        await client.update_ticket(INCIDENT, sys_id, {"state": "2"})
    assert not refused.value.maybe_done
    assert [e.method for e in emulator.state.request_log] == ["PATCH", "PATCH"]
    with pytest.raises(RecordNotFound):
        await client.update_ticket(INCIDENT, "166031411802999999", {"state": "7"})
    with pytest.raises(TicketSystemRejected):
        await client.update_ticket(INCIDENT, sys_id, {"state; drop": "7"})
    assert emulator.state.get(INCIDENT, sys_id)["state"] == "7"


# --------------------------------------------------------------------------- list_attachment_names


async def test_list_attachment_names_through_the_document_id_an_upload_showed(
    make_client: Callable[..., SimpleOneClient], client: SimpleOneClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    sys_id, other = new_ticket(emulator), new_ticket(emulator, "Чужая")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"jpeg")
    assert await client.list_attachment_names(INCIDENT, sys_id) == []  # no Document ID known yet
    landed = await client.upload_files(INCIDENT, sys_id, [Upload("photo.jpg", "image/jpeg", photo)])
    emulator.state.add_attachment(INCIDENT, sys_id, "лог.txt", "text/plain", b"log")  # an agent's file
    emulator.state.add_attachment(INCIDENT, other, "чужой.pdf", "application/pdf", b"pdf")
    assert await client.list_attachment_names(INCIDENT, sys_id) == ["photo.jpg", "лог.txt"]
    assert await client.list_attachment_names(INCIDENT, other) == []
    # Another client (another process, a restart) knows nothing, unless told a known file.
    fresh = make_client(token=STATIC_TOKEN)
    assert await fresh.list_attachment_names(INCIDENT, sys_id) == []
    assert await fresh.list_attachment_names(INCIDENT, sys_id, known=landed) == ["photo.jpg", "лог.txt"]
    bare = [Attachment("photo.jpg", 4)]  # no ids: found by name and size, the only such row
    assert await make_client().list_attachment_names(INCIDENT, sys_id, known=bare) == ["photo.jpg", "лог.txt"]
    # With the Document ID known, a failed read raises as any read does.
    emulator.state.faults.fail_next(count=5, status=500, path_prefix="/rest/v1/table/sys_attachment")
    with pytest.raises(TicketSystemUnavailable):
        await client.list_attachment_names(INCIDENT, sys_id)


async def test_list_attachment_names_is_empty_when_the_upload_answer_names_nothing(
    client: SimpleOneClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    sys_id = new_ticket(emulator)
    emulator.state.upload_reply = "empty"
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"jpeg")
    assert await client.upload_files(INCIDENT, sys_id, [Upload("photo.jpg", "image/jpeg", photo)]) == []
    emulator.state.request_log.clear()
    assert await client.list_attachment_names(INCIDENT, sys_id) == []
    assert emulator.state.request_log == []  # nothing to ask without a Document ID


# --------------------------------------------------------------------------- list_tickets closed_since


async def test_list_tickets_closed_since_lists_recently_closed_tickets_newest_first(
    client: SimpleOneClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    caller = emulator.state.add_user("ivanov@ranepa.ru", "Иван", "Иванов")
    stranger = emulator.state.add_user("petrov@ranepa.ru", "Пётр", "Петров")
    closed_long_ago = new_ticket(emulator, "Давно", caller=caller)
    emulator.state.update(INCIDENT, closed_long_ago, {"state": "10", "active": "0"}, author="agent")
    clock.advance(86400)
    since = emulator.state.now_text()
    first = new_ticket(emulator, "Первая", caller=caller)
    clock.advance(60)
    second = new_ticket(emulator, "Вторая", caller=caller)
    still_open = new_ticket(emulator, "Открытая", caller=caller)
    strangers = new_ticket(emulator, "Чужая", caller=stranger)
    for sys_id in (first, second, strangers):
        emulator.state.update(INCIDENT, sys_id, {"state": "7", "active": "0"}, author="agent")
    emulator.state.update(INCIDENT, closed_long_ago, {"subject": "Давно (правка)"}, author="agent")  # updated now
    assert emulator.state.get(INCIDENT, still_open)["active"] == "1"
    closed = await client.list_tickets(caller, [INCIDENT], active_only=False, limit=10, closed_since=since)
    assert [t.sys_id for t in closed] == [second, first, closed_long_ago]
    assert all(not t.active and t.updated_at >= since for t in closed)
    clock.advance(60)
    later = emulator.state.now_text()
    assert await client.list_tickets(caller, [INCIDENT], active_only=False, limit=10, closed_since=later) == []
    assert [t.sys_id for t in await client.list_tickets(caller, [INCIDENT], active_only=False, limit=1,
                                                        closed_since=since)] == [second]
    with pytest.raises(ValueError, match="active_only"):
        await client.list_tickets(caller, [INCIDENT], active_only=True, limit=10, closed_since=since)
    with pytest.raises(ValueError, match="YYYY"):
        await client.list_tickets(caller, [INCIDENT], active_only=False, limit=10, closed_since="вчера")
