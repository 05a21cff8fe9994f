"""The emulator and the client keep to the API documented in shared/reference/simpleone-api.md.

In the spirit of python-telegram-bot's API-shape tests: the endpoints are read from the
reference itself, so a change there (or a stray endpoint here) fails a test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig, default_transport
from adapters.simpleone.transport import HttpAnswer, HttpRequest
from emulators.simpleone.server import RunningEmulator
from engine.ports import Attachment, Upload

REFERENCE = Path("/work/shared/reference/simpleone-api.md")
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
# What the reference must at least document; guards the parser below against silently finding nothing.
CORE = {
    ("POST", "/v1/auth/login"),
    ("POST", "/rest/v1/auth/login"),
    ("POST", "/rest/v1/table/{table}"),
    ("GET", "/rest/v1/table/{table}"),
    ("GET", "/rest/v1/table/{table}/{sys_id}"),
    ("PATCH", "/rest/v1/table/{table}/{sys_id}"),
    ("PUT", "/rest/v1/table/{table}/{sys_id}"),
    ("DELETE", "/rest/v1/table/{table}/{sys_id}"),
    ("POST", "/v1/attachments/upload/{table}/{record_sys_id}"),
    ("GET", "/v1/attachments/download/{attachment_sys_id}"),
}

Endpoint = tuple[str, str]


def documented_endpoints(text: str) -> set[Endpoint]:
    """Every (method, path template) the reference names in backticks, line by line.

    Handles both `POST /path` and the table's "`PATCH` (or `PUT`) `/path`" form; drops a
    `{base}` or `{instance}` prefix and any query string.
    """
    found: set[Endpoint] = set()
    for line in text.splitlines():
        spans = re.findall(r"`([^`]+)`", line)
        pairs: list[Endpoint] = []  # `METHOD /path` in one span
        methods: list[str] = []  # a method alone, applying to the paths alone on the same line
        paths: list[str] = []
        for span in spans:
            words = span.split(maxsplit=1)
            if span in METHODS:
                methods.append(span)
            elif len(words) == 2 and words[0] in METHODS:
                pairs.append((words[0], words[1]))
            elif span.startswith(("/", "{base}/", "{instance}/")):
                paths.append(span)
        pairs.extend((method, path) for method in methods for path in paths)
        for method, path in pairs:
            found.add((method, path.removeprefix("{base}").removeprefix("{instance}").split("?")[0].split()[0]))
    return found


def template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


@pytest.fixture(scope="module")
def documented() -> set[Endpoint]:
    return documented_endpoints(REFERENCE.read_text(encoding="utf-8"))


def match_template(documented: set[Endpoint], method: str, path: str) -> Endpoint | None:
    # Prefer the most specific template (fewest placeholders) among those that match.
    candidates = [
        (m, t) for m, t in documented if m == method and template_regex(t).fullmatch(path) is not None
    ]
    return min(candidates, key=lambda e: e[1].count("{"), default=None)


def test_the_reference_documents_the_core_endpoints(documented: set[Endpoint]) -> None:
    assert documented >= CORE, CORE - documented


def test_parser_reads_both_documented_forms() -> None:
    sample = (
        "| update | `PATCH` (or `PUT`) `/rest/v1/t/{id}` |\n"
        "- login `POST {base}/rest/a?x=1` body\n"
        "- Upload: `POST /v1/up/{id}` — **no `/rest` prefix**"
    )
    assert documented_endpoints(sample) == {
        ("PATCH", "/rest/v1/t/{id}"),
        ("PUT", "/rest/v1/t/{id}"),
        ("POST", "/rest/a"),
        ("POST", "/v1/up/{id}"),
    }


async def test_the_emulator_serves_every_documented_endpoint(
    documented: set[Endpoint], emulator: RunningEmulator, creds: Any
) -> None:
    state = emulator.state
    async with httpx.AsyncClient(base_url=emulator.url, auth=(creds.username, creds.password)) as http:
        for method, template in sorted(documented):
            record = state.add_record("itsm_incident", {"subject": "shape"})
            attachment = state.add_attachment("itsm_incident", record, "a.txt", "text/plain", b"abc")
            values = {"table": "itsm_incident", "sys_id": record, "record_sys_id": record}
            values["attachment_sys_id"] = attachment
            path = template
            for name, value in values.items():
                path = path.replace(f"{{{name}}}", value)
            assert "{" not in path, f"no test value for a placeholder in {template}"
            kwargs: dict[str, Any] = {}
            if path == "/rest/v1/auth/login":
                kwargs["data"] = {"username": creds.username, "password": creds.password, "language": "ru"}
            elif path == "/v1/auth/login":
                kwargs["json"] = {"username": creds.username, "password": creds.password}
            elif path.startswith("/v1/attachments/upload/"):
                kwargs["files"] = {"files": ("b.txt", b"def", "text/plain")}
            elif method in {"POST", "PATCH", "PUT"}:
                kwargs["json"] = {"subject": "shape"}
            response = await http.request(method, path, **kwargs)
            assert 200 <= response.status_code < 300, (method, template, response.text)
            if not path.startswith("/v1/attachments/download/"):
                assert response.json()["status"] == "OK", (method, template)


class RecordingTransport:
    """Passes requests to the client's own HTTP layer and notes (method, path) of each."""

    def __init__(self, config: SimpleOneConfig) -> None:
        self.inner = default_transport(config)
        self.seen: list[Endpoint] = []

    async def send(self, request: HttpRequest) -> HttpAnswer:
        self.seen.append((request.method, urlsplit(request.url).path))
        return await self.inner.send(request)

    async def close(self) -> None:
        await self.inner.close()


async def test_the_client_calls_only_documented_endpoints(
    documented: set[Endpoint], emulator: RunningEmulator, creds: Any, tmp_path: Path
) -> None:
    config = SimpleOneConfig(emulator.url, username=creds.username, password=creds.password)
    recorder = RecordingTransport(config)
    caller = emulator.state.add_user("shape@ranepa.ru", "Sh", "Ape")
    upload_path = tmp_path / "f.txt"
    upload_path.write_bytes(b"file")
    async with SimpleOneClient(config, transport=recorder) as client:
        assert await client.find_person("shape@ranepa.ru") is not None
        ref = await client.create_ticket("itsm_incident", {"subject": "x", "caller": caller})
        await client.list_tickets(caller, ["itsm_incident", "itsm_request"], active_only=True, limit=5)
        assert await client.get_ticket("itsm_incident", ref.sys_id) is not None
        assert await client.get_ticket("itsm_incident", "166031411802099999") is None
        assert await client.find_ticket_by_marker("itsm_incident", caller, "[sb:1]") is None
        emulator.faults.expire_tokens()
        # The re-login tries the documented login, and the fallback when it is not there.
        emulator.faults.fail_next(status=404, path_prefix="/v1/auth/login")
        await client.add_comment("itsm_incident", ref.sys_id, "additional_comments", "hi")
        first = await client.upload_files("itsm_incident", ref.sys_id, [Upload("f.txt", "text/plain", upload_path)])
        await client.upload_files(
            "itsm_incident", ref.sys_id, [Upload("f.txt", "text/plain", upload_path)] * 2
        )
        for known in ([], first):  # matched by name, size and time; through the Document ID
            assert await client.find_attachments("itsm_incident", ref.sys_id, [Attachment("f.txt", 4)],
                                                 since=ref.updated_at, known=known)
        record = await client.create_record("itsm_request", {"subject": "y"})
        await client.list_records("itsm_request", query="active=1", fields=["sys_id"], limit=2, page=2)
        await client.get_record("itsm_request", record["sys_id"])
        await client.update_record("itsm_request", record["sys_id"], {"subject": "z"})
        await client.update_record("itsm_request", record["sys_id"], {"subject": "w"}, method="PUT")
        (attachment,) = await client.upload("itsm_request", record["sys_id"], [("a", "text/plain", b"a")])
        assert await client.download(attachment["sys_id"]) == b"a"
        await client.delete_record("itsm_request", record["sys_id"])

    assert recorder.seen.count(("POST", "/v1/auth/login")) == 2
    assert recorder.seen.count(("POST", "/rest/v1/auth/login")) == 1
    used = set()
    for method, path in recorder.seen:
        endpoint = match_template(documented, method, path)
        assert endpoint is not None, (
            f"the client called {method} {path}, which the reference does not document"
        )
        used.add(endpoint)
    assert used >= CORE, CORE - used  # and it exercises the whole documented surface
