"""The outbox worker's own rules: backoff, the circuit breaker, waiting, giving up, telling."""

from __future__ import annotations

import pytest

from engine.outbox import CircuitBreaker, OutboxPolicy
from engine.ports import Session, StepCommit
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
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow() and breaker.retry_in() == 10.0
    clock.now += 10
    assert breaker.state == "half-open"
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.failure()  # the probe failed: open twice as long
    assert breaker.state == "open" and breaker.retry_in() == 20.0
    clock.now += 20
    assert breaker.allow()
    breaker.failure()
    clock.now += 40
    assert breaker.allow()
    breaker.failure()
    assert breaker.retry_in() == 40.0  # the cap
    clock.now += 40
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.retry_in() == 0.0


def test_a_probe_cut_short_lets_the_next_one_go() -> None:
    clock = Clock()
    breaker = CircuitBreaker(OutboxPolicy(breaker_threshold=1, breaker_cooldown=5.0), clock)
    breaker.failure()
    clock.now += 5
    assert breaker.allow() and not breaker.allow()
    breaker.release()
    assert breaker.allow()


async def describe_and_submit(harness: Harness, email: str, text: str, *, outage: bool = False) -> str:
    await harness.sign_in(email)
    await harness.say("Начать")
    await harness.press("Создать заявку")
    await harness.say("2")
    await harness.say("5")
    await harness.say(text)
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
    await harness.outbox.attempt(item)
    stored = await harness.storage.outbox_get(item.id)
    assert stored is not None and stored.state == "failed" and "503" in stored.last_error
    notices = await harness.storage.notices_unsent()
    assert len(notices) == 1 and "не удалось зарегистрировать" in notices[0].text
    assert "Не работает принтер" in stored.payload["fields"]["description"]  # kept for an admin
    assert harness.world.emulator.state.records("itsm_incident") == []


async def test_an_outcome_whose_answer_never_committed_is_told_by_a_notice(harness: Harness) -> None:
    """The follow-up step that tells the number fails to commit: the sweep tells it instead."""
    original = harness.storage.commit_step
    calls = []

    async def fail_follow_ups(step: StepCommit) -> bool:
        calls.append(step)
        if step.told:
            return False  # as if another writer had stepped the session
        return await original(step)

    harness.storage.commit_step = fail_follow_ups  # type: ignore[method-assign]
    reply = await describe_and_submit(harness, "untold@ranepa.ru", "Не работает принтер на третьем этаже")
    assert "Заявка принята" in reply  # the committed answer stands
    assert any(step.told for step in calls)
    harness.now[0] += harness.outbox.policy.tell_grace + 1
    assert await harness.outbox.tell_untold() == 1
    assert await harness.outbox.tell_untold() == 0
    notices = await harness.storage.notices_unsent()
    assert len(notices) == 1 and "под номером INC0000001" in notices[0].text


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
