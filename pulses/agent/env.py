"""The agent's environment: built from an allowlist, so none of Reeve's own secrets reach it.

The worker's environment holds everything Reeve was configured with (`.env` is read into it):
the API token, the Telegram bot token, SECRET_KEY, the database's location and password. A
prompt-injected agent would read them with `env`. So the agent gets only what a program needs to
run (PATH, HOME, locale, terminal, time zone, user), what the agent CLI itself needs (Hapi's
credential and settings, Claude Code's own variables, proxies and CA bundles to reach its API),
what the user adds with AGENT_ENV_PASSTHROUGH, and what the worker sets for this run.
"""

from __future__ import annotations

import logging
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
    }
)


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
        and (name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES) or _matches(name, rules))
    }
    env.update(extra or {})
    return env


def refused_passthrough(passthrough: Iterable[str]) -> list[str]:
    """The rules of AGENT_ENV_PASSTHROUGH that name one of Reeve's secrets (they are ignored)."""
    return [
        rule for rule in passthrough_rules(passthrough) if any(_matches(s, [rule]) for s in REEVE_SECRETS)
    ]
