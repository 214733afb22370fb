"""What `./reeve start` says when it starts: where everything is, and what is still missing.

It also makes the Desk when there is none yet (with Reeve's agent configuration in it), so a first
start leaves no step undone but the ones only the user can take: a login, a real agent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection

from pulses.agent.command import DEMO, agent_command, setup_problem
from pulses.tools.desk_config import DeskConfigError, keep_desk_true, write_desk_config

logger = logging.getLogger(__name__)


def prepare_desk() -> str:
    """Create the Desk (REEVE_DESK_PATH) with Reeve's agent configuration when it does not exist, or
    keep it true to this start: Reeve's .mcp.json entry (the API's address, this checkout's python,
    a token not past half its life, DESK_TOKEN_HOURS) and CLAUDE.md block rewritten where they
    drifted. A note on what was done, "" when the Desk was there and true already."""
    desk = Path(settings.REEVE_DESK_PATH)
    if desk.is_dir():
        try:
            done = keep_desk_true(desk)
        except (DeskConfigError, OSError, DatabaseError) as exc:  # the Desk still works; its tools wait
            logger.warning("desk_not_refreshed path=%s error=%s", desk, exc)
            return ""
        for what in done:
            logger.info("desk_refreshed path=%s what=%r", desk, what)
        return "; ".join(done)
    try:
        desk.mkdir(parents=True, mode=0o700)
    except OSError as exc:
        return f"could not be created ({exc}): create it or set REEVE_DESK_PATH"
    logger.info("desk_created path=%s", desk)
    try:
        write_desk_config(desk)
    except (DeskConfigError, OSError) as exc:  # the Desk still works; its tools wait for mcp_config
        logger.warning("desk_config_not_written path=%s error=%s", desk, exc)
        return "created (its MCP setup failed: run ./reeve mcp_config --write)"
    return "created, with Reeve's MCP tools and instructions for the agent"


def _database() -> str:
    if connection.vendor == "postgresql":
        params = connection.settings_dict
        where = f"{params.get('HOST') or 'localhost'}:{params.get('PORT') or 5432}"
        return f"PostgreSQL {params.get('NAME')} on {where}"
    return f"SQLite {settings.PULSE_DB_PATH}"


def _agent() -> str:
    command = settings.HAPI_COMMAND
    if command.strip() == DEMO:
        return "demo (Reeve's demo agent: canned answers; docs/agent.md for a real one)"
    problem = setup_problem(command, agent=settings.HAPI_AGENT, desk=Path(settings.REEVE_DESK_PATH))
    if problem.startswith("agent command") or problem.startswith("HAPI_COMMAND"):
        return (
            f"{command}: NOT FOUND. No pulse runs until it is installed; meanwhile HAPI_COMMAND=demo "
            "in .env shows the whole loop with Reeve's demo agent (docs/agent.md)"
        )
    argv = agent_command(command, agent=settings.HAPI_AGENT)
    return f"{' '.join(argv)} (found: {shutil.which(argv[0])})"


def _agent_hold():
    from pulses import queue

    return queue.agent_hold_state()


def _queue_pause():
    from pulses import queue

    return queue.queue_pause_state()


def _has_login() -> bool:
    return get_user_model().objects.filter(is_staff=True, is_active=True).exists()


def lines(*, web: bool, desk_note: str = "") -> list[str]:
    """The start banner, line by line."""
    base = f"http://{settings.PULSE_API_HOST}:{settings.PULSE_API_PORT}"
    out = ["Reeve is starting (Ctrl+C stops it)."]
    if web:
        out += [
            f"  API        {base}/api/  (docs: {base}/api/docs, health: {base}/api/health)",
            f"  dashboard  {base}/dashboard/",
            f"  admin      {base}/admin/",
        ]
    else:
        out.append("  web        not started (--no-web): the worker only")
    desk = Path(settings.REEVE_DESK_PATH)
    out += [
        f"  database   {_database()}",
        f"  agent      {_agent()}",
        f"  Desk       {desk}" + (f": {desk_note}" if desk_note else ""),
    ]
    hold = _agent_hold()
    if hold.held:
        out.append(f"  HELD       no pulse runs: {hold.summary()}")
    elif hold.warning:
        out.append(f"  warning    {hold.warning}")
    paused = _queue_pause()
    if paused.paused:
        out.append(f"  PAUSED     no pulse runs: {paused.summary()}")
    if web and not _has_login():
        out.append("  login      none yet for the dashboard and admin: ./reeve createsuperuser")
    return out
