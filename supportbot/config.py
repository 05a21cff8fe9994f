"""Configuration from environment variables and an optional .env file, validated at start.

Every setting is declared once in SETTINGS (name, default, meaning); the README's table is
checked against it by a test. A bad value stops the start with a message naming the variable.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str | None
    help: str
    secret: bool = False


# The query for a table's state labels in sys_choice (SimpleOneConfig.choice_query's default).
CHOICE_QUERY = "table_id={table}^column_id={column}^language={language}"
CHOICE_FIELDS = ("table", "column", "language")
POSTGRES_SCHEMES = ("postgresql", "postgres")  # URL schemes of a PostgreSQL database
# The corporate mail domain: signing in, and the users the demo emulator knows, by default.
DEFAULT_MAIL_DOMAIN = "ranepa.ru"
WEBHOOK_SECRET_MIN = 16  # characters of SIMPLEONE_WEBHOOK_SECRET

SETTINGS: tuple[Setting, ...] = (
    Setting("SUPPORTBOT_DATABASE_URL", "sqlite:///supportbot.db",
            "Where sessions and sign-ins are kept: sqlite:///FILE (relative), sqlite:////ABS/PATH, or "
            "postgresql://USER@HOST:PORT/DB for several workers"),
    Setting("DATABASE_POOL_SIZE", "10", "PostgreSQL connections per process"),
    Setting("SQLITE_SYNCHRONOUS", "NORMAL",
            "SQLite only: NORMAL (a commit survives the process's crash, not always the machine's) or FULL "
            "(each commit waits for the disk: survives a power loss too, slower)"),
    Setting("FLOWS_DIR", None, "Directory of the flow files (default: ./flows, else the project's flows/)"),
    Setting("FLOWS_WATCH", "false", "Reload flows when their files change (SIGHUP always reloads)"),
    Setting("AUTH_EMAIL_DOMAINS", DEFAULT_MAIL_DOMAIN, "Corporate mail domains allowed to sign in, comma-separated"),
    Setting("AUTH_CODE_TTL_MINUTES", "10", "How long a sign-in code is valid"),
    Setting("AUTH_MAX_ATTEMPTS", "5", "Wrong entries allowed per code"),
    Setting("AUTH_RESEND_COOLDOWN_SECONDS", "60", "Wait before another code can be mailed"),
    Setting("AUTH_MAX_CODES_PER_HOUR", "5", "Codes mailed per user and per address in an hour"),
    Setting("SESSION_IDLE_MINUTES", "30", "After this a dialogue asks to go on or start again (its draft kept)"),
    Setting("SIMPLEONE_URL", None,
            "SimpleOne base URL, e.g. https://sd.ranepa.ru (unset in `chat`: an emulator runs in process)"),
    Setting("SIMPLEONE_TOKEN", None, "A static API token (instead of username and password)", secret=True),
    Setting("SIMPLEONE_USERNAME", None, "API user for token login (with SIMPLEONE_PASSWORD)"),
    Setting("SIMPLEONE_PASSWORD", None, "Password of SIMPLEONE_USERNAME", secret=True),
    Setting("SIMPLEONE_AUTH", None,
            "token (SIMPLEONE_TOKEN), login (trade username and password for a token) or basic (HTTP Basic, "
            "username and password on every request); default: token if SIMPLEONE_TOKEN is set, else login"),
    Setting("SIMPLEONE_TIMEOUT", "30", "Seconds to wait for a SimpleOne answer"),
    Setting("SIMPLEONE_CA_BUNDLE", None, "A CA file to verify SimpleOne's TLS certificate with (default: system)"),
    Setting("SIMPLEONE_READ_BUDGET", "10",
            "Seconds from a read's start within which a read that failed (5xx, timeout, dropped) is tried again"),
    Setting("SIMPLEONE_LABELS_TTL", "600", "Seconds the state labels read from SimpleOne (sys_choice) are kept"),
    Setting("SIMPLEONE_CHOICE_QUERY", CHOICE_QUERY,
            "The sys_choice query for a table's state labels; placeholders {table}, {column}, {language}"),
    Setting("SIMPLEONE_WEBHOOK_SECRET", None,
            "Shared secret (16+ characters) of SimpleOne's push events: with it, `supportbot serve` takes "
            "POST /simpleone/events from the instance's business rule (header X-Supportbot-Secret)", secret=True),
    Setting("OUTBOX_WAIT_SECONDS", "5",
            "How long a submit waits for SimpleOne before answering that the number will follow"),
    Setting("OUTBOX_GIVE_UP_HOURS", "24", "A ticket SimpleOne keeps failing on is reported failed after this"),
    Setting("OUTBOX_RETRY_MAX_SECONDS", "300", "Longest pause between tries while SimpleOne is down"),
    Setting("STATUS_POLL_SECONDS", "60", "How often ticket states are checked for status notices (0: never)"),
    Setting("COMMENT_POLL_SECONDS", "30",
            "How often the journals of followed tickets are read for agents' comments (0: never); one round "
            "reads states and comments, every min(STATUS_POLL_SECONDS, COMMENT_POLL_SECONDS)"),
    Setting("SMTP_HOST", None, "Mail server for sign-in codes (unset in `chat`: letters are printed)"),
    Setting("SMTP_PORT", None, "Mail server port (default 587, or 465 with SMTP_TLS)"),
    Setting("SMTP_USER", None, "Mail server login"),
    Setting("SMTP_PASSWORD", None, "Mail server password", secret=True),
    Setting("SMTP_FROM", None, "Sender address of the letters (default: SMTP_USER)"),
    Setting("SMTP_STARTTLS", "true", "Upgrade the connection with STARTTLS"),
    Setting("SMTP_TLS", "false", "Connect with TLS from the start (port 465)"),
    Setting("SMTP_TIMEOUT", "20", "Seconds to wait for the mail server"),
    Setting("VK_TOKEN", None, "Community access token(s) with messages access; several, comma-separated, "
            "share the sending rate", secret=True),
    Setting("VK_GROUP_ID", None, "The community's numeric id"),
    Setting("VK_API_URL", "https://api.vk.ru/method/", "VK API base URL (a proxy, or a fake VK server in tests)"),
    Setting("VK_API_VERSION", "5.199", "VK API version"),
    Setting("VK_CALLBACK_SECRET", None, "Callback API secret key (`supportbot serve`)", secret=True),
    Setting("VK_CONFIRMATION_CODE", None, "The string VK expects when it confirms the callback server"),
    Setting("VK_RATE_LIMIT", "20", "API calls per second per token (VK allows about 20)"),
    Setting("VK_MAX_FILE_MB", "20", "Files larger than this are not downloaded from VK"),
    Setting("VK_CONCURRENCY", "32", "Users whose messages are handled at the same time"),
    Setting("SPOOL_DIR", "data/spool", "Where users' files wait until they are uploaded"),
    Setting("SPOOL_MAX_MB", "1024", "Disk the waiting files may take in all"),
    Setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting("METRICS_PORT", None,
            "`supportbot run`: serve /metrics, /healthz and /readyz on this port (`--metrics-port`; unset: not "
            "served). `serve` has them on its callback port"),
    Setting("METRICS_HOST", "127.0.0.1", "Address of the METRICS_PORT endpoints (loopback unless scraped from afar)"),
    Setting("LOG_FORMAT", "text", "text (one readable line per record) or json (one JSON object per line)"),
    Setting("RETAIN_DRAFTS_DAYS", "30", "A dialogue nobody touched for this long is deleted, with its draft"),
    Setting("RETAIN_EVENTS_DAYS", "7",
            "Handled events and kept replies, sent notices, sign-in sends and finished tickets' items are "
            "deleted after this"),
    Setting("RETAIN_FAILED_FILES_DAYS", "7",
            "Files of a ticket the outbox gave up on are kept this long for `supportbot outbox retry`"),
    Setting("STATS_KEEP_DAYS", "400", "Days of counters (`supportbot stats`) kept; older days are pruned"),
)
_KNOWN = {s.name for s in SETTINGS}
_EMAILISH = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}")


SimpleOneAuth = Literal["token", "login", "basic"]
SIMPLEONE_AUTH_MODES: tuple[SimpleOneAuth, ...] = ("token", "login", "basic")


@dataclass(frozen=True, slots=True)
class SimpleOneSettings:
    url: str
    token: str | None = field(repr=False)
    username: str | None
    password: str | None = field(repr=False)
    timeout: float
    ca_bundle: str | None
    auth: SimpleOneAuth = "login"  # how the bot authenticates (SIMPLEONE_AUTH, or inferred)
    read_budget: float = 10.0  # SIMPLEONE_READ_BUDGET
    labels_ttl: float = 600.0  # SIMPLEONE_LABELS_TTL
    choice_query: str = CHOICE_QUERY  # SIMPLEONE_CHOICE_QUERY


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    sender: str
    starttls: bool
    tls: bool
    timeout: float


@dataclass(frozen=True, slots=True)
class VkSettings:
    tokens: tuple[str, ...] = field(repr=False)
    group_id: int | None
    api_url: str
    api_version: str
    callback_secret: str | None = field(repr=False)
    confirmation_code: str | None
    rate_limit: float
    max_file_bytes: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class Retention:
    """How long personal data is kept (housekeeping enforces it), in seconds."""

    drafts: float = 30 * 86400.0  # RETAIN_DRAFTS_DAYS: sessions not stepped since
    events: float = 7 * 86400.0  # RETAIN_EVENTS_DAYS: handled inbox events, kept replies, sent notices…
    failed_files: float = 7 * 86400.0  # RETAIN_FAILED_FILES_DAYS: files of failed outbox items


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str
    flows_dir: Path
    flows_watch: bool
    auth_domains: tuple[str, ...]
    auth_code_ttl: float
    auth_max_attempts: int
    auth_resend_cooldown: float
    auth_max_codes_per_hour: int
    session_idle: float
    simpleone: SimpleOneSettings | None
    smtp: SmtpSettings | None
    spool_dir: Path
    spool_max_bytes: int
    log_level: str
    vk: VkSettings
    pool_size: int = 10
    outbox_wait: float = 5.0
    outbox_give_up: float = 86400.0
    outbox_retry_max: float = 300.0
    status_poll: float = 60.0
    comment_poll: float = 30.0
    # SIMPLEONE_WEBHOOK_SECRET: push events from SimpleOne are taken (by `serve`) only with it.
    simpleone_webhook_secret: str | None = field(default=None, repr=False)
    metrics_port: int | None = None  # METRICS_PORT: `run`'s metrics and health endpoints
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"  # LOG_FORMAT: text or json
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"  # SQLITE_SYNCHRONOUS
    retention: Retention = field(default_factory=Retention)
    stats_keep_days: int = 400  # STATS_KEEP_DAYS


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments, optional 'export ', single or double quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError([f"{path}:{number}: expected KEY=VALUE, got {raw.strip()[:60]!r}"])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        assert name in _KNOWN, name
        value = self.env.get(name)
        if value is None or value.strip() == "":
            default = next(s.default for s in SETTINGS if s.name == name)
            return default
        return value.strip()

    def parse(self, name: str, convert: Callable[[str], Any], what: str, fallback: Any) -> Any:
        value = self.raw(name)
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError:
            shown = "***" if any(s.secret for s in SETTINGS if s.name == name) else repr(value[:60])
            self.problems.append(f"{name} must be {what}, got {shown}")
            return fallback

    def number(self, name: str, low: float, high: float, *, whole: bool = False) -> Any:
        def convert(text: str) -> float | int:
            value: float | int = int(text) if whole else float(text)
            if not low <= value <= high:
                raise ValueError
            return value

        kind = "a whole number" if whole else "a number"
        return self.parse(name, convert, f"{kind} from {low:g} to {high:g}", low)

    def flag(self, name: str) -> bool:
        def convert(text: str) -> bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError

        return bool(self.parse(name, convert, "true or false", False))


def choice_query(r: _Reader) -> str:
    """SIMPLEONE_CHOICE_QUERY: a sysparm_query over {table} and {column} (the state column), and
    optionally {language}; any other placeholder, or a stray brace, is a problem named now rather
    than a failed label read later."""
    query = r.raw("SIMPLEONE_CHOICE_QUERY") or CHOICE_QUERY
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(query)
                  if name is not None]
    except ValueError:  # a lone { or }: a literal brace is written twice
        r.problems.append(f"SIMPLEONE_CHOICE_QUERY has an unpaired brace (write {{{{ or }}}} for a literal one): "
                          f"{query[:120]!r}")
        return CHOICE_QUERY
    wrong = sorted({name for name, spec, conversion in fields if name not in CHOICE_FIELDS or spec or conversion})
    missing = [name for name in ("table", "column") if name not in {f[0] for f in fields}]
    if wrong or missing:
        what = "; ".join([*([f"not a placeholder: {', '.join(repr(w) for w in wrong)}"] if wrong else []),
                          *([f"missing: {', '.join('{' + m + '}' for m in missing)}"] if missing else [])])
        r.problems.append(f"SIMPLEONE_CHOICE_QUERY must be a query over {{table}} and {{column}} (and "
                          f"optionally {{language}}), such as {CHOICE_QUERY}; {what} in {query[:120]!r}")
        return CHOICE_QUERY
    return query


def load_config(env: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Config:
    merged: dict[str, str] = {}
    if env_file is not None:
        merged.update(read_env_file(env_file))
    merged.update(os.environ if env is None else env)
    r = _Reader(merged)

    database_url = r.raw("SUPPORTBOT_DATABASE_URL") or ""
    scheme = urlsplit(database_url).scheme
    if scheme not in ("sqlite", *POSTGRES_SCHEMES):
        r.problems.append(f"SUPPORTBOT_DATABASE_URL must start with sqlite:/// or postgresql://, got {database_url!r}")

    flows_raw = r.raw("FLOWS_DIR")
    if flows_raw:
        flows_dir = Path(flows_raw)
    else:
        flows_dir = Path("flows") if Path("flows").is_dir() else PROJECT_ROOT / "flows"
    if not flows_dir.is_dir():
        r.problems.append(f"FLOWS_DIR must be a directory of flow files, {str(flows_dir)!r} is not one")

    domains = tuple(d.strip().lower().lstrip("@") for d in (r.raw("AUTH_EMAIL_DOMAINS") or "").split(",") if d.strip())
    bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
    if not domains or bad:
        r.problems.append("AUTH_EMAIL_DOMAINS must list mail domains such as ranepa.ru"
                          + (f"; not a domain: {', '.join(bad)}" if bad else ""))

    simpleone = None
    url = r.raw("SIMPLEONE_URL")
    auth_raw = r.raw("SIMPLEONE_AUTH")
    auth: SimpleOneAuth | None = None
    if auth_raw:
        if auth_raw.lower() in SIMPLEONE_AUTH_MODES:
            auth = cast(SimpleOneAuth, auth_raw.lower())
        else:
            r.problems.append(f"SIMPLEONE_AUTH must be token, login or basic, got {auth_raw[:60]!r}")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            r.problems.append(f"SIMPLEONE_URL must be an http(s) URL such as https://sd.example.ru, got {url!r}")
        token, user, password = r.raw("SIMPLEONE_TOKEN"), r.raw("SIMPLEONE_USERNAME"), r.raw("SIMPLEONE_PASSWORD")
        mode: SimpleOneAuth = auth or ("token" if token else "login")
        if token and (user or password):
            r.problems.append("give SIMPLEONE_TOKEN or SIMPLEONE_USERNAME/SIMPLEONE_PASSWORD, not both")
        elif auth is None and not token and not (user or password):
            r.problems.append("SIMPLEONE_URL needs SIMPLEONE_TOKEN, or SIMPLEONE_USERNAME and SIMPLEONE_PASSWORD")
        elif mode == "token" and not token:
            r.problems.append("SIMPLEONE_AUTH=token needs SIMPLEONE_TOKEN (or use SIMPLEONE_AUTH=login or basic "
                              "with SIMPLEONE_USERNAME and SIMPLEONE_PASSWORD)")
        elif mode != "token" and token:
            r.problems.append(f"SIMPLEONE_AUTH={mode} uses SIMPLEONE_USERNAME and SIMPLEONE_PASSWORD, "
                              "not SIMPLEONE_TOKEN")
        elif mode != "token" and not (user and password):
            r.problems.append(f"SIMPLEONE_AUTH={mode} needs both SIMPLEONE_USERNAME and SIMPLEONE_PASSWORD"
                              if auth else "SIMPLEONE_USERNAME and SIMPLEONE_PASSWORD go together")
        ca = r.raw("SIMPLEONE_CA_BUNDLE")
        if ca and not Path(ca).is_file():
            r.problems.append(f"SIMPLEONE_CA_BUNDLE must be a file, {ca!r} is not")
        simpleone = SimpleOneSettings(url.rstrip("/"), token, user, password,
                                      r.number("SIMPLEONE_TIMEOUT", 1, 600), ca, mode,
                                      r.number("SIMPLEONE_READ_BUDGET", 1, 600),
                                      r.number("SIMPLEONE_LABELS_TTL", 1, 86400), choice_query(r))
    else:  # checked all the same: a wrong value is named before it is ever used
        r.number("SIMPLEONE_TIMEOUT", 1, 600)
        r.number("SIMPLEONE_READ_BUDGET", 1, 600)
        r.number("SIMPLEONE_LABELS_TTL", 1, 86400)
        choice_query(r)

    smtp = None
    host = r.raw("SMTP_HOST")
    tls = r.flag("SMTP_TLS")
    starttls = r.flag("SMTP_STARTTLS")
    if host:
        port = r.raw("SMTP_PORT")
        port_value = r.number("SMTP_PORT", 1, 65535, whole=True) if port else (465 if tls else 587)
        user, password = r.raw("SMTP_USER"), r.raw("SMTP_PASSWORD")
        sender = r.raw("SMTP_FROM") or (user if user and _EMAILISH.fullmatch(user) else None)
        if not sender or not _EMAILISH.fullmatch(sender):
            r.problems.append("SMTP_FROM must be the sender's address (e.g. helpdesk@ranepa.ru)")
        if bool(user) != bool(password):
            r.problems.append("SMTP_USER and SMTP_PASSWORD go together")
        if tls and starttls:
            starttls = False  # implicit TLS already encrypts; STARTTLS would fail on it
        smtp = SmtpSettings(host, int(port_value), user, password, sender or "", starttls, tls,
                            r.number("SMTP_TIMEOUT", 1, 300))

    vk = _vk(r)

    webhook_secret = r.raw("SIMPLEONE_WEBHOOK_SECRET")
    if webhook_secret is not None and len(webhook_secret) < WEBHOOK_SECRET_MIN:
        r.problems.append(f"SIMPLEONE_WEBHOOK_SECRET must be at least {WEBHOOK_SECRET_MIN} characters "
                          f"(a random one: python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                          f"got {len(webhook_secret)}")

    log_level = (r.raw("LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        r.problems.append(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    synchronous = (r.raw("SQLITE_SYNCHRONOUS") or "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        r.problems.append(f"SQLITE_SYNCHRONOUS must be NORMAL or FULL, got {synchronous[:60]!r}")
    log_format = (r.raw("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        r.problems.append(f"LOG_FORMAT must be text or json, got {log_format[:60]!r}")

    config = Config(
        database_url=database_url,
        flows_dir=flows_dir,
        flows_watch=r.flag("FLOWS_WATCH"),
        auth_domains=domains,
        auth_code_ttl=r.number("AUTH_CODE_TTL_MINUTES", 1, 1440) * 60,
        auth_max_attempts=r.number("AUTH_MAX_ATTEMPTS", 1, 100, whole=True),
        auth_resend_cooldown=r.number("AUTH_RESEND_COOLDOWN_SECONDS", 0, 3600),
        auth_max_codes_per_hour=r.number("AUTH_MAX_CODES_PER_HOUR", 1, 1000, whole=True),
        session_idle=r.number("SESSION_IDLE_MINUTES", 1, 10080) * 60,
        simpleone=simpleone,
        smtp=smtp,
        spool_dir=Path(r.raw("SPOOL_DIR") or "data/spool"),
        spool_max_bytes=int(r.number("SPOOL_MAX_MB", 1, 1_000_000) * 1024 * 1024),
        log_level=log_level,
        vk=vk,
        pool_size=r.number("DATABASE_POOL_SIZE", 1, 500, whole=True),
        outbox_wait=r.number("OUTBOX_WAIT_SECONDS", 0, 60),
        outbox_give_up=r.number("OUTBOX_GIVE_UP_HOURS", 0.1, 24 * 30) * 3600,
        outbox_retry_max=r.number("OUTBOX_RETRY_MAX_SECONDS", 1, 3600),
        status_poll=r.number("STATUS_POLL_SECONDS", 0, 86400),
        comment_poll=r.number("COMMENT_POLL_SECONDS", 0, 86400),
        simpleone_webhook_secret=webhook_secret,
        metrics_port=int(r.number("METRICS_PORT", 1, 65535, whole=True)) if r.raw("METRICS_PORT") else None,
        metrics_host=r.raw("METRICS_HOST") or "127.0.0.1",
        log_format=log_format,
        sqlite_synchronous="FULL" if synchronous == "FULL" else "NORMAL",
        # Events at least a day: VK may deliver one again within hours, and its id must still dedupe.
        retention=Retention(r.number("RETAIN_DRAFTS_DAYS", 1, 3650) * 86400,
                            r.number("RETAIN_EVENTS_DAYS", 1, 3650) * 86400,
                            r.number("RETAIN_FAILED_FILES_DAYS", 0, 3650) * 86400),
        stats_keep_days=r.number("STATS_KEEP_DAYS", 1, 36500, whole=True),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _vk(r: _Reader) -> VkSettings:
    tokens = tuple(t.strip() for t in (r.raw("VK_TOKEN") or "").split(",") if t.strip())
    group_id = r.number("VK_GROUP_ID", 1, 10**12, whole=True) if r.raw("VK_GROUP_ID") else None
    api_url = r.raw("VK_API_URL") or ""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        r.problems.append(f"VK_API_URL must be an http(s) URL such as https://api.vk.ru/method/, got {api_url!r}")
    version = r.raw("VK_API_VERSION") or ""
    if not re.fullmatch(r"5\.\d{1,3}", version):
        r.problems.append(f"VK_API_VERSION must look like 5.199, got {version!r}")
    return VkSettings(
        tokens=tokens,
        group_id=int(group_id) if group_id is not None else None,
        api_url=api_url if api_url.endswith("/") else api_url + "/",
        api_version=version,
        callback_secret=r.raw("VK_CALLBACK_SECRET"),
        confirmation_code=r.raw("VK_CONFIRMATION_CODE"),
        rate_limit=r.number("VK_RATE_LIMIT", 1, 1_000_000),
        max_file_bytes=int(r.number("VK_MAX_FILE_MB", 1, 200) * 1024 * 1024),
        concurrency=r.number("VK_CONCURRENCY", 1, 1000, whole=True),
    )


def require_vk(config: Config, *, callback: bool) -> VkSettings:
    """The VK settings a channel command needs, or every missing one named at once."""
    vk, problems = config.vk, []
    if not vk.tokens:
        problems.append("VK_TOKEN is required: a community token with access to messages")
    if vk.group_id is None:
        problems.append("VK_GROUP_ID is required: the community's numeric id")
    if callback and not vk.confirmation_code:
        problems.append("VK_CONFIRMATION_CODE is required by `serve`: the string from the community's "
                        "Callback API settings")
    if callback and not vk.callback_secret:
        problems.append("VK_CALLBACK_SECRET is required by `serve`: set a secret key in the Callback API settings")
    if config.simpleone is None:
        problems.append("SIMPLEONE_URL is required for the VK bot (only `supportbot chat` runs an emulator)")
    if config.smtp is None:
        problems.append("SMTP_HOST is required for the VK bot: sign-in codes must go by mail")
    if problems:
        raise ConfigError(problems)
    return vk


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in POSTGRES_SCHEMES


def describe(config: Config) -> list[str]:
    """The effective configuration for logs and `supportbot config`, secrets masked."""
    so = config.simpleone
    sm = config.smtp
    return [
        f"database: {config.database_url}",
        f"flows: {config.flows_dir} (watch: {config.flows_watch})",
        f"sign-in domains: {', '.join(config.auth_domains)}",
        "simpleone: " + (f"{so.url} ({'token' if so.auth == 'token' else so.auth + ' as ' + str(so.username)})"
                         if so else "in-process emulator"),
        "smtp: " + (f"{sm.host}:{sm.port} from {sm.sender} (starttls={sm.starttls}, tls={sm.tls})" if sm
                    else "letters printed to the terminal"),
        f"spool: {config.spool_dir} (max {config.spool_max_bytes // (1024 * 1024)} MB)",
        f"kept: idle dialogues {config.retention.drafts / 86400:g} d, handled events "
        f"{config.retention.events / 86400:g} d, files of failed tickets {config.retention.failed_files / 86400:g} d;"
        f" logs as {config.log_format}",
        f"outbox: answer waits {config.outbox_wait:g} s, retries up to every {config.outbox_retry_max:g} s, "
        f"gives up after {config.outbox_give_up / 3600:g} h; status checked "
        + (f"every {config.status_poll:g} s" if config.status_poll else "never") + "; agents' comments read "
        + (f"every {config.comment_poll:g} s" if config.comment_poll else "never")
        + ("; push events taken (`serve`)" if config.simpleone_webhook_secret else ""),
        "vk: " + (f"group {config.vk.group_id}, {len(config.vk.tokens)} token(s), {config.vk.api_url}"
                  if config.vk.tokens else "not configured"),
    ]
