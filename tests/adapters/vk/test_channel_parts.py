"""The VK channel's small parts: update parsing, attachment choice, pacing, per-peer order."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.vk.api import TokenPacer
from adapters.vk.attachments import AttachmentFetcher, _Unusable, _Wanted, host_allowed, largest_photo, wanted
from adapters.vk.dispatcher import PeerDispatcher
from adapters.vk.updates import parse_update


def _update(**message: object) -> dict[str, object]:
    base: dict[str, object] = {"date": 1, "from_id": 5, "id": 10, "out": 0, "peer_id": 5, "text": "привет",
                               "attachments": [], "conversation_message_id": 3}
    base.update(message)
    return {"type": "message_new", "event_id": "e" * 40, "group_id": 1, "v": "5.199",
            "object": {"message": base, "client_info": {}}}


def test_a_message_is_parsed_once_into_plain_data() -> None:
    msg = parse_update(_update(payload='{"e":"menu"}'))
    assert msg is not None
    assert (msg.peer, msg.text, msg.payload, msg.in_group_chat) == ("vk:5", "привет", '{"e":"menu"}', False)
    chat = parse_update(_update(peer_id=2_000_000_007))
    assert chat is not None and chat.in_group_chat


def test_anything_else_is_ignored_without_an_error() -> None:
    assert parse_update({"type": "message_reply", "object": {}}) is None
    assert parse_update(_update(out=1)) is None  # the community's own message
    assert parse_update(_update(from_id=-1)) is None
    assert parse_update({"type": "message_new", "object": {"message": {"text": "x"}}, "event_id": "e"}) is None
    assert parse_update("junk") is None
    assert parse_update({"type": "message_new", "event_id": 5, "object": {"message": {"peer_id": 1}}}) is None


def test_the_largest_photo_size_is_taken() -> None:
    photo = {"id": 1, "sizes": [{"type": "s", "width": 75, "height": 50, "url": "small"},
                                {"type": "w", "width": 1280, "height": 960, "url": "big"},
                                {"type": "m", "width": 130, "height": 90, "url": "medium"}]}
    assert largest_photo(photo) == "big"
    assert largest_photo({**photo, "orig_photo": {"url": "orig"}}) == "orig"
    assert largest_photo({"sizes": []}) is None


def test_what_is_downloaded_and_what_is_refused() -> None:
    doc = wanted({"type": "doc", "doc": {"id": 3, "title": "отчёт", "ext": "pdf", "size": 1000, "url": "u"}})
    assert isinstance(doc, _Wanted) and (doc.name, doc.size) == ("отчёт.pdf", 1000)
    assert wanted({"type": "audio_message", "audio_message": {}}) == "audio_message"
    assert wanted({"type": "sticker", "sticker": {}}) == "sticker"
    # A file VK described without a link is said to have failed; a link preview is no file at all.
    assert wanted({"type": "photo", "photo": {"id": 7, "sizes": []}}) == _Unusable("photo_7.jpg")
    assert wanted({"type": "doc", "doc": {"title": "a.pdf"}}) == _Unusable("a.pdf")
    assert wanted({"type": "link", "link": {"url": "https://ranepa.ru"}}) is None


def test_files_come_only_from_vk_hosts() -> None:
    domains = frozenset({"userapi.com", "vk.com"})
    origins = frozenset({("http", "127.0.0.1", 8080)})  # the API's own: a fake VK on loopback
    assert host_allowed("https://sun9-1.userapi.com/impg/x.jpg", domains)
    assert host_allowed("https://vk.com/doc1_2", domains)
    assert host_allowed("https://VK.com:443/doc1_2", domains)
    assert host_allowed("http://127.0.0.1:8080/files/1", domains, origins)
    # Another port of an allowed host is another service: not a file host.
    assert not host_allowed("http://127.0.0.1:5432/", domains, origins)
    assert not host_allowed("https://127.0.0.1:8080/files/1", domains, origins)
    assert not host_allowed("https://vk.com:8443/doc1_2", domains)
    assert not host_allowed("https://vk.com:99999/x", domains)
    assert not host_allowed("https://evil-userapi.com/x", domains)
    assert not host_allowed("http://169.254.169.254/latest/meta-data", domains)
    assert not host_allowed("file:///etc/passwd", domains)
    assert not host_allowed("https://userapi.com.evil.ru/x", domains)


def test_the_pacer_keeps_each_token_under_its_rate_and_rotates() -> None:
    now = [100.0]
    pacer = TokenPacer(["a", "b"], rate=20, clock=lambda: now[0])
    slots = [pacer.reserve() for _ in range(80)]
    per_token: dict[str, list[float]] = {"a": [], "b": []}
    for token, wait in slots:
        per_token[token].append(100.0 + wait)
    for times in per_token.values():
        assert len(times) == 40
        # No more than 20 calls of one token in any one-second window.
        assert all(times[i + 20] - times[i] >= 1.0 - 1e-9 for i in range(len(times) - 20))
    assert max(wait for _, wait in slots) < 2.0  # 80 calls over two tokens: about two seconds


async def test_one_peer_in_order_many_peers_at_once() -> None:
    dispatcher = PeerDispatcher(limit=8)
    log: list[tuple[str, int]] = []
    running = 0
    most = 0

    def job(peer: str, n: int, delay: float) -> object:
        async def run() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(delay)
            log.append((peer, n))
            running -= 1
        return run

    for n in range(5):
        # The first message of each peer is the slowest: order must still hold.
        for p in range(20):
            dispatcher.submit(f"p{p}", job(f"p{p}", n, 0.02 if n == 0 else 0.001))  # type: ignore[arg-type]
    await dispatcher.drain()
    for p in range(20):
        assert [n for peer, n in log if peer == f"p{p}"] == list(range(5))
    assert 1 < most <= 8
    assert dispatcher.pending == 0


async def test_a_failing_job_does_not_stop_the_peer() -> None:
    dispatcher = PeerDispatcher()
    done: list[int] = []

    async def boom() -> None:
        raise RuntimeError("bug")

    async def fine() -> None:
        done.append(1)

    dispatcher.submit("p", boom)
    dispatcher.submit("p", fine)
    await dispatcher.drain()
    assert done == [1]


async def test_downloads_are_capped_while_streaming_and_redirects_are_checked() -> None:
    import aiohttp
    from aiohttp import web

    from adapters.vk.attachments import AttachmentFetcher

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to go by
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        return response

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.4 small")

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(location="/small.pdf")

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(location="http://169.254.169.254/latest/meta-data")

    app = web.Application()
    app.router.add_get("/big.zip", endless)
    app.router.add_get("/small.pdf", small)
    app.router.add_get("/hop", hop)
    app.router.add_get("/away", away)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def doc(title: str, path: str) -> dict[str, object]:
        return {"type": "doc", "doc": {"title": title, "url": base + path}}

    try:
        async with aiohttp.ClientSession() as session:
            fetcher = AttachmentFetcher(session, max_bytes=1024 * 1024, extra_origins=(base,))
            got = await fetcher.fetch([doc("big.zip", "/big.zip"), doc("via.pdf", "/hop"),
                                       doc("meta.txt", "/away")])
            assert [name for name, _ in got.oversized] == ["big.zip"]
            assert [(f.name, f.data) for f in got.files] == [("via.pdf", b"%PDF-1.4 small")]
            assert got.failed == ["meta.txt"]  # the redirect left VK's hosts: not followed
            strict = AttachmentFetcher(session, max_bytes=1024 * 1024)  # loopback is no VK host
            assert (await strict.fetch([doc("small.pdf", "/small.pdf")])).failed == ["small.pdf"]
    finally:
        await runner.cleanup()


def test_a_photo_with_sizes_of_the_wrong_type_is_still_a_photo() -> None:
    """A poison event of the attack run: width "abc" raised ValueError and the event was never answered."""
    photo = {"id": 9, "sizes": [{"url": "https://sun9-1.userapi.com/a.jpg", "width": "abc", "height": None},
                                {"url": "https://sun9-1.userapi.com/b.jpg", "width": 800, "height": 600},
                                {"url": "https://sun9-1.userapi.com/c.jpg", "width": True, "height": 10**6}]}
    assert largest_photo(photo) == "https://sun9-1.userapi.com/b.jpg"


async def test_an_attachment_of_an_unreadable_shape_fails_alone() -> None:
    async with aiohttp.ClientSession() as session:
        fetcher = AttachmentFetcher(session, max_bytes=1024)
        got = await fetcher.fetch([{"type": "doc", "doc": {"title": ["a"], "url": 123, "ext": {}, "size": "big"}},
                                   {"type": "photo", "photo": {"id": 1, "sizes": "not a list"}},
                                   {"type": "sticker", "sticker": {}}])
    assert got.unsupported == ["sticker"] and len(got.failed) == 2


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(message=st.dictionaries(st.sampled_from(["peer_id", "from_id", "id", "text", "payload", "attachments", "out",
                                                "is_cropped"]), _JSON, max_size=8),
       attachments=st.lists(st.fixed_dictionaries({"type": st.sampled_from(["photo", "doc", "sticker", "link"])},
                                                  optional={"photo": _JSON, "doc": _JSON, "sticker": _JSON}),
                            max_size=3))
def test_any_update_is_parsed_or_skipped_and_its_attachments_read_or_failed(
        message: dict[str, object], attachments: list[dict[str, object]]) -> None:
    """Random updates (wrong types, nesting, huge strings) never raise in parsing or in reading
    what to download."""
    update = {"type": "message_new", "event_id": "e1", "object": {"message": {**message, "attachments": attachments}}}
    parsed = parse_update(update)
    for attachment in (parsed.attachments if parsed is not None else attachments):
        try:
            wanted(attachment)
        except Exception as exc:  # the fetcher turns these into a failed file; none should happen
            raise AssertionError(f"{attachment!r}: {exc!r}") from exc


@pytest.mark.parametrize("peer_id", [float("inf"), 1.5, True, 2**60, -5, 0, "12a", None, [7], "--5", "²", "1" * 25])
def test_an_update_whose_ids_are_not_vk_ids_is_skipped(peer_id: object) -> None:
    update = {"type": "message_new", "event_id": "e1", "object": {"message": {"peer_id": peer_id, "text": "hi"}}}
    assert parse_update(update) is None


def test_ids_and_text_are_taken_as_vk_sends_them() -> None:
    message = {"peer_id": "7001", "from_id": 7001, "id": 5, "text": {"not": "text"}}
    parsed = parse_update({"type": "message_new", "event_id": "e1", "object": {"message": message}})
    assert parsed is not None and (parsed.peer_id, parsed.from_id, parsed.message_id) == (7001, 7001, 5)
    assert parsed.text == ""  # not its repr
    assert parse_update({"type": "message_new", "event_id": "e" * 129, "object": {"message": message}}) is None
