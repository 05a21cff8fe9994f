"""`supportbot studio` over real HTTP: the map, the findings in flowlint's words, a conversation
on the real engine to a ticket, live reload (a broken file refused, the old flows kept), the
agent's notices, conversation tests run and saved, and who may use it (loopback or a token)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from engine.convtest import load_conversations
from engine.load import load_flow_set
from supportbot.cli import main
from supportbot.config import load_config
from supportbot.flowlint_cli import _line
from supportbot.studio_cli import RunningStudio, running_studio
from tests.supportbot.studio_fixtures import TICKET, Api, sign_in_and_create_ticket, start_studio, until


@pytest.fixture
async def studio(tmp_path: Path) -> AsyncIterator[RunningStudio]:
    async for running in start_studio(tmp_path):
        yield running


@pytest.fixture
async def api(studio: RunningStudio) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, studio.url)


async def test_the_page_and_its_static_files_come_from_the_package(api: Api) -> None:
    async with api.http.get(api.url + "/") as page:
        html = await page.text()
    assert page.status == 200 and "supportbot studio" in html and "Симулятор" in html
    assert "http" not in html.replace("http-equiv", "")  # nothing fetched from elsewhere
    for name in ("studio.js", "studio.css"):
        async with api.http.get(f"{api.url}/static/{name}") as response:
            assert response.status == 200


async def test_the_map_shows_every_flow_and_a_state_tells_its_file_line_text_and_buttons(api: Api) -> None:
    data = await api.get("/api/map")
    assert "fallback" not in data
    assert 'data-state="main.menu"' in data["svg"] and "Создать заявку" in data["svg"]
    assert set(data["flows"]) >= {"main", "create_ticket", "auth"}
    assert "menu" in data["svg"] and "create_ticket" in data["svg"]
    state = await api.get("/api/state?name=main.menu")
    assert state["file"].endswith("main.yaml") and state["line"] > 1
    assert "Главное меню" in state["text"]
    assert ["Создать заявку"] in state["buttons"]
    async with api.http.get(api.url + "/api/state?name=nowhere.at_all") as missing:
        assert missing.status == 404


async def test_safety_says_nothing_real_leaves(api: Api) -> None:
    info = await api.get("/api/info")
    assert info["agent"] is True
    assert [s["real"] for s in info["safety"]] == [False, False]
    assert "эмулятор" in info["safety"][0]["text"]


async def test_a_conversation_on_the_real_engine_reaches_a_ticket_with_letters_inline(api: Api) -> None:
    number = await sign_in_and_create_ticket(api)
    assert number == "INC0000001"
    session = await api.get("/api/session")
    kinds = [i["kind"] for i in session["items"]]
    assert "letter" in kinds and kinds.count("user") >= 8
    assert session["state"] and session["slots"]["user"]["email"] == "ivanov-ii@ranepa.ru"
    # A new conversation is a new user, from the menu, not signed in.
    await api.post("/api/restart")
    fresh = await api.get("/api/session")
    assert fresh["peer"] != session["peer"] and fresh["state"] == "main.menu" and fresh["steps"] == 0
    assert [i["kind"] for i in fresh["items"]] == ["system", "bot"]


async def test_files_are_attached_as_the_channel_would(api: Api) -> None:
    await sign_in_and_create_ticket(api)
    await api.post("/api/restart")
    await api.send("Здравствуйте, в общежитии не работает вайфай уже два дня")
    await api.post("/api/chat", {"text": "", "files": [
        {"name": "screen.png", "mime": "image/png", "data": base64.b64encode(b"\x89PNG" + b"\0" * 100).decode()}]})
    items = await api.items()
    assert any(i["kind"] == "user" and "screen.png" in i["text"] for i in items)
    async with api.http.post(api.url + "/api/chat", json={"files": [{"name": "x", "data": "%%%"}]}) as bad:
        assert bad.status == 400


async def test_the_agent_acts_on_the_newest_ticket_and_its_notice_shows_with_buttons(api: Api) -> None:
    answer = await api.post("/api/agent", {"action": "comment", "value": "x"})
    assert "Заявок пока нет" in answer["answer"]
    number = await sign_in_and_create_ticket(api)
    answer = await api.post("/api/agent", {"action": "comment", "value": "Уточните номер кабинета"})
    assert answer["answer"].startswith("ok") and number in answer["answer"]

    async def notice() -> bool:
        return any(i["kind"] == "notice" and "Уточните номер кабинета" in i["text"] for i in await api.items())

    await until(notice, 10)
    told = [i for i in await api.items() if i["kind"] == "notice"][-1]
    labels = [b["label"] for row in told["buttons"] for b in row]
    assert "Ответить" in labels and told["inline"]


async def test_findings_use_flowlint_s_words_and_a_broken_file_keeps_the_last_good_flows(
    studio: RunningStudio, api: Api,
) -> None:
    clean = await api.get("/api/findings")
    assert clean["refused"] is False and clean["errors"] == 0
    good = clean["version"]
    main_yaml = studio.studio.flows_dir / "main.yaml"
    original = main_yaml.read_text(encoding="utf-8")
    main_yaml.write_text(original.replace("create_ticket.suggest", "create_ticket.no_such_state", 1), encoding="utf-8")

    async def refused() -> bool:
        return bool((await api.get("/api/findings"))["refused"])

    await until(refused, 2)  # within a second or so: the studio watches every 0.2 s
    broken = await api.get("/api/findings")
    expected = [_line(f) for f in load_flow_set([studio.studio.flows_dir]).findings]
    assert [f["text"] for f in broken["findings"]] == expected
    assert any("F010" in line and "main.yaml:" in line for line in expected)
    assert broken["version"] == good  # the simulator keeps the last good flows
    await api.post("/api/restart")
    assert (await api.last_bot())["text"].startswith("Главное меню")
    main_yaml.write_text(original, encoding="utf-8")

    async def fixed() -> bool:
        return not (await api.get("/api/findings"))["refused"]

    await until(fixed, 2)
    assert (await api.get("/api/findings"))["findings"] == []


async def test_events_tell_the_page_of_a_reload(studio: RunningStudio, api: Api) -> None:
    async with api.http.get(api.url + "/api/events") as stream:
        assert (await stream.content.readline()).startswith(b"event: hello")
        await stream.content.readline()
        await stream.content.readline()
        path = studio.studio.flows_dir / "bot.yaml"
        path.write_text(path.read_text(encoding="utf-8") + "\n# touched\n", encoding="utf-8")
        line = await stream.content.readline()
        while line.startswith(b"event: chat") or not line.startswith(b"event:"):
            line = await stream.content.readline()
        assert line == b"event: flows\n"


async def test_a_conversation_saved_as_a_test_is_valid_and_passes(tmp_path: Path) -> None:
    async for running in start_studio(tmp_path, tests=False):
        async with aiohttp.ClientSession() as http:
            api = Api(http, running.url)
            await sign_in_and_create_ticket(api)
            shown = await api.post("/api/tests/save", {"name": "from the studio"})
            assert "- name: from the studio" in shown["yaml"] and "code: true" in shown["yaml"]
            assert "press: Создать заявку" in shown["yaml"]
            saved = await api.post("/api/tests/save", {"name": "from the studio", "write": True})
            assert saved["saved"], saved
            path = running.studio.flows_dir / "tests" / "studio.yaml"
            tests, problems = load_conversations([path])
            assert problems == [] and [t.name for t in tests] == ["from the studio"]
            run = await api.post("/api/tests/run")
            assert (run["passed"], run["failed"]) == (1, 0), run


async def test_a_failing_test_comes_back_as_expected_and_got(tmp_path: Path) -> None:
    async for running in start_studio(tmp_path, tests=False):
        folder = running.studio.flows_dir / "tests"
        folder.mkdir()
        (folder / "one.yaml").write_text(
            "tests:\n  - name: wrong words\n    steps:\n      - send: Начать\n        expect:\n"
            "          says: Добрый вечер\n", encoding="utf-8")
        async with aiohttp.ClientSession() as http:
            run = await Api(http, running.url).post("/api/tests/run")
        assert (run["passed"], run["failed"]) == (0, 1)
        failure = run["tests"][0]["failures"][0]
        assert failure["where"].endswith("one.yaml:4")
        assert "Добрый вечер" in failure["expected"] and "Главное меню" in failure["got"]


async def test_on_loopback_other_hosts_and_other_origins_are_refused(api: Api) -> None:
    async with api.http.get(api.url + "/api/info", headers={"Host": "evil.example:8088"}) as response:
        assert response.status == 403
    async with api.http.post(api.url + "/api/restart", data="{}", headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 415
    async with api.http.post(api.url + "/api/restart", json={}, headers={"Origin": "http://evil.example"}) as response:
        assert response.status == 403


async def test_with_a_token_the_api_asks_for_it(tmp_path: Path) -> None:
    async for running in start_studio(tmp_path, token="s3cret"):
        async with aiohttp.ClientSession() as http:
            async with http.get(running.url) as page:
                assert page.status == 200  # the page itself, to ask for the token
            async with http.get(running.url + "api/info") as response:
                assert response.status == 401
            async with http.get(running.url + "api/info", headers={"X-Studio-Token": "wrong"}) as response:
                assert response.status == 401
            assert (await Api(http, running.url, "s3cret").get("/api/info"))["agent"]
            async with http.get(running.url + "api/events?token=s3cret") as stream:
                assert stream.status == 200


async def test_a_host_other_than_loopback_needs_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(env={"FLOWS_DIR": str(tmp_path)}, env_file=None)
    with pytest.raises(ValueError, match="token"):
        async with running_studio(config, host="0.0.0.0", port=0):
            pass
    with pytest.raises(SystemExit):
        main(["studio", "--host", "0.0.0.0"])
    assert "--token" in capsys.readouterr().err


async def test_the_ticket_number_pattern_matches_the_emulator_s() -> None:
    assert TICKET.fullmatch("INC0000001")
