"""Reeve's tools for the agent over MCP (stdio): a client of the REST API's agent endpoints.

The server holds no database connection and knows no database: each tool validates its arguments
against the JSON schema it publishes, refuses arguments it does not have, and makes one call to
Reeve's API (pulses/api/agent_views.py) with an agent-scoped token, which allows nothing else (which
token, and the call itself: `pulses.tools.api_client`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from pulses import limits
from pulses.timeparse import ACCEPTED_FORMS
from pulses.tools import agent_tools
from pulses.tools.api_client import call_api

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

WHEN = (
    "When to wake you, read in the user's time zone: "
    + "; ".join(ACCEPTED_FORMS)
    + ". A time already past means as soon as possible."
)
PRIORITY = (
    "Run order among pulses due at the same time: high > normal > low > deferred. Use high for what "
    "the user is waiting on ('critical' is kept for the user's own messages)."
)
PULSE_ID = "The pulse's id, as shown by list_upcoming_pulses or returned by schedule_pulse."
SCHEDULE = (
    "When it fires: a 5-field cron expression read in `timezone` (minute hour day-of-month month "
    "day-of-week, e.g. '0 8 * * 1-5' for weekdays at 08:00, '*/30 9-17 * * *'), a macro (@hourly, "
    "@daily, @weekly), or an interval such as 'every 30 minutes' or 'every 2 hours'. Routines you "
    "create may not fire more often than the owner allows (by default every 15 minutes at most)."
)
ROUTINE_NAME = "The routine's name, as list_routines shows it."
MODEL = (
    "The model the run uses, e.g. 'sonnet' or 'opus' (a model name, never an option); omit it for the "
    "owner's default. Choose a cheaper model for simple reminders, a stronger one for hard work."
)
TIMEOUT = (
    f"Seconds the run may last before it is stopped ({limits.MIN_TIMEOUT_SECONDS} at least; no more than "
    "the owner's limit for every run, PULSE_TIMEOUT_SECONDS); omit it for that limit."
)
MAX_TURNS = f"The most turns the run may take (1 to {limits.MAX_MAX_TURNS}); omit it for no limit of Reeve's."
# The agent options as each tool takes them; pulses/limits.py holds the numbers the API checks too.
ModelOption = Annotated[
    str | None, Field(max_length=limits.MAX_MODEL_CHARS, pattern=limits.MODEL_PATTERN, description=MODEL)
]
TimeoutOption = Annotated[
    int | None, Field(ge=limits.MIN_TIMEOUT_SECONDS, le=limits.MAX_TIMEOUT_SECONDS, description=TIMEOUT)
]
MaxTurnsOption = Annotated[
    int | None, Field(ge=limits.MIN_MAX_TURNS, le=limits.MAX_MAX_TURNS, description=MAX_TURNS)
]
CLOCK = "HH:MM in the routine's zone"

INSTRUCTIONS = (
    "Reeve wakes you with 'pulses': scheduled prompts that start a new agent run in this Desk. "
    "Use these tools to set your own next wake-ups (optionally continuing this very conversation), "
    "to review or change the ones pending, and to message the user on Telegram."
)


class ReeveMCPServer(MCPServer):
    """Refuses a call that names an argument the tool does not have: a model's misnamed argument
    (`at_time` for `when`) would otherwise be dropped, and the call would do something else."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = list(tool.parameters.get("properties", {}))
            unknown = sorted(str(key) for key in arguments or {} if key not in known)
            if unknown:
                logger.info("mcp_tool_refused tool=%s reason=unknown_arguments names=%s", name, unknown)
                raise ToolError(
                    f"{name} has no argument {', '.join(repr(key[:60]) for key in unknown[:10])}; "
                    f"nothing was done. Its arguments are: {', '.join(known)}"
                )
        return await super().call_tool(name, arguments, context)

    def agent_tool(self, fn: Callable[..., _T]) -> Callable[..., _T]:
        """Publish `fn` as the tool of its name, its docstring (as one paragraph) the description the
        model reads. Refusals come back as tool errors the model can read; a crash is logged and is
        one too."""
        name = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> _T:
            try:
                return fn(*args, **kwargs)
            except ToolError as exc:
                logger.info("mcp_tool_refused tool=%s reason=%s", name, exc)
                raise
            except Exception as exc:
                logger.exception("mcp_tool_crashed tool=%s", name)
                raise ToolError(
                    f"{name} failed with an internal error ({type(exc).__name__}: {exc})"
                ) from None

        return self.tool(name=name, description=" ".join((fn.__doc__ or "").split()))(wrapper)


def _closed_schemas(server: MCPServer) -> None:
    """Publish that each tool takes no other arguments than those it lists."""
    for tool in server._tool_manager.list_tools():
        tool.parameters["additionalProperties"] = False


def build_server() -> MCPServer:
    """The MCP server with Reeve's tools (agent_tools.TOOL_NAMES)."""
    server = ReeveMCPServer("reeve", instructions=INSTRUCTIONS)

    @server.agent_tool
    def schedule_pulse(
        prompt: Annotated[
            str,
            Field(
                min_length=1,
                max_length=limits.MAX_PROMPT_CHARS,
                description="What you should do when the pulse wakes you, as an instruction to yourself.",
            ),
        ],
        when: Annotated[str, Field(max_length=200, description=WHEN)] = "now",
        priority: Annotated[
            Literal["high", "normal", "low", "deferred"], Field(description=PRIORITY)
        ] = "normal",
        sticky_notes: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=limits.MAX_NOTE_CHARS)]] | None,
            Field(
                max_length=limits.MAX_NOTES,
                description="Reminders appended to the prompt as a '📌 Reminders:' list.",
            ),
        ] = None,
        tags: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=limits.MAX_TAG_CHARS)]] | None,
            Field(max_length=limits.MAX_TAGS, description="Labels for finding the pulse later."),
        ] = None,
        resume_current_session: Annotated[
            bool,
            Field(description="true: the pulse resumes this conversation (the current agent session)."),
        ] = False,
        model: ModelOption = None,
        timeout_seconds: TimeoutOption = None,
        max_turns: MaxTurnsOption = None,
    ) -> dict[str, Any]:
        """Schedule a pulse: at the given time Reeve starts a new run of you with `prompt`, in this Desk. Use
        it to follow up later (check on something, remind the user, continue a task). With
        resume_current_session=true the run continues this conversation, with everything said so far;
        otherwise it starts fresh, so write a prompt that stands on its own. model, timeout_seconds and
        max_turns set how that run goes (omit them for the owner's defaults). Returns the new pulse (id,
        scheduled_at in the user's time zone, ...)."""
        body = {
            "prompt": prompt,
            "when": when,
            "priority": priority,
            "sticky_notes": sticky_notes,
            "tags": tags,
            "resume_current_session": resume_current_session,
        }
        body |= _agent_options(model, timeout_seconds, max_turns)
        return call_api("POST", "/api/agent/pulses", body=body)

    @server.agent_tool
    def list_upcoming_pulses(
        limit: Annotated[
            int, Field(ge=1, le=agent_tools.MAX_LISTED, description="How many pulses to list at most.")
        ] = 20,
    ) -> dict[str, Any]:
        """List the pending pulses you scheduled (and your routines' pulses), soonest first (overdue ones
        first of all), with their ids, prompts, times in the user's time zone, priorities, tags and sessions;
        also the current time and how many of them are pending in all. The user's own pulses are not shown."""
        return call_api("GET", "/api/agent/pulses", params={"limit": limit})

    @server.agent_tool
    def cancel_pulse(pulse_id: Annotated[int, Field(ge=1, description=PULSE_ID)]) -> dict[str, Any]:
        """Cancel a pending pulse you scheduled (or one of your routines' pulses) so it never runs. Only
        pending pulses can be cancelled; a pulse that is running or finished cannot, nor one of the user's.
        Returns the cancelled pulse."""
        return call_api("POST", f"/api/agent/pulses/{pulse_id}/cancel")

    @server.agent_tool
    def reschedule_pulse(
        pulse_id: Annotated[int, Field(ge=1, description=PULSE_ID)],
        when: Annotated[str, Field(min_length=1, max_length=200, description=WHEN)],
    ) -> dict[str, Any]:
        """Move a pending pulse you scheduled (or one of your routines' pulses) to another time; the user's
        own pulses cannot be moved. Returns the pulse with its new scheduled_at."""
        return call_api("POST", f"/api/agent/pulses/{pulse_id}/reschedule", body={"when": when})

    @server.agent_tool
    def send_notification(
        message: Annotated[
            str,
            Field(
                min_length=1,
                max_length=agent_tools.MAX_NOTIFICATION_CHARS,
                description="The text the user reads, plain text.",
            ),
        ],
        priority: Annotated[
            Literal["silent", "normal", "critical"],
            Field(description="silent (no sound), normal, or critical (marked 🚨)."),
        ] = "normal",
    ) -> dict[str, Any]:
        """Send the user a Telegram message: it is queued and Reeve's Telegram listener sends it within
        seconds (long text is split into several messages). priority: 'silent' arrives without a sound,
        'normal' is a regular message, 'critical' is marked 🚨 for what needs the user's attention now.
        A few a minute at most: past that it fails saying when to try again (put it in your answer
        instead). Fails with a message if Telegram is not configured."""
        return call_api("POST", "/api/notify", body={"message": message, "priority": priority})

    _routine_tools(server)
    _closed_schemas(server)
    return server


def _routine_tools(server: ReeveMCPServer) -> None:
    """create_routine, list_routines, pause_routine, delete_routine."""

    @server.agent_tool
    def create_routine(
        name: Annotated[
            str, Field(min_length=1, max_length=100, description="A short unique name, e.g. 'morning-brief'.")
        ],
        schedule: Annotated[str, Field(min_length=1, max_length=200, description=SCHEDULE)],
        prompt: Annotated[
            str,
            Field(
                min_length=1,
                max_length=limits.MAX_PROMPT_CHARS,
                description="What you should do at each fire, as an instruction to yourself.",
            ),
        ],
        timezone: Annotated[
            str,
            Field(max_length=64, description="An IANA zone such as Europe/Berlin; empty: the user's zone."),
        ] = "",
        priority: Annotated[
            Literal["high", "normal", "low", "deferred"], Field(description=PRIORITY)
        ] = "normal",
        tags: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=limits.MAX_TAG_CHARS)]] | None,
            Field(max_length=limits.MAX_TAGS, description="Labels its pulses carry."),
        ] = None,
        active_from: Annotated[
            str | None,
            Field(
                max_length=8, description=f"Start of the hours it may fire in ({CLOCK}); with active_until."
            ),
        ] = None,
        active_until: Annotated[
            str | None,
            Field(max_length=8, description=f"End of those hours ({CLOCK}); fires outside are skipped."),
        ] = None,
        session_policy: Annotated[
            Literal["new", "continue"],
            Field(description="new: a fresh conversation each run; continue: resume the previous run's."),
        ] = "new",
        model: ModelOption = None,
        timeout_seconds: TimeoutOption = None,
        max_turns: MaxTurnsOption = None,
    ) -> dict[str, Any]:
        """Create a routine: a recurring wake-up. At each fire Reeve starts a new run of you with `prompt`, in
        this Desk (e.g. every weekday at 08:00 'Brief the user on today'). Use it for what should recur;
        for a single follow-up use schedule_pulse. The prompt must stand on its own. model, timeout_seconds
        and max_turns set how each run goes (omit them for the owner's defaults). Returns the routine
        with its next fire time."""
        body = {"name": name, "schedule": schedule, "prompt": prompt, "timezone": timezone}
        body |= {"priority": priority, "tags": tags, "session_policy": session_policy}
        body |= {"active_from": active_from, "active_until": active_until}
        body |= _agent_options(model, timeout_seconds, max_turns)
        return call_api("POST", "/api/agent/routines", body=body)

    @server.agent_tool
    def list_routines() -> dict[str, Any]:
        """List the routines (the user's and yours) by name: schedule (also in words), zone, whether enabled,
        next and last fire, last result, who created it."""
        return call_api("GET", "/api/agent/routines")

    @server.agent_tool
    def pause_routine(
        name: Annotated[str, Field(min_length=1, max_length=100, description=ROUTINE_NAME)],
    ) -> dict[str, Any]:
        """Pause a routine so it stops firing; the user can resume it. Returns the routine."""
        return call_api("POST", f"/api/agent/routines/{_segment(name)}/pause")

    @server.agent_tool
    def delete_routine(
        name: Annotated[str, Field(min_length=1, max_length=100, description=ROUTINE_NAME)],
    ) -> dict[str, Any]:
        """Delete a routine you created (the user's own routines can only be paused). Its past runs stay in
        the history."""
        return call_api("DELETE", f"/api/agent/routines/{_segment(name)}")


def _agent_options(model: str | None, timeout_seconds: int | None, max_turns: int | None) -> dict[str, Any]:
    """The agent options given (those omitted are left to the owner's defaults)."""
    given = {"model": model, "timeout_seconds": timeout_seconds, "max_turns": max_turns}
    return {name: value for name, value in given.items() if value is not None}


def _segment(name: str) -> str:
    """A routine's name as one URL path segment (a name holds no slash; anything else is quoted)."""
    if "/" in name or name in (".", ".."):
        raise ToolError(f"there is no routine named {name[:100]!r}; call list_routines to see the names")
    return quote(name, safe="")


def serve() -> None:
    """Serve the tools over this process's stdin and stdout until the client closes stdin."""
    build_server().run("stdio")
