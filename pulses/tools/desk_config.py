"""The Desk's agent configuration for Reeve's MCP server: `.mcp.json` and `.claude/settings.json`.

Claude Code (and Hapi, its front end) reads project MCP servers from `.mcp.json` in the directory it
runs in, and their approval plus the tool permissions from `.claude/settings.json` (and the
personal `.claude/settings.local.json`). Those allow rules serve interactive sessions in a Desk its
owner trusted: Claude Code ignores them in a folder nobody trusted, and Reeve never trusts the Desk, so
a pulse's run gets Reeve's tools allowed on its command line instead (pulses/tools/desk_check.py says
when it would not, and what in the Desk keeps the agent from them). Writing merges: other servers,
permissions and keys are kept.

The server entry carries the API's URL and a named agent-scoped token (REEVE_AGENT_TOKEN) for
interactive sessions in the Desk; a run started by the worker uses its own run token instead. Nothing
in the Desk names Reeve's database. The token makes `.mcp.json` a secret: it is written 0600. A run's
agent works in the Desk and can read that file, so the token is short-lived: it expires after
DESK_TOKEN_HOURS, and `mcp_config --write` and `./reeve start` renew it once half of that has passed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from pulses.agent.env import API_URL_VARIABLE, DESK_TOKEN_VARIABLE
from pulses.db import is_postgres
from pulses.tools import desk_instructions
from pulses.tools.agent_tools import TOOL_NAMES

SERVER_NAME = "reeve"
MCP_JSON = ".mcp.json"
CLAUDE_SETTINGS = Path(".claude") / "settings.json"
CLAUDE_LOCAL_SETTINGS = Path(".claude") / "settings.local.json"
FIX = "run `./reeve mcp_config --write` (manage.py mcp_config --write)"
TOKEN_PLACEHOLDER = "<an agent-scoped token, made by mcp_config --write>"  # noqa: S105
# The original Reeve's servers (`python -m reeve.mcp.pulse_server` / `.notification_server`): gone,
# Reeve's own server replaces both, so writing removes their entries and permission rules.
ORIGINAL_SERVERS = ("pulse-queue", "telegram-notifier")


class DeskConfigError(Exception):
    """A Desk configuration file exists but cannot be read as a JSON object; it is left untouched."""


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    changed: bool
    replaced: tuple[str, ...] = ()  # the original Reeve's entries it no longer holds


def launch_command() -> tuple[str, list[str]]:
    """How an MCP client starts this checkout's server: its .venv python, else `uv run`."""
    root = Path(settings.BASE_DIR)
    manage = str(root / "manage.py")
    venv_python = root / ".venv" / "bin" / "python"
    if venv_python.exists():
        # Not resolved: the venv's python finds its site-packages through this path.
        return str(venv_python), [manage, "mcp_server"]
    if uv := shutil.which("uv"):
        return uv, ["run", "--frozen", "--project", str(root), "python", manage, "mcp_server"]
    return sys.executable, [manage, "mcp_server"]


def server_entry(token: str = TOKEN_PLACEHOLDER, *, api_url: str = "") -> dict[str, Any]:
    """Reeve's entry in the Desk's .mcp.json: this checkout's server, reaching the API at `api_url`
    (default REEVE_API_URL) with `token`."""
    command, args = launch_command()
    env = {API_URL_VARIABLE: api_url or settings.REEVE_API_URL, DESK_TOKEN_VARIABLE: token}
    return {"type": "stdio", "command": command, "args": args, "env": env}


def token_name(desk: Path) -> str:
    """The name of the Desk's agent-scoped token in `create_api_token --list`."""
    return f"desk-mcp {desk.name}"[:60]


def desk_token_lifetime() -> timedelta:
    """How long a Desk token works (DESK_TOKEN_HOURS)."""
    return timedelta(hours=settings.DESK_TOKEN_HOURS)


def _held_token(existing: dict[str, Any]) -> str | None:
    entry = (existing.get("mcpServers") or {}).get(SERVER_NAME) if isinstance(existing, dict) else None
    env = entry.get("env") if isinstance(entry, dict) else None
    held = env.get(DESK_TOKEN_VARIABLE) if isinstance(env, dict) else None
    return held if isinstance(held, str) else None


def _desk_token(existing: dict[str, Any], desk: Path) -> str:
    """The agent token the Desk's .mcp.json already holds while it works and less than half of its
    life has passed, else a new one (the old one of that name is revoked: a run's agent that read
    the Desk's file keeps nothing that outlives DESK_TOKEN_HOURS)."""
    from pulses.api import tokens  # the database, only when writing
    from pulses.models import TokenScope

    held = _held_token(existing)
    row = tokens.active_row(held) if held else None
    lifetime = desk_token_lifetime()
    if (
        row is not None
        and row.scope == TokenScope.AGENT
        and row.expires_at is not None
        and row.expires_at - timezone.now() > lifetime / 2
    ):
        return held
    name = token_name(desk)
    try:
        tokens.revoke(name)
    except tokens.TokenError:
        pass  # none yet
    return tokens.create(name, scope=TokenScope.AGENT, lifetime=lifetime)[1]


def refresh_desk_entry(desk: Path, *, api_url: str = "") -> list[str]:
    """Keep Reeve's own entry in the Desk's .mcp.json true to the running configuration: the API's
    address (`api_url`, default REEVE_API_URL), this checkout's python and manage.py, a token that
    works and is not past half its life. When any of them drifted the entry is rewritten, and nothing
    else in the file is changed; a file without Reeve's entry is left alone (doctor reports it).
    What was rewritten, in words ([] when nothing had drifted: the file is not touched)."""
    mcp_path = desk / MCP_JSON
    old = read_config(mcp_path) if mcp_path.exists() else None
    servers = (old or {}).get("mcpServers")
    entry = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
    if not isinstance(entry, dict):
        return []
    want = server_entry(_desk_token(old, desk), api_url=api_url)
    if entry == want:
        return []
    changes = _entry_changes(entry, want)
    servers[SERVER_NAME] = want  # in place: the other servers and keys keep their order and content
    _write_json(mcp_path, old, private=True)
    return changes


def _entry_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two of Reeve's entries, as a person reads it (no token is named)."""
    old_env = old.get("env") if isinstance(old.get("env"), dict) else {}
    changes = []
    if old_env.get(API_URL_VARIABLE) != new["env"][API_URL_VARIABLE]:
        changes.append(
            f"API address {old_env.get(API_URL_VARIABLE) or '(none)'} -> {new['env'][API_URL_VARIABLE]}"
        )
    if old.get("command") != new["command"]:
        changes.append(f"command {old.get('command') or '(none)'} -> {new['command']}")
    if old.get("args") != new["args"]:
        changes.append(f"arguments -> {' '.join(new['args'])}")
    if old_env.get(DESK_TOKEN_VARIABLE) != new["env"][DESK_TOKEN_VARIABLE]:
        changes.append(f"{DESK_TOKEN_VARIABLE} renewed")
    if extra := sorted(set(old_env) - set(new["env"])):
        changes.append(f"env {', '.join(extra)} removed")
    return changes or ["entry rewritten"]


def refresh_instructions(desk: Path) -> bool:
    """Bring Reeve's block in the Desk's CLAUDE.md up to date (its tool list, what happens to an
    answer) when the file holds one that differs; True when the file was rewritten. The rest of the
    file is kept as it is; a CLAUDE.md without the block is left alone."""
    path = desk / desk_instructions.INSTRUCTIONS
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    if not desk_instructions.BLOCK.search(text):
        return False
    return _write_text(path, desk_instructions.merged(text))


def keep_desk_true(desk: Path, *, api_url: str = "") -> list[str]:
    """Every start's and doctor's look at the Desk: Reeve's .mcp.json entry (`refresh_desk_entry`)
    and CLAUDE.md block (`refresh_instructions`) rewritten where they drifted; what was rewritten."""
    done = []
    if changes := refresh_desk_entry(desk, api_url=api_url):
        done.append(f"{MCP_JSON}: Reeve's entry rewritten ({'; '.join(changes)})")
    if refresh_instructions(desk):
        done.append(f"{desk_instructions.INSTRUCTIONS}: Reeve's block updated (its tool list)")
    return done


def renew_desk_token(desk: Path) -> bool:
    """Renew the agent token of the Desk's .mcp.json when Reeve's server is there and its token is
    past half its life (or no longer works), and whatever else of its entry drifted; True when the
    file was rewritten."""
    return bool(refresh_desk_entry(desk))


def permissions() -> list[str]:
    """Claude Code permission rules that allow each of Reeve's tools."""
    return [f"mcp__{SERVER_NAME}__{name}" for name in TOOL_NAMES]


def deny_rules() -> list[str]:
    """Claude Code permission rules that keep its Read and Edit tools out of Reeve's private places:
    the checkout's `.env`, REEVE_HOME (secret key, logs, backups, metrics, the default database) and
    the SQLite database's folder. Defence in depth behind the sandbox (pulses/agent/sandbox.py): they
    do not stop a shell. Folders, not the database's file name; a folder that holds the Desk is left
    out (the agent works there)."""
    desk = Path(settings.REEVE_DESK_PATH).expanduser().resolve()
    folders = [Path(settings.REEVE_HOME)]
    if not is_postgres():
        folders.append(Path(settings.DATABASES["default"]["NAME"]).parent)
    targets = [str(Path(settings.BASE_DIR).resolve() / ".env")]
    for folder in folders:
        folder = folder.expanduser().resolve()
        if folder != Path("/") and not (desk == folder or folder in desk.parents):
            targets.append(f"{folder}/**")
    targets = list(dict.fromkeys(targets))
    # "//" starts an absolute path in Claude Code's rules ("/x" is relative to the settings file).
    return [f"{tool}(/{target})" for target in targets for tool in ("Read", "Edit")]


def mcp_json() -> dict[str, Any]:
    return {"mcpServers": {SERVER_NAME: server_entry()}}


def claude_settings() -> dict[str, Any]:
    return {
        "enabledMcpjsonServers": [SERVER_NAME],
        "permissions": {"allow": permissions(), "deny": deny_rules()},
    }


def read_config(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, None when the file does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeskConfigError(f"{path} cannot be read: {exc}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise DeskConfigError(f"{path} is not valid JSON ({exc}); fix or remove it first") from None
    if not isinstance(data, dict):
        raise DeskConfigError(f"{path} holds JSON but not an object; fix or remove it first")
    return data


def _object(parent: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = parent.setdefault(key, {})
    if not isinstance(value, dict):
        raise DeskConfigError(f"{path}: '{key}' is not a JSON object; fix or remove it first")
    return value


def _list(parent: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = parent.setdefault(key, [])
    if not isinstance(value, list):
        raise DeskConfigError(f"{path}: '{key}' is not a JSON list; fix or remove it first")
    return value


def _is_original(item: Any) -> bool:
    """A server name or permission rule of the original Reeve's MCP servers."""
    return isinstance(item, str) and any(
        item == name or item == f"mcp__{name}" or item.startswith(f"mcp__{name}__")
        for name in ORIGINAL_SERVERS
    )


def original_entries(data: dict[str, Any]) -> list[str]:
    """The original Reeve's servers and permission rules in a .mcp.json or Claude settings object."""
    found = [name for name in data.get("mcpServers") or {} if _is_original(name)]
    for key in ("enabledMcpjsonServers", "disabledMcpjsonServers"):
        found += [item for item in data.get(key) or [] if _is_original(item)]
    perms = data.get("permissions") if isinstance(data.get("permissions"), dict) else {}
    for key in ("allow", "ask", "deny"):
        found += [rule for rule in perms.get(key) or [] if _is_original(rule)]
    return list(dict.fromkeys(found))


def _without_original(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of `data` without the original Reeve's servers and permission rules."""
    data = json.loads(json.dumps(data))
    if isinstance(data.get("mcpServers"), dict):
        data["mcpServers"] = {k: v for k, v in data["mcpServers"].items() if not _is_original(k)}
    lists = [(data, "enabledMcpjsonServers"), (data, "disabledMcpjsonServers")]
    if isinstance(data.get("permissions"), dict):
        lists += [(data["permissions"], key) for key in ("allow", "ask", "deny")]
    for parent, key in lists:
        if isinstance(parent.get(key), list):
            parent[key] = [item for item in parent[key] if not _is_original(item)]
    return data


def merged_mcp_json(existing: dict[str, Any], path: Path, *, token: str) -> dict[str, Any]:
    """`existing` with Reeve's server entry set, the original Reeve's removed; other servers untouched."""
    merged = _without_original(existing)
    _object(merged, "mcpServers", path)[SERVER_NAME] = server_entry(token)
    return merged


def merged_settings(existing: dict[str, Any], path: Path) -> dict[str, Any]:
    """`existing` with Reeve's server enabled, its tools allowed, Reeve's private paths denied, the
    original Reeve's servers and rules removed; other keys untouched."""
    merged = _without_original(existing)
    enabled = _list(merged, "enabledMcpjsonServers", path)
    if SERVER_NAME not in enabled:
        enabled.append(SERVER_NAME)
    if isinstance(merged.get("disabledMcpjsonServers"), list):
        merged["disabledMcpjsonServers"] = [s for s in merged["disabledMcpjsonServers"] if s != SERVER_NAME]
    allow = _list(_object(merged, "permissions", path), "allow", path)
    allow.extend(rule for rule in permissions() if rule not in allow)
    deny = _list(_object(merged, "permissions", path), "deny", path)
    deny.extend(rule for rule in deny_rules() if rule not in deny)
    return merged


def _write_json(path: Path, data: dict[str, Any], *, private: bool = False) -> bool:
    """Write `data` atomically (0600 when `private`); False (nothing written) when the file holds it."""
    return _write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", private=private)


def _write_text(path: Path, text: str, *, private: bool = False) -> bool:
    """Write `text` atomically (0600 when `private`); False (nothing written) when the file holds it."""
    if path.exists() and path.read_text() == text:
        if private:
            path.chmod(0o600)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if private:
            os.chmod(tmp, 0o600)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_desk_config(desk: Path) -> list[WrittenFile]:
    """Merge Reeve's server into `desk`/.mcp.json, its approval and permissions into
    `desk`/.claude/settings.json and its instructions into `desk`/CLAUDE.md. The files are read
    first, so a bad one stops before any write."""
    if not desk.is_dir():
        raise DeskConfigError(f"Desk directory {desk} does not exist: create it or set REEVE_DESK_PATH")
    mcp_path, settings_path = desk / MCP_JSON, desk / CLAUDE_SETTINGS
    old_mcp, old_settings = read_config(mcp_path) or {}, read_config(settings_path) or {}
    new_settings = merged_settings(old_settings, settings_path)
    instructions_path = desk / desk_instructions.INSTRUCTIONS
    try:
        old_instructions = instructions_path.read_text() if instructions_path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise DeskConfigError(f"{instructions_path} cannot be read: {exc}") from None
    new_mcp = merged_mcp_json(old_mcp, mcp_path, token=_desk_token(old_mcp, desk))
    return [
        WrittenFile(mcp_path, _write_json(mcp_path, new_mcp, private=True), tuple(original_entries(old_mcp))),
        WrittenFile(
            settings_path, _write_json(settings_path, new_settings), tuple(original_entries(old_settings))
        ),
        WrittenFile(
            instructions_path, _write_text(instructions_path, desk_instructions.merged(old_instructions))
        ),
    ]
