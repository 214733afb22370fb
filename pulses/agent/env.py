"""The agent's environment: built from an allowlist, so none of Reeve's own secrets reach it.

Reeve's configuration (the real environment, and `.env`, which settings read into `settings.DOTENV`
and never into os.environ) holds the API token, the Telegram bot token, SECRET_KEY, the database's
location and password. A prompt-injected agent would read them with `env`. So the agent gets only
what a program needs to run (PATH, HOME, locale, terminal, time zone, user), what the agent CLI
itself needs (Hapi's credential and settings, Claude Code's own variables, proxies and CA bundles to
reach its API), what the user adds with AGENT_ENV_PASSTHROUGH (never a database URL or password),
and what the worker sets for this run.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

# What the worker adds for one run: the pulse, and the agent's tools' way into Reeve's API.
PULSE_ID_VARIABLE = "REEVE_PULSE_ID"
RUN_TOKEN_VARIABLE = "REEVE_RUN_TOKEN"  # noqa: S105 (names, not secrets)
API_URL_VARIABLE = "REEVE_API_URL"
# The named agent-scoped token `mcp_config --write` puts in the Desk's .mcp.json, for interactive sessions.
DESK_TOKEN_VARIABLE = "REEVE_AGENT_TOKEN"  # noqa: S105

# Exact names a program (or the agent CLI) needs.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TERM",
        "TZ",
        "TMPDIR",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        # Hapi's credential (`hapi auth login` writes it to ~/.hapi/settings.json instead).
        "CLI_API_TOKEN",
        # Reaching the model's API from behind a proxy or a private CA.
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
    }
)
# Whole families: the locale, Hapi's settings (HAPI_HOME, HAPI_API_URL, HAPI_CLAUDE_PATH ...),
# Claude Code's own configuration and its API credentials.
ALLOWED_PREFIXES = ("LC_", "HAPI_", "CLAUDE_", "ANTHROPIC_")
# Reeve's own secrets and the database's location: never passed, whatever AGENT_ENV_PASSTHROUGH says.
REEVE_SECRETS = frozenset(
    {
        "PULSE_API_TOKEN",
        "TELEGRAM_BOT_TOKEN",
        "SECRET_KEY",
        "DATABASE_URL",
        "PULSE_DB_PATH",
        "PULSE_DB_URL",  # the original Reeve's name for the database (with its password)
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICEFILE",
    }
)
# What AGENT_ENV_PASSTHROUGH can never add either: a name that says it holds a database's location or
# password, or a value that is a database URL or any URL with a password in it (`PULSE_*` would
# otherwise pass PULSE_DB_URL, `MY_*` a MY_STORE=postgres://reeve:secret@...). The user's own keys for
# the agent's tools (AWS_SECRET_ACCESS_KEY, say) may still be passed by name.
_SECRET_NAME = re.compile(r"DB_URL|DATABASE|DB_PASS|PGPASS", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"^\s*(?:(?:postgres(?:ql)?|pgsql|mysql|mariadb|sqlite|redis|mongodb(?:\+srv)?)(?:\+\w+)?://"
    r"|[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@)",
    re.IGNORECASE,
)


def service_environment() -> dict[str, str]:
    """Reeve's configuration as the agent's allowlist filters it: `.env` (settings.DOTENV) under the
    real environment, as the settings read them."""
    from django.conf import settings

    return {**getattr(settings, "DOTENV", {}), **os.environ}


def passthrough_rules(value: str | Iterable[str]) -> tuple[str, ...]:
    """AGENT_ENV_PASSTHROUGH as rules: names, or prefixes ending in `*` (`MY_TOOL_*`)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


def _matches(name: str, rules: Iterable[str]) -> bool:
    return any(name.startswith(rule[:-1]) if rule.endswith("*") else name == rule for rule in rules)


def agent_environment(
    source: Mapping[str, str],
    *,
    passthrough: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables of `source` the agent may see, plus `extra` (what the worker sets for the run)."""
    rules = passthrough_rules(passthrough)
    env = {
        name: value
        for name, value in source.items()
        if name not in REEVE_SECRETS
        and (
            name in ALLOWED_NAMES
            or name.startswith(ALLOWED_PREFIXES)
            or (_matches(name, rules) and not _secret_looking(name, value))
        )
    }
    env.update(extra or {})
    return env


def _secret_looking(name: str, value: str) -> bool:
    """A variable AGENT_ENV_PASSTHROUGH may not add: a password or a database's location by its name
    or its value."""
    return bool(_SECRET_NAME.search(name) or _SECRET_VALUE.match(value))


def refused_passthrough(passthrough: Iterable[str]) -> list[str]:
    """The rules of AGENT_ENV_PASSTHROUGH that name one of Reeve's secrets (they are ignored)."""
    return [
        rule for rule in passthrough_rules(passthrough) if any(_matches(s, [rule]) for s in REEVE_SECRETS)
    ]
