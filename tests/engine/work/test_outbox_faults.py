"""Issue 4's fault suite: tickets created through the outbox while SimpleOne (the emulator, over
HTTP) is slow, failing, hanging, dropping connections, answering HTML, expiring tokens or down
for ten (simulated) minutes.

For each: every ticket exists exactly once afterwards, with the text as typed and its marker;
every user learned exactly one number, that ticket's — in the answer or in one notice; no
outbox item is left failed or untold (Rig.check_tickets). Crash tests live elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.simpleone.faults import FaultKind, FaultRule
from emulators.simpleone.state import UploadReply
from engine.actions.ticket_items import UPLOAD
from engine.flows.model import FlowSet
from engine.ports import Attachment, Incoming, IncomingFile, Journal, OutboxItem, Upload
from engine.work.outbox import OutboxPolicy
from engine.work.ticket_work import ticket_executors
from supportbot.conversation_world import EmulatorWorld
from tests.outbox_world import INCIDENTS, POLICY, QUEUED, Rig, User

LOGIN = "/v1/auth/login"  # the documented login, the one the client uses
HANG = 1.0  # how long the emulator holds a hung request: well past the client's read timeout


@pytest.fixture
async def rig(world: EmulatorWorld, flow_set: FlowSet, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await Rig.open(world, flow_set, tmp_path / "bot.db")
    yield r
    world.emulator.faults.clear()
    await r.close()


def statuses(rig: Rig, mark: int, method: str, prefix: str = INCIDENTS) -> list[int]:
    """Statuses the emulator logged; 499 = dropped or hung (0 = a hang it still holds)."""
    return [s or 499 for m, p, s in rig.requests_since(mark) if m == method and p.startswith(prefix)]


# ---------------------------------------------------------------------- one fault at a time


async def test_latency_slows_answers_but_loses_nothing(rig: Rig) -> None:
    users = await rig.sign_in_all(6)
    rig.world.emulator.faults.latency = 0.2
    await rig.create_all(users)
    await rig.settle()
    await rig.check_tickets()
    # 0.2 s per request is under the 0.3 s read timeout: no attempt had to be repeated.
    assert rig.worker.tries == 6


async def test_a_burst_of_500s_before_the_write_is_retried(rig: Rig) -> None:
    users = await rig.sign_in_all(6)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_next(3, method="POST", path_prefix=INCIDENTS)
    await rig.create_all(users)
    await rig.settle()
    await rig.check_tickets()
    posts = statuses(rig, mark, "POST")
    assert sorted(posts) == [200] * 6 + [500] * 3
    assert rig.worker.tries == 6 + 3  # each 500 cost one attempt, none wrote anything


async def test_tokens_expiring_mid_run_mean_one_new_login(rig: Rig) -> None:
    users = await rig.sign_in_all(6)
    await asyncio.gather(*(rig.draft(u) for u in users))
    await asyncio.gather(*(rig.submit(u) for u in users[:3]))
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.expire_tokens()
    await asyncio.gather(*(rig.submit(u) for u in users[3:]))
    await rig.settle()
    await rig.check_tickets()
    log = rig.requests_since(mark)
    assert 401 in [s for _, _, s in log]
    # Every request refused at once renews the same stale token: one login, not one per request.
    assert [s for m, p, s in log if p == LOGIN] == [200]
    assert rig.worker.tries == 6  # a 401 is renewed inside the call, never a failed attempt


@pytest.mark.parametrize("mode", ["hang", "error", "drop", "html"])
async def test_a_write_committed_but_answered_badly_is_found_not_repeated(rig: Rig, mode: FaultKind) -> None:
    """The timeout (hang), 5xx, dropped connection or HTML page comes after the ticket was
    written: the look-up by marker right after the failure finds it, in the same attempt."""
    users = await rig.sign_in_all(6)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_after_write(3, mode=mode, status=502 if mode == "html" else 500,
                                               method="POST", path_prefix=INCIDENTS, seconds=HANG)
    await rig.create_all(users)
    await rig.settle()
    await rig.check_tickets()
    bad = {"hang": 499, "drop": 499, "error": 500, "html": 502}[mode]
    assert sorted(statuses(rig, mark, "POST")) == sorted([200] * 3 + [bad] * 3)
    assert rig.worker.tries == 6


async def test_connections_dropped_before_the_write_are_retried(rig: Rig) -> None:
    users = await rig.sign_in_all(6)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.drop_next(2, method="POST", path_prefix=INCIDENTS)
    rig.world.emulator.faults.drop_next(1, method="GET", path_prefix=INCIDENTS)
    await rig.create_all(users)
    await rig.settle()
    await rig.check_tickets()
    assert statuses(rig, mark, "POST").count(499) == 2
    assert statuses(rig, mark, "GET").count(499) == 1
    # The dropped GET is either a first look-up (an attempt of its own) or the look-up after a
    # dropped POST (the same attempt): 2 or 3 attempts failed, none wrote anything.
    assert rig.worker.tries in (6 + 2, 6 + 3)


async def test_a_hang_before_the_write_times_out_and_is_retried(rig: Rig) -> None:
    users = await rig.sign_in_all(5)
    rig.world.emulator.faults.hang_next(2, method="POST", path_prefix=INCIDENTS, seconds=HANG)
    await rig.create_all(users)
    await rig.settle()
    await rig.check_tickets()
    assert rig.worker.tries == 5 + 2


@pytest.mark.parametrize("status", [502, 200])
async def test_html_pages_are_not_taken_for_answers(rig: Rig, status: int) -> None:
    """A proxy's 502 page, or its login page with 200: neither is an API answer."""
    users = await rig.sign_in_all(6)
    faults = rig.world.emulator.faults
    faults.html_next(2, status=status, method="POST", path_prefix=INCIDENTS)
    faults.html_next(1, status=status, method="GET", path_prefix=INCIDENTS)
    await rig.create_all(users)
    await rig.settle()
    await rig.check_tickets()
    # Two creates fail. A 502 page may follow a write, so the ticket is looked up at once and
    # the GET page fails that same try; a login page (200) surely stopped the write, so nothing
    # is looked up until a retry (a first try looks nothing up), which the GET page then fails.
    assert rig.worker.tries == 6 + (2 if status == 502 else 3)


async def test_a_description_as_long_as_the_input_allows_reaches_the_ticket_whole(
        rig: Rig, flow_set: FlowSet) -> None:
    describe = flow_set.states["create_ticket.describe"].input
    assert describe is not None
    (user,) = await rig.sign_in_all(1)
    user.text = (user.text + " подробности" * 400)[: describe.max_length]
    await rig.create_all([user])
    await rig.settle()
    await rig.check_tickets()


def probes_within(policy: OutboxPolicy, seconds: float) -> int:
    """Half-open probes a circuit opened at 0 lets through within `seconds`: one per cooldown,
    the cooldown doubling up to its cap. Advancing in steps only delays them."""
    at, cooldown, probes = 0.0, policy.breaker_cooldown, 0
    while at + cooldown <= seconds:
        at += cooldown
        probes += 1
        cooldown = min(cooldown * 2, policy.breaker_cooldown_cap)
    return probes


async def test_a_ten_minute_outage_opens_the_circuit_and_every_number_comes_once(rig: Rig) -> None:
    users = await rig.sign_in_all(6)
    await asyncio.gather(*(rig.draft(u) for u in users))
    faults, log = rig.world.emulator.faults, rig.world.emulator.state.request_log
    mark = len(log)
    faults.set_outage(True)
    replies = await asyncio.gather(*(rig.submit(u) for u in users))
    assert all(QUEUED in r.text for r in replies)
    for _ in range(20):  # 10 minutes, 30 s at a time
        await rig.advance()
    during = rig.requests_since(mark)
    faults.set_outage(False)
    assert {s for _, _, s in during} == {503}
    assert "open" in rig.breaker_states
    # Each item's first try (the circuit opens after `breaker_threshold` of them; tries already
    # under way still land), then one probe per cooldown: 15, 30, 60, 120, 240 s → 5 in 600 s.
    # Without the breaker each of 6 items would be retried ~9 times (backoff 2, 4, … 256 s).
    # A probe is a retry, so it starts with a look-up for the ticket, a read the client tries
    # up to three times (SimpleOneConfig.read_retries) before the probe counts as failed.
    probes = probes_within(POLICY, 600)
    assert probes == 5
    assert POLICY.breaker_threshold + probes <= len(during) <= len(users) + probes * 3
    assert rig.tickets() == [] and await rig.notices() == []
    assert len(await rig.pending()) == 6
    waited = await rig.settle()
    assert waited <= 300  # the next probe is due within one capped cooldown
    numbers = await rig.check_tickets()
    notices = await rig.notices()
    assert sorted(n.peer for n in notices) == sorted(numbers)  # all were queued: each got one notice


# ---------------------------------------------------------------------- comments


async def _create_then_compose(rig: Rig, comment: str) -> User:
    (user,) = await rig.sign_in_all(1)
    await rig.create_all([user])
    assert "Заявка INC0000001 создана" in user.last.text
    # A minute later, as a user would; the test below covers a comment in the same second.
    await rig.advance(60)
    await rig.say(user, "Главное меню")
    await rig.press(user, "Дополнить заявку")
    await rig.say(user, "1")
    reply = await rig.say(user, comment)
    assert "Текст записан" in reply.text
    return user


def _journal(rig: Rig) -> list[str]:
    state = rig.world.emulator.state
    (ticket,) = state.records("itsm_incident")
    return [e.text for e in state.journal("itsm_incident", ticket["sys_id"])]


def _told_once(reply_text: str, notices: list[str]) -> None:
    """The comment's outcome is told once: in the answer to "Отправить", or by one notice."""
    if "Готово: заявка INC0000001 дополнена" in reply_text:
        assert notices == []
    else:
        assert "Дополнение к заявке INC0000001 принято" in reply_text
        assert notices == ["Комментарий к заявке INC0000001 добавлен."]


@pytest.mark.parametrize("mode", ["hang", "error", "drop"])
async def test_a_comment_written_but_answered_badly_is_added_once(rig: Rig, mode: FaultKind) -> None:
    comment = "Папка \\\\fs01\\hr, ошибка 0x80070035"
    user = await _create_then_compose(rig, comment)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_after_write(1, mode=mode, method="PATCH", seconds=HANG)
    reply = await rig.press(user, "Отправить")
    await rig.settle()
    journal = _journal(rig)
    assert len(journal) == 1 and journal[0].startswith(comment)
    # One write request, answered badly: it was settled by reading the ticket, never resent.
    assert statuses(rig, mark, "PATCH") == [500 if mode == "error" else 499]
    (item,) = await rig.comment_items()
    assert item.state == "done" and item.told
    _told_once(reply.text, [n.text for n in await rig.notices()])


async def test_two_comments_in_the_same_second_are_each_added_once(rig: Rig) -> None:
    first, second = "Первое дополнение: ошибка 0x80070035", "Второе дополнение: с другого ПК тоже"
    user = await _create_then_compose(rig, first)
    reply = await rig.press(user, "Отправить")
    assert "Готово: заявка INC0000001 дополнена" in reply.text
    await rig.press(user, "Дополнить ещё")
    await rig.say(user, second)
    # The clock has not moved: the second write lands in the same second as the first. Its
    # answer is lost; the journal tells it from the first all the same, at once.
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_after_write(1, mode="error", method="PATCH")
    reply = await rig.press(user, "Отправить")
    await rig.settle()
    assert [t.split("\n")[0] for t in _journal(rig)] == [first, second]
    assert statuses(rig, mark, "PATCH") == [500]
    _told_once(reply.text, [n.text for n in await rig.notices()])


FEED = "/rest/v1/table/sys_activity_feed_item"


def _agent_acts_after_the_write(rig: Rig, monkeypatch: pytest.MonkeyPatch, *, unreadable: bool) -> None:
    """The bot's next comment write fails (as the faults armed say); right after it, before the
    bot can look, an agent changes the ticket's state and adds a public comment of their own.
    unreadable: the journal then cannot be read for a while, so the write is settled by a later try."""
    state = rig.world.emulator.state
    real_add_comment = rig.client.add_comment

    async def then_the_agent(table: str, sys_id: str, field: str, text: str) -> None:
        try:
            await real_add_comment(table, sys_id, field, text)
        finally:
            monkeypatch.setattr(rig.client, "add_comment", real_add_comment)  # the agent acts once
            state.update(table, sys_id, {"state": "2", "additional_comments": "Агент: смотрю"}, author="agent")
            if unreadable:
                rig.world.emulator.faults.fail_next(10, method="GET", path_prefix=FEED)

    monkeypatch.setattr(rig.client, "add_comment", then_the_agent)


@pytest.mark.parametrize("unreadable", [False, True])
@pytest.mark.parametrize("mode", ["hang", "error", "drop"])
async def test_a_lost_answer_to_a_comment_that_landed_is_not_written_again_after_an_agents_change(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, mode: FaultKind, unreadable: bool) -> None:
    comment = "Папка \\\\fs01\\hr, ошибка 0x80070035"
    user = await _create_then_compose(rig, comment)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_after_write(1, mode=mode, method="PATCH", seconds=HANG)
    _agent_acts_after_the_write(rig, monkeypatch, unreadable=unreadable)
    reply = await rig.press(user, "Отправить")
    await rig.settle()
    journal = _journal(rig)
    assert [t.split("\n")[0] for t in journal] == [comment, "Агент: смотрю"]
    assert statuses(rig, mark, "PATCH") == [500 if mode == "error" else 499]  # the bot's: written once
    _told_once(reply.text, [n.text for n in await rig.notices()])


@pytest.mark.parametrize("unreadable", [False, True])
async def test_a_comment_write_that_never_landed_is_written_once_though_an_agent_changed_the_ticket(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, unreadable: bool) -> None:
    """The connection drops before the write is handled: the bot cannot tell it from a write
    whose answer was lost. The ticket changed meanwhile (by an agent), which the sys_updated_at
    bracket took for our write; the journal shows only the agent's comment, so ours is written."""
    comment = "Папка \\\\fs01\\hr, ошибка 0x80070035"
    user = await _create_then_compose(rig, comment)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.drop_next(1, method="PATCH")
    _agent_acts_after_the_write(rig, monkeypatch, unreadable=unreadable)
    reply = await rig.press(user, "Отправить")
    await rig.settle()
    journal = _journal(rig)
    assert [t.split("\n")[0] for t in journal] == ["Агент: смотрю", comment]
    assert statuses(rig, mark, "PATCH") == [499, 200]
    (item,) = await rig.comment_items()
    assert item.state == "done" and item.told
    _told_once(reply.text, [n.text for n in await rig.notices()])


async def test_a_comment_to_a_field_the_journal_does_not_show_is_settled_by_the_tickets_change(rig: Rig) -> None:
    """Written to a field that is not the journal's public one, a comment cannot be read back:
    its unclear write is settled by the ticket's sys_updated_at, the journal never read."""
    rig.worker.executors = ticket_executors(rig.client, rig.world.spool, lambda: rig.now[0],
                                            journal=lambda: Journal(public="u_public_comments"))
    comment = "Папка \\\\fs01\\hr, ошибка 0x80070035"
    user = await _create_then_compose(rig, comment)
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_after_write(1, mode="error", method="PATCH")
    reply = await rig.press(user, "Отправить")
    await rig.settle()
    assert [t.split("\n")[0] for t in _journal(rig)] == [comment]
    assert statuses(rig, mark, "PATCH") == [500]
    assert statuses(rig, mark, "GET", FEED) == []
    _told_once(reply.text, [n.text for n in await rig.notices()])


# ---------------------------------------------------------------------- files

UPLOADS = "/v1/attachments/upload/"
FILES = (("экран.png", 20000), ("лог.txt", 3000))


async def _submit_with_files(rig: Rig) -> User:
    """A user describes the problem, attaches FILES and submits (the ticket is created at once)."""
    (user,) = await rig.sign_in_all(1)
    for text in ("Начать", "Создать заявку", "2", "5", user.text):
        await rig.say(user, text) if text != "Создать заявку" else await rig.press(user, text)
    files = [IncomingFile(name, "application/octet-stream", bytes([n]) * size) for n, (name, size) in
             enumerate(FILES)]
    await rig.send(user, Incoming(files=files))
    await rig.press(user, "Готово")
    assert "Проверьте заявку" in user.last.text, user.last.text
    reply = await rig.press(user, "Отправить")
    assert "Заявка INC0000001 создана" in reply.text, reply.text
    return user


async def _files_on_the_ticket(rig: Rig) -> list[tuple[str, int]]:
    """The ticket's files, found the way a real instance allows (not by the ticket's sys_id),
    and checked against the emulator's own record of them."""
    (ticket,) = [t for t in rig.tickets() if t["number"] == "INC0000001"]
    wanted = [Attachment(name, size) for name, size in FILES]
    found = await rig.client.find_attachments("itsm_incident", ticket["sys_id"], wanted,
                                              since=ticket["sys_created_at"])
    stored = rig.world.emulator.state.attachments("itsm_incident", ticket["sys_id"])
    assert sorted((a["file_name"], int(a["size_bytes"])) for a in stored) == sorted((a.name, a.size) for a in found)
    return sorted((a.name, a.size) for a in found)


@pytest.mark.parametrize("reply", ["records", "empty"])
async def test_a_conversation_with_files_ends_with_the_files_on_the_ticket(rig: Rig, reply: UploadReply) -> None:
    rig.world.emulator.state.upload_reply = reply
    mark = len(rig.world.emulator.state.request_log)
    await _submit_with_files(rig)
    await rig.settle()
    assert statuses(rig, mark, "POST", UPLOADS) == [200, 200]
    # Nothing to settle: no upload was unclear, so the attachments were never searched.
    assert statuses(rig, mark, "GET", "/rest/v1/table/sys_attachment") == []
    assert await _files_on_the_ticket(rig) == sorted(FILES)
    assert [n.text for n in await rig.notices()] == []


@pytest.mark.parametrize("reply", ["records", "empty"])
@pytest.mark.parametrize("mode", ["hang", "error", "drop"])
async def test_an_upload_stored_but_answered_badly_is_settled_not_repeated(
        rig: Rig, mode: FaultKind, reply: UploadReply) -> None:
    """Each upload is stored, then timed out (hang), answered 500 or dropped: the next try finds
    the file on the ticket (by name, size and time, the ticket's Document ID being unknown to
    the bot) and does not send it again."""
    rig.world.emulator.state.upload_reply = reply
    mark = len(rig.world.emulator.state.request_log)
    rig.world.emulator.faults.fail_after_write(2, mode=mode, method="POST", path_prefix=UPLOADS, seconds=HANG)
    await _submit_with_files(rig)
    await rig.settle()
    assert await _files_on_the_ticket(rig) == sorted(FILES)
    assert statuses(rig, mark, "POST", UPLOADS) == [500 if mode == "error" else 499] * 2
    assert [n.text for n in await rig.notices()] == []
    items = await rig.storage.outbox_list(limit=1000)
    assert [(i.kind, i.state) for i in items] == [("ticket.create", "done"), ("ticket.upload", "done")]


@pytest.mark.parametrize("reply", ["records", "empty"])
async def test_an_upload_that_never_landed_is_sent_again(
        rig: Rig, reply: UploadReply, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second file's upload is dropped before it is stored. Another ticket got a file of the
    same name and size meanwhile: matched by name, size and time alone it would be taken for
    ours, but the first file (named by the upload's answer, or alone in matching its name, size
    and time) gives away the ticket's Document ID, and the search on it finds nothing."""
    state = rig.world.emulator.state
    state.upload_reply = reply
    other = state.add_record("itsm_incident", {"number": "INC0000900", "subject": "someone else's"})
    state.add_attachment("itsm_incident", other, FILES[1][0], "text/plain", b"\1" * FILES[1][1])
    real_upload = rig.client.upload_files

    async def drop_the_next(table: str, sys_id: str, files: Sequence[Upload]) -> list[Attachment]:
        answered = await real_upload(table, sys_id, files)
        rig.world.emulator.faults.drop_next(1, method="POST", path_prefix=UPLOADS)
        return answered

    monkeypatch.setattr(rig.client, "upload_files", drop_the_next)
    mark = len(state.request_log)
    await _submit_with_files(rig)
    await rig.settle()
    assert statuses(rig, mark, "POST", UPLOADS) == [200, 499, 200]
    assert await _files_on_the_ticket(rig) == sorted(FILES)


@pytest.mark.parametrize("landed", [True, False])
async def test_a_legacy_upload_item_looks_for_its_file_before_sending_it_again(rig: Rig, landed: bool) -> None:
    """An upload item queued by the previous release has no `since` and no `tried` list. Tried
    before (attempts > 1), its file is looked for on the ticket from a little before the item was
    written: found there, it is not sent again; missing, it is sent once. The same file attached
    ten minutes earlier (an older comment's) is before that and does not count."""
    state = rig.world.emulator.state
    data = b"\3" * 3000
    ticket = state.add_record("itsm_incident", {"number": "INC0000001", "subject": "сетевая папка"})
    state.add_attachment("itsm_incident", ticket, "лог.txt", "text/plain", data)
    rig.now[0] += 600
    queued_at = rig.now[0]
    spooled = await rig.world.spool.put("fault:1", "лог.txt", "text/plain", data)
    rig.now[0] += 5
    if landed:  # the previous release's upload, whose answer was lost
        state.add_attachment("itsm_incident", ticket, "лог.txt", "text/plain", data)
    rig.now[0] += 60
    item = OutboxItem(
        id="legacy.files", peer="fault:1", kind=UPLOAD, created_at=queued_at, attempts=2,
        record=f"itsm_incident/{ticket}",
        payload={"table": "itsm_incident", "sys_id": ticket, "number": "INC0000001",
                 "files": [spooled.as_slot()], "gave_up": "files_failed",
                 "vars": {"ticket": {"number": "INC0000001"}, "files": "лог.txt"}},
        progress={"done": []},
    )
    checkpoints: list[dict[str, object]] = []

    async def checkpoint(saved: OutboxItem) -> None:
        checkpoints.append(dict(saved.progress))

    mark = len(state.request_log)
    upload = ticket_executors(rig.client, rig.world.spool, lambda: rig.now[0])[UPLOAD]
    done = await upload(item, checkpoint)
    assert done.result["notice"] is None
    assert statuses(rig, mark, "GET", "/rest/v1/table/sys_attachment") != []  # looked before sending
    assert statuses(rig, mark, "POST", UPLOADS) == ([] if landed else [200])
    assert [a["file_name"] for a in state.attachments("itsm_incident", ticket)] == ["лог.txt"] * 2
    assert checkpoints[-1]["done"] == [spooled.id]


# ---------------------------------------------------------------------- randomized schedules


Method = Literal["POST", "GET"]


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    method: Method
    count: int
    incidents_only: bool

    def rule(self) -> FaultRule:
        after = self.kind.startswith("after_")
        base = self.kind.removeprefix("after_")
        kind: FaultKind = "html" if base.startswith("html") else base  # type: ignore[assignment]
        status = 200 if base == "html200" else 502 if base.startswith("html") else 500
        return FaultRule(kind, self.count, status, self.method, INCIDENTS if self.incidents_only else None,
                         after, HANG)


KINDS = ("error", "html502", "html200", "hang", "drop",
         "after_error", "after_html502", "after_html200", "after_hang", "after_drop")

schedules = st.tuples(
    st.lists(st.builds(Fault, st.sampled_from(KINDS), st.sampled_from(["POST", "GET"]), st.integers(1, 3),
                       st.booleans()), max_size=6),
    st.one_of(st.none(), st.integers(1, 10)),  # an outage from the submit on, in minutes
    st.booleans(),  # tokens expire just before the submit
    st.sampled_from([0.0, 0.05]),  # latency
)


def test_any_fault_schedule_keeps_every_ticket_once_and_every_number_told_once(flow_set: FlowSet) -> None:
    loop = asyncio.new_event_loop()
    counter = itertools.count()
    try:
        world = loop.run_until_complete(EmulatorWorld.start(flow_set.tickets.tables))
        with tempfile.TemporaryDirectory() as tmp:

            async def example(faults: list[Fault], outage: int | None, expire: bool, latency: float) -> None:
                await world.reset()
                rig = await Rig.open(world, flow_set, Path(tmp) / f"{next(counter)}.db")
                switches = world.emulator.faults
                try:
                    users = await rig.sign_in_all(3)
                    await asyncio.gather(*(rig.draft(u) for u in users))
                    for fault in faults:
                        switches.add(fault.rule())
                    switches.latency = latency
                    if expire:
                        switches.expire_tokens()
                    if outage:
                        switches.set_outage(True)
                    await asyncio.gather(*(rig.submit(u) for u in users))
                    for _ in range(2 * (outage or 0)):
                        await rig.advance()
                    switches.set_outage(False)
                    await rig.settle(max_steps=200)
                    await rig.check_tickets()
                finally:
                    switches.clear()
                    await rig.close()

            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
            @given(schedules)
            def check(schedule: tuple[list[Fault], int | None, bool, float]) -> None:
                loop.run_until_complete(example(*schedule))

            try:
                check()
            finally:
                loop.run_until_complete(world.close())
    finally:
        loop.close()

