"""Files in incoming messages, downloaded at once: VK's URLs expire, a ticket may be created
hours later. Sizes are capped before and during the download; kinds the bot cannot take
(voice messages, stickers…) are named so the engine can say so."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from engine.ports import IncomingFile

log = logging.getLogger(__name__)

@dataclass(slots=True)
class Fetched:
    files: list[IncomingFile] = field(default_factory=list)
    oversized: list[tuple[str, int]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Wanted:
    name: str
    url: str
    size: int | None  # as VK announced it, when it does


@dataclass(frozen=True, slots=True)
class _Unusable:
    name: str  # a file VK described without a link to it


def _kind(name: str) -> str:
    """What a log line may say of a user's file: its type, never its name (personal data)."""
    suffix = PurePosixPath(name).suffix.lower()
    return f"{suffix[1:]} file" if 1 < len(suffix) <= 6 and suffix[1:].isalnum() else "file"


class TooBig(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


# Kinds that are not files and need no answer: a link preview VK adds to a pasted URL.
IGNORED_KINDS = frozenset({"link"})
# Where VK serves users' files from; the host of VK_API_URL is added (a proxy, a fake VK).
VK_FILE_DOMAINS = ("vk.com", "vk.ru", "vk.me", "userapi.com", "vkuserphoto.ru", "vkuseraudio.net",
                   "vkuservideo.net", "vk-cdn.net", "mycdn.me")
MAX_REDIRECTS = 3
UNREADABLE = "file"  # the name said for an attachment whose description cannot be read (as clean_file_name)


def largest_photo(photo: dict[str, Any]) -> str | None:
    """The URL of a photo's largest size (orig_photo when VK gives it)."""
    orig = photo.get("orig_photo")
    if isinstance(orig, dict) and orig.get("url"):
        return str(orig["url"])
    sizes = [s for s in photo.get("sizes") or [] if isinstance(s, dict) and s.get("url")]
    if not sizes:
        return None
    best = max(sizes, key=lambda s: _whole(s.get("width")) * _whole(s.get("height")))
    return str(best["url"])


def _whole(value: Any) -> int:
    """A number VK should have sent as one; 0 for anything else (a forged "abc")."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def wanted(attachment: dict[str, Any]) -> _Wanted | _Unusable | str | None:
    """What to download for one attachment; the kind's name when the bot cannot take it; None
    when it is not worth a word (a link preview)."""
    kind = str(attachment.get("type") or "")
    body = attachment.get(kind)
    if kind in IGNORED_KINDS:
        return None
    if kind == "photo" and isinstance(body, dict):
        name = f"photo_{body.get('id', 'vk')}.jpg"
        url = largest_photo(body)
        return _Wanted(name, url, None) if url else _Unusable(name)
    if kind == "doc" and isinstance(body, dict):
        title = str(body.get("title") or f"doc_{body.get('id', 'vk')}")
        ext = str(body.get("ext") or "")
        if ext and not title.lower().endswith("." + ext.lower()):
            title = f"{title}.{ext}"
        if not body.get("url"):
            return _Unusable(title)
        size = body.get("size")
        return _Wanted(title, str(body["url"]), int(size) if isinstance(size, int) else None)
    return kind or "unknown"


DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host, port


def origin(url: str) -> Origin | None:
    """A URL's scheme, host and port (the default one if none is written); None if it has none."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in DEFAULT_PORTS or not host:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:  # a port that is no number, or out of range
        return None
    return parts.scheme, host, port


def host_allowed(url: str, domains: frozenset[str], origins: frozenset[Origin] = frozenset()) -> bool:
    """A VK file host (a domain or under it, on its scheme's own port), or exactly one of origins
    (scheme, host and port: another port of an allowed host is another service)."""
    found = origin(url)
    if found is None:
        return False
    if found in origins:
        return True
    scheme, host, port = found
    return port == DEFAULT_PORTS[scheme] and any(host == d or host.endswith("." + d) for d in domains)


class AttachmentFetcher:
    def __init__(self, session: aiohttp.ClientSession, *, max_bytes: int, timeout: float = 60.0,
                 parallel: int = 8, extra_origins: tuple[str, ...] = ()) -> None:
        self.session = session
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._parallel = asyncio.Semaphore(parallel)
        # Only VK's own hosts: a forged update must not make the bot fetch internal URLs. The
        # API's own origin (a proxy, a fake VK) is allowed exactly: scheme, host and port.
        self.domains = frozenset(VK_FILE_DOMAINS)
        self.origins = frozenset(o for o in map(origin, extra_origins) if o is not None)

    async def fetch(self, attachments: list[dict[str, Any]]) -> Fetched:
        out = Fetched()
        jobs: list[_Wanted] = []
        for attachment in attachments:
            try:
                item = wanted(attachment)
            except Exception:  # a field of a shape no real update has: that file failed, not the event
                # Its type only: a post or a link carries what someone wrote.
                shape: Any = attachment  # typed as a dict; what VK sent may be anything
                log.warning("attachment of an unreadable shape (type %.40r)",
                            shape.get("type") if isinstance(shape, dict) else type(shape).__name__, exc_info=True)
                item = _Unusable(UNREADABLE)
            if isinstance(item, _Wanted):
                if item.size is not None and item.size > self.max_bytes:
                    out.oversized.append((item.name, item.size))
                else:
                    jobs.append(item)
            elif isinstance(item, _Unusable):
                out.failed.append(item.name)
            elif item is not None:
                out.unsupported.append(item)
        results = await asyncio.gather(*(self._download(job) for job in jobs))
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, bytes):
                mime = mimetypes.guess_type(job.name)[0] or "application/octet-stream"
                out.files.append(IncomingFile(job.name, mime, result))
            elif isinstance(result, TooBig):
                out.oversized.append((job.name, result.size))
            else:
                out.failed.append(job.name)
        return out

    async def _download(self, job: _Wanted) -> bytes | TooBig | None:
        async with self._parallel:
            url = job.url
            try:
                for _ in range(MAX_REDIRECTS + 1):  # redirects followed by hand: each hop is checked
                    if not host_allowed(url, self.domains, self.origins):
                        log.warning("download of a %s refused: %s is not a VK host", _kind(job.name),
                                    urlsplit(url).hostname)
                        return None
                    async with self.session.get(url, timeout=self.timeout, allow_redirects=False) as resp:
                        if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                            url = str(resp.url.join(URL(resp.headers["Location"])))
                            continue
                        if resp.status != 200:
                            log.warning("download of a %s answered HTTP %d", _kind(job.name), resp.status)
                            return None
                        if resp.content_length is not None and resp.content_length > self.max_bytes:
                            return TooBig(resp.content_length)
                        data = bytearray()
                        async for chunk in resp.content.iter_chunked(65536):
                            data.extend(chunk)
                            if len(data) > self.max_bytes:  # a lying or missing Content-Length
                                return TooBig(len(data))
                        return bytes(data)
                log.warning("download of a %s: too many redirects", _kind(job.name))
                return None
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("download of a %s failed: %s", _kind(job.name), exc)
                return None
