"""`supportbot stats`: every figure from a seeded database (SQLite and PostgreSQL), the counters a
real conversation moves, and the csv and json outputs read back."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.flows.model import FlowSet
from engine.ports import OutboxItem, OutboxOutcome, OutboxState, Session, StepCommit
from supportbot.app import counts_horizon, open_storage
from supportbot.config import load_config
from supportbot.stats_cli import BadSince, Names, compute, flow_names, parse_since, stats_command
from tests.conftest import FLOWS, Harness

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0

# What the bot would have written over a few days: (days ago, counters a step named).
STEPS: list[tuple[int, list[str]]] = [
    (0, ["free_text", "sign_in_asked"]),
    (0, ["sign_in_code_sent", "sign_in_wrong_code", "sign_in_done"]),
    (0, ["free_text", "sign_in_asked", "sign_in_code_sent", "sign_in_done"]),
    (1, ["free_text", "sign_in_asked", "sign_in_bad_domain", "sign_in_code_sent", "sign_in_done"]),
    (1, ["free_text", "sign_in_asked", "sign_in_wrong_code", "sign_in_locked"]),
    (0, ["ticket_sent_free_text"]),
    (1, ["ticket_sent"]),
    (2, ["ticket_sent"]),
    (2, ["hint_helped", "rating_5", "rating_5", "rating_3", "reopened"]),
    (0, ["left:create_ticket:create_ticket.describe", "left:create_ticket:auth.ask_email"]),
    (1, ["left:create_ticket:create_ticket.describe"]),
    # Before the period: never counted in it.
    (10, ["ticket_created:network_infrastructure", "free_text", "hint_helped"]),
]
# Outbox outcomes: (days ago, item kind, state, counters), recorded as the worker records them.
OUTCOMES: list[tuple[int, str, OutboxState, list[str]]] = [
    (0, "ticket.create", OutboxState.DONE, ["ticket_created:network_infrastructure", "ticket_wait:2"]),
    (1, "ticket.create", OutboxState.DONE, ["ticket_created:network_infrastructure", "ticket_wait:5"]),
    (2, "ticket.create", OutboxState.DONE, ["ticket_created:onec", "ticket_wait:300"]),
    (2, "ticket.create", OutboxState.FAILED, ["outbox_failed:ticket.create"]),
]
# Sessions as they stand now: (state, seconds since their last step). Only the create dialogue's
# steps idle longer than SESSION_IDLE_MINUTES (30) are people who stopped answering there.
SESSIONS: list[tuple[str, float]] = [
    ("create_ticket.describe", 7200.0), ("create_ticket.describe", 40 * 60.0), ("create_ticket.confirm", 300.0),
    ("create_ticket.created", 7200.0), ("auth.ask_email", 7200.0),
]


async def seed(url: str) -> None:
    storage = await open_storage(url, pool_size=2)
    try:
        for n, (ago, counts) in enumerate(STEPS):
            session = Session(f"vk:{n}", "main.menu", {}, "v", NOW - ago * DAY)
            assert await storage.commit_step(StepCommit(session, 0, counts=counts))
        for n, (ago, kind, state, counts) in enumerate(OUTCOMES):
            at = NOW - ago * DAY
            item = OutboxItem(f"ob-{n}", f"vk:o{n}", kind, {"table": "itsm_incident"}, at - 3, next_at=at - 3,
                              updated_at=at - 3)
            assert await storage.commit_step(StepCommit(Session(f"vk:o{n}", "main.menu", {}, "v", at - 3), 0,
                                                        outbox=[item]))
            item.state, item.updated_at, item.result = state, at, {}
            assert await storage.outbox_finish(OutboxOutcome(item, counts=counts))
        for n, (state, idle) in enumerate(SESSIONS):
            assert await storage.commit_step(StepCommit(Session(f"vk:s{n}", state, {}, "v", NOW - idle), 0))
    finally:
        await storage.close()


async def run(url: str, since: str = "7d", fmt: str = "table") -> str:
    out = io.StringIO()
    config = load_config({"SUPPORTBOT_DATABASE_URL": url, "FLOWS_DIR": str(FLOWS)}, env_file=None)
    assert await stats_command(config, since, fmt, out, now=NOW) == 0
    return out.getvalue()


def check_figures(f: dict[str, Any]) -> None:
    """Each figure against what STEPS and OUTCOMES seeded (the day 10 days back left out)."""
    assert (f["first_day"], f["last_day"], f["days"]) == ("2026-11-27", "2026-12-03", 7)
    t = f["tickets"]
    assert (t["created"], t["failed"], t["sent"]) == (3, 1, 3)
    assert [(g["group"], g["name"], g["created"]) for g in t["by_group"]] == [
        ("network_infrastructure", "Сетевая инфраструктура", 2), ("onec", "Сопровождение сервисов 1С", 1)]
    per_day = {d["day"]: d for d in t["per_day"]}
    assert len(per_day) == 7 and per_day["2026-11-27"]["created"] == 0
    assert per_day["2026-12-03"] == {"day": "2026-12-03", "created": 1, "failed": 0, "sent": 1, "hints_helped": 0,
                                     "free_text": 2, "signed_in": 2}
    assert per_day["2026-12-01"] == {"day": "2026-12-01", "created": 1, "failed": 1, "sent": 1, "hints_helped": 1,
                                     "free_text": 0, "signed_in": 0}
    assert f["sign_in"] == {"asked": 4, "done": 3, "success_rate": 0.75, "codes_sent": 3, "wrong_code": 2,
                            "code_expired": 0, "locked": 1, "not_corporate": 1, "no_user": 0}
    w = f["wait_for_number"]
    # 2 s, 5 s and 300 s: the middle ticket waited at most 5 s.
    assert (w["tickets"], w["median_at_most_seconds"], w["median_over_seconds"]) == (3, 5, None)
    assert w["buckets"]["2"] == w["buckets"]["5"] == w["buckets"]["300"] == 1 and sum(w["buckets"].values()) == 3
    assert f["hints_helped"] == 1
    assert f["ratings"] == {"count": 3, "average": 4.33, "by_value": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 2}}
    assert f["free_text"] == {"messages": 4, "tickets_sent": 1, "share": 0.25}
    d = f["create_dropoff"]
    # Ended: 3 left, 3 sent, 1 solved by a hint. The dialogue's own steps first, in its order.
    assert (d["ended"], d["sent"], d["solved_by_hint"]) == (7, 3, 1)
    assert d["left"] == [{"step": "create_ticket.describe", "count": 2, "share": 0.2857},
                         {"step": "auth.ask_email", "count": 1, "share": 0.1429}]
    assert (d["idle_minutes"], d["idle_now"]) == (30, [{"step": "create_ticket.describe", "count": 2}])
    assert f["counters"]["reopened"] == 1 and f["counters"]["ticket_sent"] == 2


async def check_backend(url: str) -> None:
    await seed(url)
    check_figures(json.loads(await run(url, "7d", "json")))
    table = await run(url)
    assert table.startswith("supportbot stats: 2026-11-27 … 2026-12-03 (7 day(s), UTC)\n")
    lines = table.splitlines()
    head = lines.index("Per day") + 1
    assert lines[head].split() == ["day", "created", "failed", "sent", "hints", "helped", "free", "text", "signed",
                                   "in"]
    # Numbers are right-aligned under their heading.
    total = next(line for line in lines if line.startswith("total"))
    assert total.split() == ["total", "3", "1", "3", "1", "4", "3"]
    assert len(total) == len(lines[head])
    assert any(line.startswith("Сетевая инфраструктура") and line.endswith("66.7 %") for line in lines)
    assert any(line.startswith("sign-in success rate") and line.endswith("75.0 % (3 of 4)") for line in lines)
    assert any(line.startswith("median «Отправить» → number") and "at most 5 s (3 ticket(s))" in line
               for line in lines)
    assert any(line.split() == ["create_ticket.describe", "2", "28.6", "%", "2"] for line in lines)
    # csv: one figure a row, the same numbers as json.
    rows = list(csv.reader(io.StringIO(await run(url, "7d", "csv"))))
    assert rows[0] == ["section", "key", "day", "value"]
    values = {(r[0], r[1], r[2]): r[3] for r in rows[1:]}
    assert values[("day", "created", "2026-12-03")] == "1"
    assert values[("group", "Сетевая инфраструктура", "")] == "2"
    assert values[("figure", "sign_in_success_rate", "")] == "0.75"
    assert values[("figure", "median_wait_at_most_seconds", "")] == "5"
    assert values[("figure", "free_text_share", "")] == "0.25"
    assert values[("rating", "5", "")] == "2"
    assert values[("left", "create_ticket.describe", "")] == "2"
    assert values[("idle_now", "create_ticket.describe", "")] == "2"
    assert values[("counter", "hint_helped", "")] == "1"
    # A longer period takes the older day in.
    wider = json.loads(await run(url, "2026-11-20", "json"))
    assert wider["tickets"]["created"] == 4 and wider["hints_helped"] == 2 and wider["days"] == 14


async def test_stats_on_a_seeded_sqlite_database(tmp_path: Path) -> None:
    await check_backend(f"sqlite:///{tmp_path / 'bot.db'}")


async def test_stats_on_a_seeded_postgres_database(scratch_postgres: str) -> None:
    await check_backend(scratch_postgres)


async def test_nothing_counted_reads_as_zeros_and_dashes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    f = json.loads(await run(url, "1d", "json"))
    assert f["tickets"]["created"] == 0 and f["sign_in"]["success_rate"] is None
    assert f["wait_for_number"]["median_at_most_seconds"] is None and f["counters"] == {}
    table = await run(url, "1d", "table")
    assert "sign-in success rate" in table and "— (0 of 0)" in table


@pytest.mark.parametrize(("text", "first"), [("7d", date(2026, 11, 27)), ("1d", date(2026, 12, 3)),
                                             ("2w", date(2026, 11, 20)), ("2026-11-01", date(2026, 11, 1)),
                                             (" 30D ", date(2026, 11, 4))])
def test_since_takes_days_weeks_or_a_first_day(text: str, first: date) -> None:
    assert parse_since(text, date(2026, 12, 3)) == first


@pytest.mark.parametrize(("text", "says"), [("0d", "from 1d"), ("7", "not a period"), ("week", "not a period"),
                                            ("2026-13-01", "not a period"), ("2027-01-01", "after today"),
                                            ("-3d", "not a period")])
def test_a_bad_since_is_told_clearly(text: str, says: str) -> None:
    with pytest.raises(BadSince, match=says):
        parse_since(text, date(2026, 12, 3))


def test_the_command_refuses_a_bad_since_before_it_opens_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from supportbot.cli import main

    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    with pytest.raises(SystemExit) as exit_:
        main(["stats", "--since", "lastweek"])
    assert exit_.value.code == 2
    assert "--since 'lastweek' is not a period: give days such as 7d" in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()


def test_counters_are_kept_for_the_configured_days() -> None:
    # Today and the 399 days before it: the 400 days STATS_KEEP_DAYS keeps by default.
    assert counts_horizon(NOW, 400) == "2025-10-30"
    assert counts_horizon(NOW, 1) == "2026-12-03"
    assert load_config({"SUPPORTBOT_DATABASE_URL": "sqlite:///x.db"}, env_file=None).stats_keep_days == 400


async def test_a_conversation_moves_the_counters_the_figures_read(harness: Harness, flow_set: FlowSet) -> None:
    # Free text from a new user: they sign in (one wrong code first), pick the service proposed,
    # and send the ticket; SimpleOne answers within the wait.
    await harness.say("Здравствуйте, в общежитии не ловит вайфай")
    await harness.say("stats@ranepa.ru")
    code = harness.mailer.messages[-1].body.split(": ")[1][:6]
    await harness.say("000000" if code != "000000" else "111111")
    reply = await harness.say(code)
    await harness.press("Wi-Fi")
    await harness.press("Без файлов")
    reply = await harness.press("Отправить")
    assert "создана" in reply.text
    # A second ticket begun from the catalogue and given up at the choice of the service; moving
    # on from the created ticket is no giving up.
    await harness.say("Создать заявку")
    await harness.say("Главное меню")
    entry = flow_set.catalog.entry("wifi")
    assert entry is not None
    counts = {c.name: c.count for c in await harness.storage.counts()}
    assert counts == {
        "free_text": 1, "sign_in_asked": 1, "sign_in_code_sent": 1, "sign_in_wrong_code": 1, "sign_in_done": 1,
        "ticket_sent_free_text": 1, f"ticket_created:{entry.group_id}": 1,
        # The test's clock stands still: no time from «Отправить» to the number.
        "ticket_wait:1": 1,
        "left:create_ticket:create_ticket.choose_service": 1,
    }
    today = datetime.fromtimestamp(harness.now[0], UTC).date()
    f = compute(await harness.storage.counts(), today, today, flow_names(FLOWS))
    assert f["sign_in"]["success_rate"] == 1.0 and f["free_text"]["share"] == 1.0
    assert [(g["name"], g["created"]) for g in f["tickets"]["by_group"]] == [(entry.group_name, 1)]
    assert f["wait_for_number"]["median_at_most_seconds"] == 1
    assert f["create_dropoff"]["left"] == [{"step": "create_ticket.choose_service", "count": 1, "share": 0.5}]


def test_names_come_from_the_flows_or_fall_back_to_ids(tmp_path: Path) -> None:
    names = flow_names(FLOWS)
    assert names.groups["onec"] == "Сопровождение сервисов 1С"
    assert names.steps[0] == "create_ticket.choose_service"
    (tmp_path / "broken.yaml").write_text("flow: [", encoding="utf-8")
    assert flow_names(tmp_path) == Names({}, ())


async def test_housekeeping_prunes_counters_older_than_kept(tmp_path: Path) -> None:
    import asyncio
    import time

    from adapters.spool import DiskSpool
    from supportbot.app import housekeeping

    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.db'}")
    now = time.time()
    for n, ago in enumerate((0, 29, 31, 500)):
        assert await storage.commit_step(StepCommit(Session(f"vk:{n}", "main.menu", {}, "v", now - ago * DAY), 0,
                                                    counts=["hint_helped"]))
    task = asyncio.create_task(housekeeping(storage, DiskSpool(tmp_path / "spool"), idle=1800, keep_counts=30))
    try:
        for _ in range(100):
            if len(await storage.counts()) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert [c.day for c in await storage.counts()] == sorted(counts_horizon(now - ago * DAY, 1) for ago in (0, 29))
    await storage.close()


async def test_a_dialogue_given_up_after_the_idle_question_counts_at_the_step_left_idle(harness: Harness) -> None:
    await harness.describe("idle@ranepa.ru", "Не запускается Word, пишет ошибку лицензии", "2", "6")
    await harness.press("Без файлов")
    harness.now[0] += 31 * 60
    reply = await harness.say("абракадабра")  # not taken there: counts nothing
    assert "Продолжим с того места" in reply.text
    await harness.press("Начать заново")
    assert {c.name: c.count for c in await harness.storage.counts()} == {"left:create_ticket:create_ticket.confirm": 1}


async def test_a_dialogue_given_up_from_a_detour_counts_at_the_step_it_stepped_aside_from(harness: Harness) -> None:
    await harness.describe("detour@ranepa.ru", "Не запускается Word, пишет ошибку лицензии", "2", "6")
    await harness.press("Без файлов")
    await harness.say("Помощь")  # a detour from the confirmation
    await harness.say("Главное меню")  # and away: the draft is left where the user stepped aside
    assert {c.name: c.count for c in await harness.storage.counts()} == {"left:create_ticket:create_ticket.confirm": 1}
