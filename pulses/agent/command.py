"""The agent's command line: HAPI_COMMAND as argv, whether it runs Claude Code, the prompt it is given,
and what keeps it from starting at all. No ORM here; pulses.agent.executor runs what this builds."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from pulses import limits

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


# Claude Code reads the model from here when no --model option names one (2.1.337).
MODEL_VARIABLE = "ANTHROPIC_MODEL"


def runs_hapi(argv: list[str]) -> bool:
    """Whether `argv` (from `agent_command`) starts Hapi."""
    return bool(argv) and Path(argv[0]).name == HAPI


def agent_options(argv: list[str], *, model: str, max_turns: int | None) -> tuple[list[str], dict[str, str]]:
    """The run's agent options for the CLI `argv` starts: the words that go before `--`, and what the
    run's environment adds. Both values are checked (pulses.limits) and each option is one word, so
    neither can be read as anything but its option's value.

    `--model=M` and `--max-turns=N` are Claude Code's own options (2.1.337: `--model` is in its help,
    `--max-turns` is hidden and works with `--print`). Any other agent gets the same words and refuses
    what it does not know in its own words (the attempt's error). Hapi (0.30.7) takes `--model` off its
    command line and appends it after `--`, where Claude reads it as words of the prompt and keeps its
    default model; so through Hapi the model travels as ANTHROPIC_MODEL, which Claude Code reads.
    Hapi passes `--max-turns=N` through as it is."""
    words: list[str] = []
    env: dict[str, str] = {}
    if model and runs_hapi(argv):
        env[MODEL_VARIABLE] = model
    elif model:
        words.append(f"--model={model}")
    if max_turns is not None:
        words.append(f"--max-turns={max_turns}")
    return words, env


def model_problem(model: str) -> str:
    """Why AGENT_MODEL `model` keeps every run from starting ("" when it is empty or a model name):
    it would reach the agent as `--model=M`, so it is held to the pulses' own rule (pulses.limits)."""
    try:
        limits.check_model(model)
    except limits.InvalidPulse:
        return f"AGENT_MODEL {model[:60]!r} is not a model name: {limits.MODEL_FORM}; fix it in .env"
    return ""


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
            "to its path (see docs/agent.md: claude, hapi, or the demo agent)"
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
