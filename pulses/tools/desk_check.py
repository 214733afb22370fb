"""What keeps the agent from using Reeve's tools, for `doctor`: the Desk's `.mcp.json` and Claude
settings as pulses/tools/desk_config.py writes them (`desk_mcp_problems`), and an agent command whose
runs would not get the tools allowed on their command line (`tools_not_allowed`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from pulses.agent.command import ALLOW_REEVE_TOOLS, CLAUDE, DEMO, HAPI, agent_command, runs_claude
from pulses.agent.env import DESK_TOKEN_VARIABLE, REEVE_SECRETS, agent_environment
from pulses.tools.desk_config import (
    CLAUDE_LOCAL_SETTINGS,
    CLAUDE_SETTINGS,
    FIX,
    MCP_JSON,
    SERVER_NAME,
    DeskConfigError,
    original_entries,
    permissions,
    read_config,
)

VERSION_TIMEOUT_SECONDS = 20.0


def _allowed(rule: str, rules: list[Any]) -> bool:
    server = f"mcp__{SERVER_NAME}"
    return any(r in (rule, server, f"{server}__*") for r in rules)


@dataclass(frozen=True)
class ToolsRefused:
    """Why runs of the agent command would not get Reeve's tools allowed; `certain` when the command is
    Claude Code (it says so), so its every call of them is refused in the Desk nobody trusted."""

    message: str
    certain: bool


def tools_not_allowed(command: str, *, agent: str) -> ToolsRefused | None:
    """Why runs of `command` (HAPI_COMMAND, with HAPI_AGENT `agent`) would not get Reeve's tools allowed,
    None when they do (or when the command is the demo agent, or cannot be parsed: other checks say so).

    A headless run has nobody to approve a tool call, and Claude Code ignores the Desk's own allow rules
    while nobody trusted the folder (Reeve never does); so the tools are allowed only where the executor
    adds `--allowedTools=mcp__reeve`: on the command line of Claude Code as `runs_claude` recognises it.
    A command under another name is asked its `--version`: Claude Code's own is certain to refuse them."""
    try:
        argv = agent_command(command, agent=agent)
    except ValueError:
        return None
    if not argv or command.strip() == DEMO or runs_claude(argv):
        return None
    why = f"so no run gets {ALLOW_REEVE_TOOLS}"
    if Path(argv[0]).name == HAPI:
        return ToolsRefused(
            f"Hapi runs `{argv[1]}`, not Claude Code: Reeve allows its tools only on Claude Code's command "
            f"line, {why}: set HAPI_AGENT={CLAUDE} (with HAPI_COMMAND={HAPI}) for Reeve's tools",
            certain=False,
        )
    if _says_claude_code(argv):
        return ToolsRefused(
            f"HAPI_COMMAND {command!r} runs Claude Code (its --version says so) under a name Reeve does not "
            f"recognise (a command named `{CLAUDE}`, or `{HAPI}` running {CLAUDE}), {why}; Claude Code "
            f"refuses every call of Reeve's tools in the Desk, which nobody trusted: set HAPI_COMMAND="
            f"{CLAUDE} or {HAPI}, or name your wrapper script `{CLAUDE}` (it gets the option and must pass "
            "its arguments on)",
            certain=True,
        )
    return ToolsRefused(
        f"HAPI_COMMAND {command!r} is not Claude Code as Reeve recognises it (a command named `{CLAUDE}`, or "
        f"`{HAPI}` running {CLAUDE}), {why}: the agent may use Reeve's tools only if it allows them itself",
        certain=False,
    )


def _says_claude_code(argv: list[str]) -> bool:
    """Whether `argv --version` prints Claude Code's version ("2.1.337 (Claude Code)")."""
    try:
        proc = subprocess.run(  # noqa: S603 - the configured agent command, no shell
            [*argv, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            env=agent_environment(os.environ, passthrough=settings.AGENT_ENV_PASSTHROUGH),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "(Claude Code)" in proc.stdout[:200]


def desk_mcp_problems(desk: Path | None = None) -> list[str]:
    """What keeps the agent in `desk` (default REEVE_DESK_PATH) from using Reeve's tools (empty when
    nothing does); for `doctor`."""
    desk = Path(desk or settings.REEVE_DESK_PATH)
    if not desk.is_dir():
        return [f"Desk directory {desk} does not exist: create it or set REEVE_DESK_PATH"]
    problems: list[str] = []
    mcp_path = desk / MCP_JSON
    try:
        servers = (read_config(mcp_path) or {}).get("mcpServers")
    except DeskConfigError as exc:
        problems.append(str(exc))
        servers = {}
    if isinstance(servers, dict) and (original := original_entries({"mcpServers": servers})):
        problems.append(
            f"{mcp_path} still names the original Reeve's MCP servers {', '.join(original)}: {FIX}"
        )
    entry = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
    if not isinstance(entry, dict):
        problems.append(f"{mcp_path} has no '{SERVER_NAME}' MCP server: {FIX}")
    else:
        problems.extend(_entry_problems(entry, mcp_path))
    allow: list[Any] = []
    deny: list[Any] = []
    enabled = False
    disabled = False
    for path in (desk / CLAUDE_SETTINGS, desk / CLAUDE_LOCAL_SETTINGS):
        try:
            data = read_config(path) or {}
        except DeskConfigError as exc:
            problems.append(str(exc))
            continue
        perms = data.get("permissions") if isinstance(data.get("permissions"), dict) else {}
        allow += perms.get("allow") if isinstance(perms.get("allow"), list) else []
        deny += perms.get("deny") if isinstance(perms.get("deny"), list) else []
        servers_on = data.get("enabledMcpjsonServers")
        enabled |= data.get("enableAllProjectMcpServers") is True
        enabled |= isinstance(servers_on, list) and SERVER_NAME in servers_on
        servers_off = data.get("disabledMcpjsonServers")
        disabled |= isinstance(servers_off, list) and SERVER_NAME in servers_off
    settings_path = desk / CLAUDE_SETTINGS
    try:
        original = original_entries(read_config(settings_path) or {})
    except DeskConfigError:
        original = []  # reported above
    if original:
        problems.append(f"{settings_path} still names the original Reeve's {', '.join(original)}: {FIX}")
    if disabled:
        problems.append(f"the '{SERVER_NAME}' MCP server is listed in disabledMcpjsonServers: {FIX}")
    elif not enabled:
        problems.append(f"{settings_path} does not enable the '{SERVER_NAME}' MCP server: {FIX}")
    missing = [rule for rule in permissions() if not _allowed(rule, allow)]
    if missing:
        problems.append(f"{settings_path} does not allow {', '.join(missing)}: {FIX}")
    denied = [rule for rule in permissions() if _allowed(rule, deny)]
    if denied:
        problems.append(
            f"the Desk's Claude settings deny {', '.join(denied)}: remove them from permissions.deny"
        )
    return problems


def _entry_problems(entry: dict[str, Any], path: Path) -> list[str]:
    command, args = entry.get("command"), entry.get("args")
    if not isinstance(command, str) or not isinstance(args, list):
        return [f"{path}: the '{SERVER_NAME}' server has no command and args: {FIX}"]
    problems = []
    if not (Path(command).is_file() and os.access(command, os.X_OK)) and shutil.which(command) is None:
        problems.append(f"{path}: the '{SERVER_NAME}' server's command {command} is not executable: {FIX}")
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    if manage not in args or "mcp_server" not in args:
        problems.append(
            f"{path}: the '{SERVER_NAME}' server does not run {manage} mcp_server (this checkout): {FIX}"
        )
    env = entry.get("env") if isinstance(entry.get("env"), dict) else {}
    if leaked := sorted(REEVE_SECRETS & set(env)):
        problems.append(
            f"{path}: the '{SERVER_NAME}' server's env holds {', '.join(leaked)}, which the agent can read: "
            f"remove them and {FIX}"
        )
    problems.extend(_token_problems(env.get(DESK_TOKEN_VARIABLE), path))
    return problems


def _token_problems(token: Any, path: Path) -> list[str]:
    from pulses.api import tokens
    from pulses.models import TokenScope

    if not isinstance(token, str) or not token:
        return [
            f"{path}: the '{SERVER_NAME}' server has no {DESK_TOKEN_VARIABLE} for interactive sessions: {FIX}"
        ]
    client = tokens.identify(token)
    if client is None:
        return [
            f"{path}: the '{SERVER_NAME}' server's {DESK_TOKEN_VARIABLE} is unknown, revoked or expired "
            f"(it lasts DESK_TOKEN_HOURS): {FIX}"
        ]
    if client.scope != TokenScope.AGENT:
        return [
            f"{path}: the '{SERVER_NAME}' server's {DESK_TOKEN_VARIABLE} has the '{client.scope}' scope; "
            f"the agent must only get an agent-scoped one: {FIX}"
        ]
    return []
