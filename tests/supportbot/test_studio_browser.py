"""The studio in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright —
no browser download). Load the page, see the map and the findings, click through a conversation
to a ticket number, break a flow file and see the finding come, fix it and see it go; with a
token, the page asks for it. Screenshots go to build/test-output/studio/ (or
$SUPPORTBOT_TEST_OUTPUT/studio/)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from supportbot.studio_cli import RunningStudio
from tests.supportbot.studio_fixtures import ROOT, TICKET, start_studio

CHROMIUM = os.environ.get("SUPPORTBOT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(os.environ.get("SUPPORTBOT_TEST_OUTPUT") or ROOT / "build" / "test-output") / "studio"
_missing = [what for what, there in (
    ("the Python package playwright (pip install -e '.[test]')", importlib.util.find_spec("playwright") is not None),
    (f"Chromium at {CHROMIUM} (as root: apt-get install -y chromium)", Path(CHROMIUM).is_file()),
) if not there]
if _missing and os.environ.get("CI"):
    pytest.fail("CI: the studio's browser tests need " + " and ".join(_missing), pytrace=False)
pytestmark = pytest.mark.skipif(bool(_missing), reason="NO BROWSER: the studio's browser tests need "
                                + " and ".join(_missing))

if not _missing:
    from playwright.async_api import Page, async_playwright, expect


@pytest.fixture
async def studio(tmp_path: Path) -> AsyncIterator[RunningStudio]:
    async for running in start_studio(tmp_path):
        yield running


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = await browser.new_page(viewport={"width": 1600, "height": 1000}, locale="ru-RU")
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            yield tab
            assert errors == [], errors  # the page's script never failed
        finally:
            await browser.close()


async def press(page: Page, label: str) -> None:
    await page.locator("#chat .msg.bot").last.get_by_role("button", name=label, exact=True).click()


async def say(page: Page, text: str) -> None:
    before = await page.locator("#chat .msg").count()
    await page.fill("#message", text)
    await page.click("#send-form button[type=submit]")
    await expect(page.locator("#chat .msg")).not_to_have_count(before)


async def test_the_map_a_conversation_to_a_ticket_and_a_finding_that_comes_and_goes(
    studio: RunningStudio, page: Page,
) -> None:
    await page.goto(studio.url)
    await expect(page.locator("#chat .msg.bot").first).to_contain_text("Главное меню")
    await expect(page.locator("#safety .safe")).to_have_count(2)
    await expect(page.locator("#findings")).to_contain_text("Ошибок нет.")
    # The map: every flow and its states, with their labels.
    the_map = page.locator("#map")
    await expect(the_map.locator('[data-state="main.menu"]').first).to_be_visible()
    assert await the_map.locator("[data-state]").count() >= 40
    await expect(the_map).to_contain_text("Создать заявку")
    await the_map.locator('[data-state="main.menu"]').first.click()
    await expect(page.locator("#state-info")).to_contain_text("main.yaml:")

    # A conversation, clicked and typed as a lead would, to a ticket number.
    await press(page, "Создать заявку")
    await expect(page.locator("#chat .msg.bot").last).to_contain_text("корпоративной почте")
    await say(page, "ivanov-ii@ranepa.ru")
    letter = page.locator("#chat .msg.letter").last
    await expect(letter).to_contain_text("ivanov-ii@ranepa.ru")
    code = re.search(r"\b\d{6}\b", await letter.inner_text())
    assert code
    await say(page, code.group())
    await expect(page.locator("#session-state")).to_contain_text("create_ticket.")
    await say(page, "2")
    await say(page, "6")
    await say(page, "Не запускается программа учёта на рабочем месте")
    await press(page, "Без файлов")
    await expect(page.locator("#chat .msg.bot").last.get_by_role("button", name="Отправить")).to_be_enabled()
    await press(page, "Отправить")
    await expect(page.locator("#chat .msg.bot").last).to_contain_text(TICKET)
    await expect(page.locator("#slots")).to_contain_text("ivanov-ii@ranepa.ru")
    await page.screenshot(path=str(OUTPUT / "conversation.png"))

    # The agent comments; the notice comes into the conversation with its buttons.
    await page.click("#agent-box summary")
    await page.fill("#agent-text", "Уточните, пожалуйста, номер кабинета")
    await page.click("#agent-comment button")
    notice = page.locator("#chat .msg.notice").last
    await expect(notice).to_contain_text("Уточните, пожалуйста, номер кабинета", timeout=10_000)
    await expect(notice.get_by_role("button", name="Ответить")).to_be_enabled()

    # Break a file: the finding appears beside the map, in flowlint's words; fix it: it goes.
    main_yaml = studio.studio.flows_dir / "main.yaml"
    original = main_yaml.read_text(encoding="utf-8")
    main_yaml.write_text(original.replace("create_ticket.suggest", "create_ticket.no_such_state", 1), encoding="utf-8")
    finding = page.locator("#findings li.error").first
    await expect(finding).to_contain_text("main.yaml:", timeout=3_000)
    await expect(finding).to_contain_text("F010")
    await expect(page.locator("#reload-banner")).to_be_visible()
    await page.screenshot(path=str(OUTPUT / "broken-file.png"))
    main_yaml.write_text(original, encoding="utf-8")
    await expect(page.locator("#findings")).to_contain_text("Ошибок нет.", timeout=3_000)
    await expect(page.locator("#reload-banner")).to_be_hidden()

    # Restart: a new conversation from the menu.
    await page.click("#restart")
    await expect(page.locator("#chat .msg")).to_have_count(2)


async def test_tests_run_from_the_page_and_a_conversation_is_saved_as_one(tmp_path: Path, page: Page) -> None:
    async for running in start_studio(tmp_path, tests=False):
        folder = running.studio.flows_dir / "tests"
        folder.mkdir()
        (folder / "one.yaml").write_text(
            "tests:\n  - name: wrong words\n    steps:\n      - send: Начать\n        expect:\n"
            "          says: Добрый вечер\n", encoding="utf-8")
        await page.goto(running.url)
        await expect(page.locator("#chat .msg.bot").first).to_contain_text("Главное меню")
        await page.click("#tests-run")
        await expect(page.locator("#tests-result")).to_contain_text("упали: 1", timeout=20_000)
        await expect(page.locator("#tests-result .minus")).to_contain_text("Добрый вечер")
        await expect(page.locator("#tests-result .plus")).to_contain_text("Главное меню")
        await page.screenshot(path=str(OUTPUT / "tests.png"))
        await press(page, "Помощь")
        await page.click("#save-box summary")
        await page.fill("#test-name", "help from the menu")
        await page.click("#test-save")
        await expect(page.locator("#test-yaml")).to_contain_text("press: Помощь")
        assert "help from the menu" in (folder / "studio.yaml").read_text(encoding="utf-8")


async def test_with_a_token_the_page_asks_for_it(tmp_path: Path, page: Page) -> None:
    async for running in start_studio(tmp_path, token="s3cret"):
        await page.goto(running.url)
        await expect(page.locator("#token-form")).to_be_visible()
        await expect(page.locator("#studio")).to_be_hidden()
        await page.fill("#token-input", "s3cret")
        await page.click("#token-form button")
        await expect(page.locator("#chat .msg.bot").first).to_contain_text("Главное меню")
