"""The outbox worker's own rules: backoff, the circuit breaker, waiting, giving up, telling."""

from __future__ import annotations

import heapq

import pytest

from engine.ports import Session, StepCommit
from engine.work.outbox import CircuitBreaker, OutboxPolicy, Permit
from tests.conftest import Harness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    policy = OutboxPolicy(backoff_base=2.0, backoff_cap=300.0)
    lows = [policy.backoff(n, rand=lambda: 0.0) for n in range(1, 12)]
    highs = [policy.backoff(n, rand=lambda: 1.0) for n in range(1, 12)]
    assert lows[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]  # half the delay at the least
    assert highs[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert max(highs) == 300.0 and lows[-1] == 150.0  # capped, and still spread


def test_the_breaker_opens_after_the_threshold_and_probes_once() -> None:
    clock = Clock()
    policy = OutboxPolicy(breaker_threshold=3, breaker_cooldown=10.0, breaker_cooldown_cap=40.0)
    breaker = CircuitBreaker(policy, clock)
    for _ in range(2):
        assert breaker.allow() is Permit.CALL
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and breaker.allow() is Permit.NONE and breaker.retry_in() == 10.0
    breaker.failure()  # a call let through before it opened: already counted
    assert breaker.retry_in() == 10.0
    clock.now += 10
    assert breaker.state == "half-open"
    probe = breaker.allow()
    assert probe is Permit.PROBE and breaker.allow() is Permit.NONE  # one probe at a time
    breaker.success(Permit.CALL)  # only the probe's verdict moves a half-open breaker
    assert breaker.state == "half-open"
    breaker.failure(probe)  # the probe failed: open twice as long
    assert breaker.state == "open" and breaker.retry_in() == 20.0
    clock.now += 20
    breaker.failure(breaker.allow())
    clock.now += 40
    breaker.failure(breaker.allow())
    assert breaker.retry_in() == 40.0  # the cap
    clock.now += 40
    breaker.success(breaker.allow())
    assert breaker.state == "closed" and breaker.allow() is Permit.CALL and breaker.retry_in() == 0.0


def test_a_probe_cut_short_lets_the_next_one_go() -> None:
    clock = Clock()
    breaker = CircuitBreaker(OutboxPolicy(breaker_threshold=1, breaker_cooldown=5.0), clock)
    breaker.failure()
    clock.now += 5
    probe = breaker.allow()
    assert probe is Permit.PROBE and breaker.allow() is Permit.NONE
    breaker.release(Permit.CALL)  # someone else's call ending frees nothing
    assert breaker.allow() is Permit.NONE
    breaker.release(probe)
    assert breaker.allow() is Permit.PROBE


async def describe_and_submit(harness: Harness, email: str, text: str, *, outage: bool = False) -> str:
    await harness.describe(email, text)
    await harness.press("Без файлов")
    harness.world.emulator.faults.set_outage(outage)
    return (await harness.press("Отправить")).text


async def test_the_answer_waits_for_simpleone_no_longer_than_the_policy(harness: Harness) -> None:
    harness.world.emulator.faults.latency = 0.5
    harness.outbox.policy = OutboxPolicy(wait=0.1)
    reply = await describe_and_submit(harness, "wait@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка принята" in reply
    await harness.outbox.drain()
    notices = await harness.storage.notices_unsent()
    assert len(notices) == 1 and "под номером INC0000001" in notices[0].text


async def test_while_the_circuit_is_open_the_answer_does_not_wait(harness: Harness) -> None:
    for _ in range(harness.outbox.policy.breaker_threshold):
        harness.outbox.breaker.failure()
    assert harness.outbox.wait_budget() == 0.0
    log = harness.world.emulator.state.request_log
    reply = await describe_and_submit(harness, "open@ranepa.ru", "Не работает принтер на третьем этаже",
                                      outage=True)
    assert "Заявка принята" in reply
    assert not [e for e in log if "itsm_incident" in e.path]  # SimpleOne was left alone


async def test_a_ticket_failing_past_the_horizon_is_given_up_and_told(harness: Harness) -> None:
    reply = await describe_and_submit(harness, "late@ranepa.ru", "Не работает принтер на третьем этаже",
                                      outage=True)
    assert "Заявка принята" in reply
    (item,) = await harness.storage.outbox_list()
    harness.now[0] += harness.outbox.policy.give_up_after + 1
    item.next_at = 0
    [taken] = await harness.storage.outbox_take(harness.now[0], {item.kind: 60.0})
    await harness.outbox.attempt(taken)
    stored = await harness.storage.outbox_get(item.id)
    assert stored is not None and stored.state == "failed" and "503" in stored.last_error
    notices = await harness.storage.notices_unsent()
    assert len(notices) == 1 and "не удалось зарегистрировать" in notices[0].text
    assert "Не работает принтер" in stored.payload["fields"]["description"]  # kept for an admin
    assert harness.world.emulator.state.records("itsm_incident") == []


async def test_an_outcome_whose_answer_never_committed_is_told_by_a_notice(harness: Harness) -> None:
    """The follow-up step that tells the number fails to commit: the worker records the outcome
    itself, with a notice, at once."""
    original = harness.storage.commit_step
    calls = []

    async def fail_follow_ups(step: StepCommit) -> bool:
        calls.append(step)
        if step.finish:
            return False  # as if another writer had stepped the session
        return await original(step)

    harness.storage.commit_step = fail_follow_ups  # type: ignore[method-assign]
    reply = await describe_and_submit(harness, "untold@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка принята" in reply  # the committed answer stands
    assert any(step.finish and all(o.item.told for o in step.finish) for step in calls)
    await harness.outbox.drain()
    (item,) = await harness.storage.outbox_list()
    assert item.state == "done" and item.told
    notices = await harness.storage.notices_unsent()
    assert len(notices) == 1 and "под номером INC0000001" in notices[0].text
    assert await harness.outbox.tell_untold() == 0


async def test_the_number_is_told_and_recorded_in_one_commit(harness: Harness) -> None:
    original = harness.storage.commit_step
    finishes = []

    async def spy(step: StepCommit) -> bool:
        finishes.extend(step.finish)
        return await original(step)

    harness.storage.commit_step = spy  # type: ignore[method-assign]
    reply = await describe_and_submit(harness, "once@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка INC0000001 создана" in reply
    assert [(o.item.state, o.item.told) for o in finishes] == [("done", True)]
    (item,) = await harness.storage.outbox_list()
    assert item.state == "done" and item.told and (item.result or {}).get("event") == "created"
    assert await harness.storage.notices_unsent() == []


async def test_an_outcome_recorded_but_not_told_is_told_by_the_sweep(harness: Harness) -> None:
    from engine.ports import OutboxItem, OutboxOutcome

    item = OutboxItem("cafe0001", "test:7", "ticket.create", {"vars": {"ticket": {"subject": "S"}}},
                      harness.now[0], next_at=harness.now[0] + 3600)
    session = Session("test:7", "main.menu", {}, "v", harness.now[0])
    assert await harness.storage.commit_step(StepCommit(session, 0, outbox=[item]))
    item.state, item.updated_at = "done", harness.now[0]
    item.result = {"event": "created", "vars": {"ticket": {"number": "INC0000009", "subject": "S"}},
                   "notice": "ticket_created"}
    assert await harness.storage.outbox_finish(OutboxOutcome(item))  # recorded, told to nobody
    assert await harness.outbox.tell_untold() == 0  # within the grace: a step may still tell it
    harness.now[0] += harness.outbox.policy.tell_grace + 1
    assert await harness.outbox.tell_untold() == 1
    assert await harness.outbox.tell_untold() == 0
    notices = await harness.storage.notices_unsent()
    assert [n.text for n in notices] == ["Заявка «S» зарегистрирована под номером INC0000009. "
                                         "Её статус — в разделе «Мои заявки»."]


async def test_an_unknown_kind_fails_plainly(harness: Harness) -> None:
    from engine.ports import OutboxItem

    item = OutboxItem("feedbeef", "test:9", "ticket.teleport", {}, harness.now[0], next_at=harness.now[0])
    session = Session("test:9", "main.menu", {}, "v", harness.now[0])
    assert await harness.storage.commit_step(StepCommit(session, 0, outbox=[item]))
    await harness.outbox.drain()
    stored = await harness.storage.outbox_get("feedbeef")
    assert stored is not None and stored.state == "failed" and "no executor" in stored.last_error


@pytest.mark.parametrize("wait", [0.0, -1.0])
async def test_no_wait_means_no_waiting(harness: Harness, wait: float) -> None:
    assert await harness.outbox.wait(["x"], wait) == {}


async def test_a_step_that_fails_after_queueing_queues_nothing(harness: Harness,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.dialogue.turn import Turn

    await harness.describe("bug@ranepa.ru", "Не печатает принтер на третьем этаже")
    await harness.attach("shot.png")
    await harness.press("Готово")
    real_enter = Turn.run_actions

    async def broken(self: Turn, state: str) -> str | None:
        if state == "create_ticket.queued":
            raise RuntimeError("a bug after the action queued the ticket")
        return await real_enter(self, state)

    monkeypatch.setattr(Turn, "run_actions", broken)
    reply = await harness.press("Отправить")
    assert "Что-то пошло не так" in reply.text
    assert await harness.storage.outbox_list() == []
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and [f["name"] for f in session.slots["files"]] == ["shot.png"]
    monkeypatch.setattr(Turn, "run_actions", real_enter)
    reply = await harness.press("Отправить")
    assert "Заявка INC0000001 создана" in reply.text
    assert len(await harness.storage.outbox_list()) == 2  # the ticket and its file, once


async def test_an_unexpected_error_backs_off_and_leaves_the_breaker_alone(harness: Harness) -> None:
    async def boom(item: object, checkpoint: object) -> object:
        raise RuntimeError("a bug in an executor")

    harness.outbox.executors["ticket.create"] = boom  # type: ignore[assignment]
    reply = await describe_and_submit(harness, "boom@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка принята" in reply
    (item,) = await harness.storage.outbox_list()
    assert item.state == "pending" and item.attempts == 1 and item.next_at > harness.now[0]
    assert harness.outbox.breaker.state == "closed" and harness.outbox.wait_budget() > 0
    assert await harness.storage.outbox_due(harness.now[0]) == []  # no hot loop


async def test_a_failure_to_put_off_the_retry_is_logged_and_the_item_kept(
        harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def boom(item: object, checkpoint: object) -> object:
        raise RuntimeError("a bug in an executor")

    async def storage_down(*args: object, **kwargs: object) -> None:
        raise OSError("disk I/O error")

    harness.outbox.executors["ticket.create"] = boom  # type: ignore[assignment]
    monkeypatch.setattr(harness.outbox, "_retry_later", storage_down)
    reply = await describe_and_submit(harness, "boom2@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка принята" in reply
    (item,) = await harness.storage.outbox_list()
    assert item.state == "pending"  # nothing lost: a later round takes it up
    assert any("could not put off its retry" in r.getMessage() for r in caplog.records)


async def test_after_an_admin_retry_the_number_is_told_too(harness: Harness) -> None:
    harness.world.emulator.faults.fail_next(1, status=400, method="POST", path_prefix="/rest/v1/table/")
    reply = await describe_and_submit(harness, "retry@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "не приняла заявку" in reply
    (item,) = await harness.storage.outbox_list()
    assert item.state == "failed"
    assert await harness.storage.outbox_retry(item.id, harness.now[0])
    await harness.outbox.drain()
    notices = [n.text for n in await harness.storage.notices_unsent()]
    assert len(notices) == 1 and "под номером INC0000001" in notices[0]


async def test_files_that_cannot_be_attached_at_all_are_named_to_the_user(harness: Harness) -> None:
    await harness.describe("files@ranepa.ru", "Не печатает принтер на третьем этаже")
    await harness.attach("скрин.png", "лог.txt")
    await harness.press("Готово")
    # The first upload's answer is lost, and the attachments cannot be read to settle it: the
    # uploads are refused as a whole.
    faults = harness.world.emulator.faults
    faults.fail_next(1, status=500, method="POST", path_prefix="/v1/attachments/upload/")
    faults.fail_next(1, status=403, method="GET", path_prefix="/rest/v1/table/sys_attachment")
    reply = await harness.press("Отправить")
    assert "Заявка INC0000001 создана" in reply.text and "Файлы прикрепляются" in reply.text
    await harness.outbox.drain()
    harness.now[0] += 3600
    await harness.outbox.drain()
    notices = [n.text for n in await harness.storage.notices_unsent()]
    assert notices == ["К заявке INC0000001 не удалось прикрепить файлы: скрин.png, лог.txt. "
                       "Пришлите их ещё раз через «Дополнить заявку»."]


async def test_a_slow_ticket_does_not_hold_up_another_users(harness: Harness) -> None:
    import asyncio

    harness.outbox.policy = OutboxPolicy(wait=1.0)
    for peer, email in (("test:a", "slow-a@ranepa.ru"), ("test:b", "fast-b@ranepa.ru")):
        await harness.sign_in(email, peer=peer)
        for text in ("Начать", "Создать заявку", "2", "5", "Не работает принтер на третьем этаже", "Без файлов"):
            await harness.say(text, peer=peer)
    harness.world.emulator.faults.hang_next(1, seconds=3, method="POST", path_prefix="/rest/v1/table/itsm_incident")
    slow = asyncio.create_task(harness.say("Отправить", peer="test:a"))
    await asyncio.sleep(0.3)  # A's create is in SimpleOne's hands
    fast = await harness.say("Отправить", peer="test:b")
    assert "создана" in fast.text
    assert "Заявка принята" in (await slow).text


async def test_a_later_comment_waits_for_an_earlier_one_on_the_same_ticket(harness: Harness) -> None:
    await describe_and_submit(harness, "order@ranepa.ru", "Не работает принтер на третьем этаже")
    harness.now[0] += 60
    await harness.say("Главное меню")
    await harness.press("Дополнить заявку")
    await harness.say("1")
    await harness.say("Первое: принтер HP в 305")
    harness.world.emulator.faults.fail_next(1, status=503, method="PATCH")
    reply = await harness.press("Отправить")
    assert "Дополнение к заявке INC0000001 принято" in reply.text  # the first waits in its backoff
    await harness.press("Дополнить ещё")
    await harness.say("Второе: и в 306 тоже")
    reply = await harness.press("Отправить")
    assert "Дополнение к заявке INC0000001 принято" in reply.text  # held behind the first
    ticket = harness.world.emulator.state.records("itsm_incident")[0]["sys_id"]
    assert harness.world.emulator.state.journal("itsm_incident", ticket) == []
    harness.now[0] += 60
    await harness.outbox.drain()
    journal = [e.text.split("\n")[0] for e in harness.world.emulator.state.journal("itsm_incident", ticket)]
    assert journal == ["Первое: принтер HP в 305", "Второе: и в 306 тоже"]


async def test_an_admin_retry_after_an_unclear_create_makes_no_second_ticket(harness: Harness) -> None:
    faults = harness.world.emulator.faults
    faults.fail_after_write(1, method="POST", path_prefix="/rest/v1/table/itsm_incident")
    # The look-up fails on its first try and both of the client's retries of it.
    faults.fail_next(3, status=500, method="GET", path_prefix="/rest/v1/table/itsm_incident")
    reply = await describe_and_submit(harness, "admin@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка принята" in reply  # created, but the look-up after the lost answer failed
    (item,) = await harness.storage.outbox_list()
    assert await harness.storage.outbox_retry(item.id, harness.now[0])
    await harness.outbox.drain()
    assert len(harness.world.emulator.state.records("itsm_incident")) == 1
    notices = [n.text for n in await harness.storage.notices_unsent()]
    assert len(notices) == 1 and "под номером INC0000001" in notices[0]


async def test_a_storage_error_while_renewing_a_lease_releases_the_probe(harness: Harness) -> None:
    from engine.ports import OutboxItem

    worker, clock = harness.outbox, Clock()
    worker.breaker = CircuitBreaker(worker.policy, clock)
    item = OutboxItem("beef0001", "test:5", "ticket.create", {}, harness.now[0], next_at=harness.now[0])
    assert worker.reserve([item])
    session = Session("test:5", "main.menu", {}, "v", harness.now[0])
    assert await harness.storage.commit_step(StepCommit(session, 0, outbox=[item]))
    harness.now[0] += 60  # it waited for a slot past its lease's margin: the lease is renewed first
    for _ in range(worker.policy.breaker_threshold):
        worker.breaker.failure()
    clock.now += worker.policy.breaker_cooldown  # half-open: this chain gets the probe

    async def locked(*args: object, **kwargs: object) -> bool:
        raise OSError("database is locked")

    harness.storage.outbox_lease = locked  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await worker._run_chain([item])
    assert worker.breaker.allow() is Permit.PROBE  # not stuck: the next chain may probe


async def test_two_deferred_items_each_wake_the_worker_in_time(harness: Harness) -> None:
    worker = harness.outbox
    worker._round_started = harness.now[0]
    for at in (harness.now[0] + 3, harness.now[0] + 1):
        heapq.heappush(worker._wakes, at)
    assert worker._next_wake() == pytest.approx(1.0)
    harness.now[0] += 1.5
    worker._round_started = harness.now[0]  # the round at +1.5 served the first
    assert worker._next_wake() == pytest.approx(1.5)  # the second still wakes it
    harness.now[0] += 2
    worker._round_started = harness.now[0]
    assert worker._next_wake() == worker.policy.sweep_every and worker._wakes == []
