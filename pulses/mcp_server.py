"""Reeve's tools for the agent over MCP (stdio): an adapter over `pulses.agent_tools`.

Each tool validates its arguments against the JSON schema it publishes, calls one function of
`agent_tools`, and turns an `AgentToolError` into a tool error (isError) the model can read and act
on. Anything unexpected is logged with its traceback and also returned as a tool error; the
server itself keeps running. The SDK runs these sync functions on worker threads, where the ORM
may be used.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from django.db import DatabaseError, close_old_connections
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from pulses import agent_tools
from pulses.timeparse import ACCEPTED_FORMS

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

WHEN = (
    "When to wake you, read in the user's time zone: "
    + "; ".join(ACCEPTED_FORMS)
    + ". A time already past means as soon as possible."
)
PRIORITY = (
    "Run order among pulses due at the same time: critical > high > normal > low > deferred. "
    "Use critical only for what the user is waiting on."
)
PULSE_ID = "The pulse's id, as shown by list_upcoming_pulses or returned by schedule_pulse."

INSTRUCTIONS = (
    "Reeve wakes you with 'pulses': scheduled prompts that start a new agent run in this Desk. "
    "Use these tools to set your own next wake-ups (optionally continuing this very conversation), "
    "to review or change the ones pending, and to message the user on Telegram."
)


def _tool(name: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Run a tool body with fresh database connections; refusals and crashes become tool errors."""

    def decorate(fn: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> _T:
            close_old_connections()
            try:
                return fn(*args, **kwargs)
            except agent_tools.AgentToolError as exc:
                logger.info("mcp_tool_refused tool=%s reason=%s", name, exc)
                raise ToolError(str(exc)) from None
            except DatabaseError as exc:
                logger.exception("mcp_tool_database_error tool=%s", name)
                raise ToolError(
                    f"{name} failed: the Reeve database is unavailable ({exc}); try again in a minute, "
                    "and if it persists tell the user to run `./reeve doctor`"
                ) from None
            except Exception as exc:
                logger.exception("mcp_tool_crashed tool=%s", name)
                raise ToolError(
                    f"{name} failed with an internal error ({type(exc).__name__}: {exc})"
                ) from None
            finally:
                close_old_connections()

        return wrapper

    return decorate


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


def _closed_schemas(server: MCPServer) -> None:
    """Publish that each tool takes no other arguments than those it lists."""
    for tool in server._tool_manager.list_tools():
        tool.parameters["additionalProperties"] = False


def build_server() -> MCPServer:
    """The MCP server with Reeve's five tools."""
    server = ReeveMCPServer("reeve", instructions=INSTRUCTIONS)

    @server.tool(
        name="schedule_pulse",
        description=(
            "Schedule a pulse: at the given time Reeve starts a new run of you with `prompt`, in this "
            "Desk. Use it to follow up later (check on something, remind the user, continue a task). "
            "With resume_current_session=true the run continues this conversation, with everything "
            "said so far; otherwise it starts fresh, so write a prompt that stands on its own. "
            "Returns the new pulse (id, scheduled_at in the user's time zone, ...)."
        ),
    )
    @_tool("schedule_pulse")
    def schedule_pulse(
        prompt: Annotated[
            str,
            Field(
                min_length=1,
                max_length=agent_tools.MAX_PROMPT_CHARS,
                description="What you should do when the pulse wakes you, as an instruction to yourself.",
            ),
        ],
        when: Annotated[str, Field(max_length=200, description=WHEN)] = "now",
        priority: Annotated[
            Literal["critical", "high", "normal", "low", "deferred"], Field(description=PRIORITY)
        ] = "normal",
        sticky_notes: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=agent_tools.MAX_NOTE_CHARS)]] | None,
            Field(
                max_length=agent_tools.MAX_NOTES,
                description="Reminders appended to the prompt as a '📌 Reminders:' list.",
            ),
        ] = None,
        tags: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=agent_tools.MAX_TAG_CHARS)]] | None,
            Field(max_length=agent_tools.MAX_TAGS, description="Labels for finding the pulse later."),
        ] = None,
        resume_current_session: Annotated[
            bool,
            Field(description="true: the pulse resumes this conversation (the current agent session)."),
        ] = False,
    ) -> dict[str, Any]:
        return agent_tools.schedule_pulse(
            prompt=prompt,
            when=when,
            priority=priority,
            sticky_notes=sticky_notes,
            tags=tags,
            resume_current_session=resume_current_session,
        )

    @server.tool(
        name="list_upcoming_pulses",
        description=(
            "List the pending pulses, soonest first (overdue ones first of all), with their ids, "
            "prompts, times in the user's time zone, priorities, tags and sessions; also the current "
            "time and how many pulses are pending in all."
        ),
    )
    @_tool("list_upcoming_pulses")
    def list_upcoming_pulses(
        limit: Annotated[
            int, Field(ge=1, le=agent_tools.MAX_LISTED, description="How many pulses to list at most.")
        ] = 20,
    ) -> dict[str, Any]:
        return agent_tools.list_upcoming_pulses(limit=limit)

    @server.tool(
        name="cancel_pulse",
        description=(
            "Cancel a pending pulse so it never runs. Only pending pulses can be cancelled; a pulse "
            "that is running or finished cannot. Returns the cancelled pulse."
        ),
    )
    @_tool("cancel_pulse")
    def cancel_pulse(pulse_id: Annotated[int, Field(ge=1, description=PULSE_ID)]) -> dict[str, Any]:
        return agent_tools.cancel_pulse(pulse_id=pulse_id)

    @server.tool(
        name="reschedule_pulse",
        description="Move a pending pulse to another time. Returns the pulse with its new scheduled_at.",
    )
    @_tool("reschedule_pulse")
    def reschedule_pulse(
        pulse_id: Annotated[int, Field(ge=1, description=PULSE_ID)],
        when: Annotated[str, Field(min_length=1, max_length=200, description=WHEN)],
    ) -> dict[str, Any]:
        return agent_tools.reschedule_pulse(pulse_id=pulse_id, when=when)

    @server.tool(
        name="send_notification",
        description=(
            "Send the user a Telegram message now (long text is split into several messages). "
            "priority: 'silent' arrives without a sound, 'normal' is a regular message, 'critical' "
            "is marked 🚨 for what needs the user's attention now. Fails with a message if Telegram "
            "is not configured."
        ),
    )
    @_tool("send_notification")
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
        return agent_tools.send_notification(message=message, priority=priority)

    _closed_schemas(server)
    return server


def serve() -> None:
    """Serve the tools over this process's stdin and stdout until the client closes stdin."""
    build_server().run("stdio")
