"""What the configured agent command is, for `doctor` and `agent_probe`: Hapi's version, the agent it
runs, whether Hapi's credential is there, and whether the agent CLI itself is on PATH.

Hapi (npm `@twsxtd/hapi`) is a front end for agent CLIs: `hapi claude ...` runs Claude Code and passes
its stream-json through. It needs its own credential, the hub's token: `CLI_API_TOKEN` in the
environment (Reeve's `.env` passes it on) or `cliApiToken` in `~/.hapi/settings.json` (`HAPI_HOME`),
which `hapi auth login` writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from pulses.agent.command import HAPI, agent_command, model_problem
from pulses.agent.command import setup_problem as _setup_problem
from pulses.agent.env import agent_environment, service_environment
from pulses.agent.sandbox import setup_problem as sandbox_setup_problem

VERSION_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class AgentSetup:
    """The agent command as the worker would run it, and what it needs around it."""

    argv: list[str]
    executable: str | None  # argv[0] found on PATH, or None
    agent: str  # the agent Hapi runs (`claude`), or the command's own name without Hapi
    is_hapi: bool
    agent_cli: str | None  # the agent's own CLI on PATH (Hapi runs it), None when missing
    credential: str  # where Hapi's credential is, "" when nowhere (always "" without Hapi)


def _hapi_home(env: dict[str, str]) -> Path:
    return Path(env.get("HAPI_HOME") or Path(env.get("HOME", "~")) / ".hapi").expanduser()


def _credential(env: dict[str, str]) -> str:
    if env.get("CLI_API_TOKEN"):
        return "CLI_API_TOKEN in the environment"
    settings_file = _hapi_home(env) / "settings.json"
    try:
        stored = json.loads(settings_file.read_text())
    except (OSError, ValueError):
        return ""
    return str(settings_file) if isinstance(stored, dict) and stored.get("cliApiToken") else ""


def setup_problem() -> str:
    """What keeps the worker from running any pulse with this configuration ("" when nothing does):
    the same check the worker makes before each claim, for /api/status, the dashboard and doctor."""
    return (
        model_problem(settings.AGENT_MODEL)
        or _setup_problem(
            settings.HAPI_COMMAND, agent=settings.HAPI_AGENT, desk=Path(settings.REEVE_DESK_PATH)
        )
        or sandbox_setup_problem(
            settings.AGENT_SANDBOX, agent_command(settings.HAPI_COMMAND, agent=settings.HAPI_AGENT)
        )
    )


def agent_setup() -> AgentSetup:
    """Inspect HAPI_COMMAND (a ValueError for broken quoting) with the agent's own environment."""
    argv = agent_command(settings.HAPI_COMMAND, agent=settings.HAPI_AGENT)
    env = agent_environment(service_environment(), passthrough=settings.AGENT_ENV_PASSTHROUGH)
    path = env.get("PATH")
    executable = shutil.which(argv[0], path=path) if argv else None
    is_hapi = bool(argv) and Path(argv[0]).name == HAPI
    agent = argv[1] if is_hapi and len(argv) > 1 else Path(argv[0]).name if argv else ""
    agent_cli = executable
    if is_hapi:
        agent_cli = env.get("HAPI_CLAUDE_PATH") if agent == "claude" else None
        agent_cli = agent_cli or shutil.which(agent, path=path)
    return AgentSetup(
        argv=argv,
        executable=executable,
        agent=agent,
        is_hapi=is_hapi,
        agent_cli=agent_cli,
        credential=_credential(env) if is_hapi else "",
    )


def hapi_version(setup: AgentSetup) -> str:
    """`hapi --version` as Hapi prints it ("hapi version: 0.30.7"), or why it could not be read."""
    env = agent_environment(service_environment(), passthrough=settings.AGENT_ENV_PASSTHROUGH)
    try:
        proc = subprocess.run(  # noqa: S603 - the configured agent command, no shell
            [setup.executable or setup.argv[0], "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0].removeprefix("hapi version:").strip() if text else f"unknown (exit code {proc.returncode})"
