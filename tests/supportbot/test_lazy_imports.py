"""Commands import only what they use (issue 16: the chat's first reply within 0.3 s).

The modules a process ended up with are read from the process itself (sys.modules after the
command returns), so an import added at the top of some module that drags in PostgreSQL's
driver, the VK adapter, the studio or a test tool shows up here rather than as a slower start.
Nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = "Здравствуйте, не работает интернет в общежитии"

# What no start of the chat or of the command line needs: the production channels and the
# PostgreSQL driver (other commands), the studio, and tools only tests and benches use.
NEVER_IN_CHAT = ("asyncpg", "adapters.storage.postgres", "adapters.vk", "adapters.web", "vkbottle", "playwright",
                 "httpx", "aiosmtplib", "adapters.smtp", "prometheus_client", "trustme", "aiosqlite")
# On top of that, `import supportbot.cli` (every command's first step, `--help` included) loads
# no engine, no YAML or schema checking and no HTTP stack: each command imports its own.
NEVER_IN_CLI = (*NEVER_IN_CHAT, "aiohttp", "jsonschema", "yaml", "engine.load", "engine.dialogue",
                "supportbot.app", "emulators.simpleone.server", "adapters.simpleone")


def _modules_after(code: str, cwd: Path, stdin: str = "") -> set[str]:
    """The modules loaded once `code` has run in a fresh interpreter: a new user's environment
    (no settings of the bot), the cache of validated flows in cwd."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "SIMPLEONE_", "SMTP_", "VK_"))}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(cwd / "cache"), SPOOL_DIR=str(cwd / "spool"))
    listing = cwd / "modules.json"
    script = f"{code}\nimport json, sys\nopen({str(listing)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(listing.read_text(encoding="utf-8")))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_command_line_alone_loads_no_engine_and_no_http(tmp_path: Path) -> None:
    modules = _modules_after("import supportbot.cli", tmp_path)
    assert _loaded(modules, NEVER_IN_CLI) == []


def test_the_config_command_loads_no_engine_and_no_http(tmp_path: Path) -> None:
    modules = _modules_after("from supportbot.cli import main\nassert main(['config']) == 0", tmp_path)
    assert _loaded(modules, NEVER_IN_CLI) == []


def test_the_chat_loads_neither_other_channels_nor_postgres_nor_test_tools(tmp_path: Path) -> None:
    chat = "from supportbot.cli import main\nassert main(['chat']) == 0"
    first = _modules_after(chat, tmp_path, stdin=MESSAGE + "\n")
    assert "jsonschema" in first  # the flows were validated: nothing was known yet
    assert "engine.load" in first and "aiohttp.web" in first  # the engine, and the emulator's server
    assert _loaded(first, NEVER_IN_CHAT) == []
    # Started again on the same flows, the chat knows them valid: jsonschema is not even imported.
    again = _modules_after(chat, tmp_path, stdin=MESSAGE + "\n")
    assert _loaded(again, (*NEVER_IN_CHAT, "jsonschema")) == []
