"""`doctor`'s checks of the agent: its command (with Hapi, its version, credential and agent CLI),
whether the queue is held because it cannot run (and one probe run), the Desk it works in, the
sandbox it runs in, and whether it may use Reeve's tools. pulses/ops/doctor.py runs them in order."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from pulses.ops.check_result import FAIL, OK, WARN, Check

HAPI_NO_CREDENTIAL = (
    "Hapi has no credential: run `hapi auth login` as the user Reeve runs as, or set "
    "CLI_API_TOKEN (your Hapi hub's token) in .env"
)
HAPI_NO_AGENT_CLI = (
    "Hapi runs `{agent}`, which is not on PATH: install it (Claude Code: the npm package "
    "@anthropic-ai/claude-code), or set HAPI_AGENT, or HAPI_COMMAND to the agent itself"
)


def check_agent() -> list[Check]:
    """The agent command; with Hapi also its version and agent, its credential and the agent's CLI."""
    from pulses.agent.check import agent_setup, hapi_version
    from pulses.agent.command import DEMO

    try:
        setup = agent_setup()
    except ValueError as exc:
        return [
            Check("agent command", FAIL, f"HAPI_COMMAND cannot be parsed ({exc}): fix its quoting in .env")
        ]
    if not setup.executable:
        return [
            Check(
                "agent command",
                FAIL,
                f"agent command {settings.HAPI_COMMAND!r} not found on PATH, so the worker claims no pulse "
                "(they wait, no retry spent): install it or set HAPI_COMMAND to its full path in .env; "
                "HAPI_COMMAND=demo tries Reeve with its demo agent",
            )
        ]
    if settings.HAPI_COMMAND.strip() == DEMO:
        return [
            Check(
                "agent command",
                WARN,
                "demo: Reeve's demo agent answers from canned rules (docs/agent.md, Your agent)",
            )
        ]
    runs = " ".join(setup.argv[:2]) if setup.is_hapi else setup.argv[0]
    checks = [Check("agent command", OK, f"{setup.argv[0]} -> {setup.executable} (runs `{runs} ...`)")]
    if not setup.is_hapi:
        return checks
    checks.append(Check("hapi", OK, f"Hapi {hapi_version(setup)}, agent {setup.agent} (HAPI_AGENT)"))
    no_agent_cli = HAPI_NO_AGENT_CLI.format(agent=setup.agent)
    # What Hapi needs besides itself: (check, what was found or "", what to do when nothing was).
    needs = (
        ("credential", setup.credential and f"present: {setup.credential}", HAPI_NO_CREDENTIAL),
        ("agent cli", setup.agent_cli and f"{setup.agent} -> {setup.agent_cli}", no_agent_cli),
    )
    for name, found, missing in needs:
        checks.append(Check(name, OK, found) if found else Check(name, FAIL, missing))
    return checks


PROBE_PROMPT = "Reeve's doctor checks that you can run: answer OK and nothing else."


def check_agent_ready(*, probe: bool = True) -> Check:
    """Whether the queue is held because the agent cannot run (pulses.agent_hold). While it is, one
    short run tries the agent (the probe); if that run works the hold ends and the queue resumes."""
    from pulses import queue

    hold = queue.agent_hold_state()
    if not hold.held:
        if hold.warning:
            return Check("agent ready", WARN, hold.warning)
        return Check("agent ready", OK, "the queue is not held: the last runs reached the agent's model")
    if probe:
        from pulses.agent.executor import AgentRequest
        from pulses.worker.run import default_executor

        outcome = default_executor(None).run(AgentRequest(prompt=PROBE_PROMPT))
        if outcome.success:
            queue.agent_ready(by="doctor")
            return Check(
                "agent ready", OK, f"the agent runs again (it was held: {hold.problem}); the queue resumes"
            )
    return Check("agent ready", FAIL, f"no pulse runs: {hold.summary()}")


def check_queue_paused() -> Check:
    """Whether the queue's pause switch is on (pulses.queue_pause): a warning, since it is on purpose."""
    from pulses import queue

    paused = queue.queue_pause_state()
    if paused.paused:
        return Check("queue paused", WARN, f"no pulse runs: {paused.summary()}")
    return Check("queue paused", OK, "the queue is not paused")


def check_desk() -> Check:
    desk = Path(settings.REEVE_DESK_PATH)
    if not desk.is_dir():
        return Check(
            "desk", FAIL, f"Desk directory {desk} does not exist: mkdir -p {desk} or set REEVE_DESK_PATH"
        )
    if not os.access(desk, os.W_OK | os.X_OK):
        return Check("desk", FAIL, f"Desk directory {desk} is not writable by this user: fix its ownership")
    return Check("desk", OK, f"{desk}")


def check_containment() -> Check:
    """Which containment the agent runs in (AGENT_SANDBOX; pulses/agent/sandbox.py, SECURITY.md)."""
    from pulses.agent.sandbox import BWRAP, containment

    found = containment(settings.AGENT_SANDBOX)
    if found.problem:
        return Check("containment", FAIL, f"{found.problem}: the worker runs no pulse until it is fixed")
    if found.active == BWRAP:
        return Check(
            "containment",
            OK,
            f"bubblewrap (AGENT_SANDBOX={found.mode}): the agent runs in its own PID namespace, "
            "Reeve's .env, home, database, logs and backups hidden",
        )
    return Check(
        "containment",
        WARN,
        f"none ({found.note}): the agent runs as this user and can read Reeve's .env, secret key and "
        "database with its shell; install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap) "
        "and set AGENT_SANDBOX=auto (SECURITY.md)",
    )


def refresh_desk() -> str:
    """Keep the Desk true to the Reeve that runs (its API address when one runs, else this
    configuration's): what was rewritten, or why nothing could be ("" when all was true)."""
    from django.db import DatabaseError

    from pulses.ops.instance_lock import running_api_url
    from pulses.tools.desk_config import DeskConfigError, keep_desk_true

    try:
        done = keep_desk_true(Path(settings.REEVE_DESK_PATH), api_url=running_api_url() or "")
    except (DeskConfigError, OSError, DatabaseError) as exc:
        return f"the Desk's Reeve entry could not be brought up to date ({exc})"
    return f"rewrote {'; '.join(done)}" if done else ""


def check_agent_tools() -> Check:
    """Whether the agent may use Reeve's MCP tools in a run: a failure when the agent command's runs
    would not get them allowed, a warning when the Desk does not offer them (pulses run either way).
    Reeve's own entry in the Desk is brought up to date first, and the check says what it rewrote."""
    from pulses.agent.command import ALLOW_REEVE_TOOLS
    from pulses.tools.desk_check import desk_mcp_problems, tools_not_allowed

    if refused := tools_not_allowed(settings.HAPI_COMMAND, agent=settings.HAPI_AGENT):
        return Check("agent tools", FAIL if refused.certain else WARN, refused.message)
    rewrote = refresh_desk()
    problems = desk_mcp_problems()
    if problems:
        return Check("agent tools", WARN, "; ".join([*problems, *([rewrote] if rewrote else [])]))
    return Check(
        "agent tools",
        OK,
        "the Desk's .mcp.json and .claude/settings.json offer Reeve's tools, and each run allows them on "
        f"Claude Code's command line ({ALLOW_REEVE_TOOLS}; the Desk itself is never marked trusted)"
        + (f"; {rewrote}" if rewrote else ""),
    )
