"""Configuration: defaults that run the demo, and a clear message naming any bad variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supportbot.config import SETTINGS, ConfigError, describe, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_nothing() -> None:
    config = load_config({}, env_file=None)
    assert config.database_url == "sqlite:///supportbot.db"
    assert config.auth_domains == ("ranepa.ru",)
    assert config.auth_code_ttl == 600 and config.auth_max_attempts == 5
    assert config.auth_resend_cooldown == 60 and config.session_idle == 1800
    assert config.simpleone is None and config.smtp is None
    assert (config.flows_dir / "bot.yaml").is_file()


def test_a_full_production_configuration() -> None:
    config = load_config({
        "SUPPORTBOT_DATABASE_URL": "sqlite:////var/lib/supportbot/bot.db",
        "AUTH_EMAIL_DOMAINS": "ranepa.ru, @Staff.RANEPA.ru",
        "SIMPLEONE_URL": "https://sd.ranepa.ru/",
        "SIMPLEONE_USERNAME": "bot", "SIMPLEONE_PASSWORD": "s3cret",
        "SMTP_HOST": "smtp.ranepa.ru", "SMTP_USER": "helpdesk@ranepa.ru", "SMTP_PASSWORD": "p",
        "SMTP_STARTTLS": "yes",
    }, env_file=None)
    assert config.auth_domains == ("ranepa.ru", "staff.ranepa.ru")
    assert config.simpleone is not None and config.simpleone.url == "https://sd.ranepa.ru"
    assert config.smtp is not None and config.smtp.port == 587 and config.smtp.sender == "helpdesk@ranepa.ru"


@pytest.mark.parametrize("env, named", [
    ({"SMTP_HOST": "h", "SMTP_FROM": "a@b.ru", "SMTP_PORT": "smtp"}, "SMTP_PORT"),
    ({"SMTP_HOST": "h", "SMTP_FROM": "a@b.ru", "SMTP_PORT": "70000"}, "SMTP_PORT"),
    ({"SMTP_HOST": "h"}, "SMTP_FROM"),
    ({"SMTP_HOST": "h", "SMTP_FROM": "a@b.ru", "SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS"),
    ({"SIMPLEONE_URL": "sd.ranepa.ru", "SIMPLEONE_TOKEN": "t"}, "SIMPLEONE_URL"),
    ({"SIMPLEONE_URL": "https://sd.ranepa.ru"}, "SIMPLEONE_TOKEN"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_USERNAME": "u"}, "SIMPLEONE_PASSWORD"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_TOKEN": "t", "SIMPLEONE_USERNAME": "u",
      "SIMPLEONE_PASSWORD": "p"}, "not both"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_TOKEN": "t", "SIMPLEONE_AUTH": "bearer"}, "SIMPLEONE_AUTH must be"),
    ({"SIMPLEONE_AUTH": "kerberos"}, "SIMPLEONE_AUTH must be token, login or basic"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_TOKEN": "t", "SIMPLEONE_AUTH": "basic"},
     "SIMPLEONE_AUTH=basic uses SIMPLEONE_USERNAME and SIMPLEONE_PASSWORD, not SIMPLEONE_TOKEN"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_USERNAME": "u", "SIMPLEONE_PASSWORD": "p",
      "SIMPLEONE_AUTH": "token"}, "SIMPLEONE_AUTH=token needs SIMPLEONE_TOKEN"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_AUTH": "login"}, "SIMPLEONE_AUTH=login needs both"),
    ({"SIMPLEONE_READ_BUDGET": "0"}, "SIMPLEONE_READ_BUDGET must be a number from 1 to 600"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_TOKEN": "t", "SIMPLEONE_READ_BUDGET": "ten"},
     "SIMPLEONE_READ_BUDGET must be a number"),
    ({"SIMPLEONE_LABELS_TTL": "-5"}, "SIMPLEONE_LABELS_TTL must be a number from 1 to 86400"),
    ({"SIMPLEONE_CHOICE_QUERY": "table_id={table}"}, "SIMPLEONE_CHOICE_QUERY must be a query over {table} and "
     "{column} (and optionally {language}), such as table_id={table}^column_id={column}^language={language}; "
     "missing: {column}"),
    ({"SIMPLEONE_CHOICE_QUERY": "table_id={table}^column_id={col}"}, "not a placeholder: 'col'; missing: {column}"),
    ({"SIMPLEONE_CHOICE_QUERY": "table_id={table!r}^column_id={column}"}, "not a placeholder: 'table'"),
    ({"SIMPLEONE_URL": "https://sd", "SIMPLEONE_TOKEN": "t", "SIMPLEONE_CHOICE_QUERY": "table_id={table^{column}"},
     "SIMPLEONE_CHOICE_QUERY has an unpaired brace"),
    ({"AUTH_EMAIL_DOMAINS": "ranepa"}, "AUTH_EMAIL_DOMAINS"),
    ({"AUTH_CODE_TTL_MINUTES": "0"}, "AUTH_CODE_TTL_MINUTES"),
    ({"AUTH_MAX_ATTEMPTS": "2.5"}, "AUTH_MAX_ATTEMPTS"),
    ({"SESSION_IDLE_MINUTES": "-1"}, "SESSION_IDLE_MINUTES"),
    ({"SUPPORTBOT_DATABASE_URL": "mysql://x"}, "SUPPORTBOT_DATABASE_URL"),
    ({"FLOWS_DIR": "/no/such/dir"}, "FLOWS_DIR"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
])
def test_a_bad_value_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env, env_file=None)
    assert named in str(info.value)


@pytest.mark.parametrize("env, mode", [
    ({"SIMPLEONE_TOKEN": "t"}, "token"),
    ({"SIMPLEONE_USERNAME": "bot", "SIMPLEONE_PASSWORD": "p"}, "login"),
    ({"SIMPLEONE_USERNAME": "bot", "SIMPLEONE_PASSWORD": "p", "SIMPLEONE_AUTH": "basic"}, "basic"),
    ({"SIMPLEONE_USERNAME": "bot", "SIMPLEONE_PASSWORD": "p", "SIMPLEONE_AUTH": " Login "}, "login"),
    ({"SIMPLEONE_TOKEN": "t", "SIMPLEONE_AUTH": "token"}, "token"),
])
def test_the_simpleone_auth_mode_is_set_or_inferred(env: dict[str, str], mode: str) -> None:
    config = load_config({"SIMPLEONE_URL": "https://sd.ranepa.ru", **env}, env_file=None)
    assert config.simpleone is not None and config.simpleone.auth == mode


def test_the_simpleone_client_knobs_default_to_the_clients_own_and_can_be_set() -> None:
    from adapters.simpleone.client import SimpleOneConfig
    from supportbot.app import simpleone_client

    base = {"SIMPLEONE_URL": "https://sd.ranepa.ru", "SIMPLEONE_TOKEN": "t"}
    so = load_config(base, env_file=None).simpleone
    default = SimpleOneConfig("https://sd.ranepa.ru", token="t")
    assert so is not None
    assert (so.read_budget, so.labels_ttl, so.choice_query) == (default.read_budget, default.labels_ttl,
                                                                default.choice_query)
    query = "table_id.name={table}^column_id.column_name={column}^language={language}"
    so = load_config({**base, "SIMPLEONE_READ_BUDGET": "2.5", "SIMPLEONE_LABELS_TTL": " 3600 ",
                      "SIMPLEONE_CHOICE_QUERY": query}, env_file=None).simpleone
    assert so is not None
    assert (so.read_budget, so.labels_ttl, so.choice_query) == (2.5, 3600.0, query)
    config = simpleone_client(so)._config  # what the bot's client is built with
    assert (config.read_budget, config.labels_ttl, config.choice_query) == (2.5, 3600.0, query)
    # A literal brace, written twice, is not a placeholder.
    assert load_config({**base, "SIMPLEONE_CHOICE_QUERY": "{{x}}^" + query}, env_file=None).simpleone is not None


def test_all_problems_are_reported_at_once_and_secrets_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"SMTP_HOST": "h", "SMTP_PORT": "x", "SIMPLEONE_URL": "ftp://x",
                     "SIMPLEONE_USERNAME": "bot", "SIMPLEONE_PASSWORD": "hunter2"}, env_file=None)
    assert len(info.value.problems) >= 3
    assert "hunter2" not in str(info.value)


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport AUTH_EMAIL_DOMAINS='ranepa.ru,example.ru'\n"
                        "SESSION_IDLE_MINUTES=15  # short\nAUTH_MAX_ATTEMPTS=\"3\"\n", encoding="utf-8")
    config = load_config({"AUTH_MAX_ATTEMPTS": "4"}, env_file=env_file)
    assert config.auth_domains == ("ranepa.ru", "example.ru")
    assert config.session_idle == 15 * 60 and config.auth_max_attempts == 4


def test_a_broken_env_file_line_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GOOD=1\nthis is not a setting\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config({}, env_file=env_file)
    assert ".env:2" in str(info.value)


def test_the_operations_guide_documents_every_setting() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", guide, re.MULTILINE))
    assert {s.name for s in SETTINGS} <= documented


def test_the_vk_commands_name_every_missing_setting() -> None:
    from supportbot.config import require_vk

    config = load_config({}, env_file=None)
    with pytest.raises(ConfigError) as info:
        require_vk(config, callback=True)
    text = str(info.value)
    for name in ("VK_TOKEN", "VK_GROUP_ID", "VK_CONFIRMATION_CODE", "VK_CALLBACK_SECRET", "SIMPLEONE_URL",
                 "SMTP_HOST"):
        assert name in text
    ready = load_config({"VK_TOKEN": "a, b", "VK_GROUP_ID": "123", "SIMPLEONE_URL": "https://sd.ranepa.ru",
                         "SIMPLEONE_TOKEN": "t", "SMTP_HOST": "smtp", "SMTP_FROM": "bot@ranepa.ru"}, env_file=None)
    vk = require_vk(ready, callback=False)
    assert vk.tokens == ("a", "b") and vk.group_id == 123 and vk.api_url == "https://api.vk.ru/method/"
    with pytest.raises(ConfigError, match="VK_CALLBACK_SECRET"):
        require_vk(ready, callback=True)


@pytest.mark.parametrize("env, named", [
    ({"VK_GROUP_ID": "-5"}, "VK_GROUP_ID"),
    ({"VK_GROUP_ID": "club123"}, "VK_GROUP_ID"),
    ({"VK_API_URL": "api.vk.ru"}, "VK_API_URL"),
    ({"VK_API_VERSION": "199"}, "VK_API_VERSION"),
    ({"VK_RATE_LIMIT": "0"}, "VK_RATE_LIMIT"),
    ({"VK_MAX_FILE_MB": "1000"}, "VK_MAX_FILE_MB"),
])
def test_a_bad_vk_value_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env, env_file=None)
    assert named in str(info.value)


async def test_run_without_vk_settings_stops_with_a_clear_message(tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VK_", "SIMPLEONE_", "SMTP_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "supportbot.cli", "run", cwd=tmp_path,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "VK_TOKEN is required" in err.decode() and "Traceback" not in err.decode()


def test_the_simpleone_webhook_secret_is_optional_and_long_enough() -> None:
    assert load_config({}, env_file=None).simpleone_webhook_secret is None
    secret = "a-long-random-shared-secret"
    config = load_config({"SIMPLEONE_WEBHOOK_SECRET": secret}, env_file=None)
    assert config.simpleone_webhook_secret == secret
    assert secret not in repr(config) and secret not in "\n".join(describe(config))
    with pytest.raises(ConfigError, match="SIMPLEONE_WEBHOOK_SECRET must be at least 16") as info:
        load_config({"SIMPLEONE_WEBHOOK_SECRET": "short-secret"}, env_file=None)
    assert "short-secret" not in str(info.value)


def test_sqlite_synchronous_is_normal_full_or_refused(tmp_path: Path) -> None:
    base = {"SUPPORTBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    assert load_config(base, env_file=None).sqlite_synchronous == "NORMAL"
    assert load_config({**base, "SQLITE_SYNCHRONOUS": "full"}, env_file=None).sqlite_synchronous == "FULL"
    with pytest.raises(ConfigError) as refused:
        load_config({**base, "SQLITE_SYNCHRONOUS": "OFF"}, env_file=None)
    assert any("SQLITE_SYNCHRONOUS must be NORMAL or FULL" in p for p in refused.value.problems)
