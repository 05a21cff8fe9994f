"""Configuration: defaults that run the demo, and a clear message naming any bad variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supportbot.config import SETTINGS, ConfigError, load_config

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


def test_the_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.MULTILINE))
    assert {s.name for s in SETTINGS} <= documented
