"""The agent's command line: HAPI_COMMAND as argv, whether it runs Claude Code, the prompt it is given,
and what keeps it from starting at all. No ORM here; pulses.agent.executor runs what this builds."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

HAPI = "hapi"
DEFAULT_AGENT = "claude"
DEMO = "demo"  # HAPI_COMMAND=demo: the demo agent, to see the whole loop before installing a real one
DEMO_AGENT = Path(__file__).resolve().with_name("demo_agent.py")
CLAUDE = "claude"
# Reeve's own MCP server's tools, allowed on Claude Code's command line for each run. Claude Code ignores
# a project's `permissions.allow` in a folder nobody has trusted interactively (every headless Desk), and
# Reeve never marks the Desk trusted: then nothing the agent writes into the Desk's settings can widen
# its own permissions in a later run. The server's name is pulses.tools.desk_config.SERVER_NAME.
ALLOW_REEVE_TOOLS = "--allowedTools=mcp__reeve"


def agent_command(command: str, *, agent: str = DEFAULT_AGENT) -> list[str]:
    """HAPI_COMMAND as argv; a bare `hapi` (or `hapi` followed by options) runs `hapi AGENT`, and
    `demo` runs Reeve's demo agent (pulses/agent/demo_agent.py) with this Python.

    Today's Hapi needs the agent's name first (`hapi claude --print ...`); a command that already
    names one, or that runs Claude Code (or anything else) directly, is used as it is."""
    argv = shlex.split(command)
    if argv == [DEMO]:
        return [sys.executable, "-S", str(DEMO_AGENT)]
    if argv and Path(argv[0]).name == HAPI and (len(argv) == 1 or argv[1].startswith("-")):
        argv.insert(1, agent)
    return argv


def runs_claude(argv: list[str]) -> bool:
    """Whether `argv` (from `agent_command`) starts Claude Code, directly or through Hapi."""
    if not argv:
        return False
    name = Path(argv[0]).name
    return name == CLAUDE or (name == HAPI and len(argv) > 1 and argv[1] == CLAUDE)


def setup_problem(command: str, *, agent: str = DEFAULT_AGENT, desk: Path) -> str:
    """What keeps any pulse from running, "" when nothing does: the agent command missing or not
    executable, or the Desk missing. A setup error, not a pulse's failure: the worker claims nothing
    while there is one, so no pulse spends its retries on it."""
    try:
        argv0 = agent_command(command, agent=agent)[:1]
    except ValueError as exc:
        return f"HAPI_COMMAND cannot be parsed ({exc}): fix its quoting"
    if not argv0 or shutil.which(argv0[0]) is None:
        return (
            f"agent command {command!r} not found or not executable: install it, or set HAPI_COMMAND "
            "to its path (see README, Your agent: claude, hapi, or the demo agent)"
        )
    if not desk.is_dir():
        return f"Desk directory {desk} does not exist: create it or set REEVE_DESK_PATH"
    return ""


def build_prompt(prompt: str, sticky_notes: tuple[str, ...] | list[str]) -> str:
    """The prompt with its sticky notes appended as a reminder list."""
    if not sticky_notes:
        return prompt
    notes = "\n".join(f"  - {note}" for note in sticky_notes)
    return f"{prompt}\n\n📌 Reminders:\n{notes}"
