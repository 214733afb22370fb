"""The agent's routine tools: create, list, pause and delete routines (pulses/routines), as the agent
sees them; behind pulses/api/agent_views.py like the pulse tools in pulses/tools/agent_tools.py, whose
`AgentToolError` they raise for a call the agent should correct."""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from pulses.routines import changes
from pulses.routines.lookup import window_text
from pulses.routines.models import Routine, RoutineSource
from pulses.tools.agent_tools import AgentToolError

logger = logging.getLogger(__name__)

MAX_LISTED_ROUTINES = 200


class UnknownRoutineName(AgentToolError):
    """No routine has that name."""


class RoutineNotYours(AgentToolError):
    """The agent may not delete a routine the owner made."""


def describe_routine(routine: Routine) -> dict[str, Any]:
    """A routine as the agent sees it: its schedule in words, times in the routine's own zone."""
    zone = routine.zone

    def when(moment):
        return moment.astimezone(zone).isoformat() if moment else None

    return {
        "name": routine.name,
        "schedule": routine.schedule,
        "schedule_text": routine.parsed_schedule.describe(),
        "timezone": routine.zone_name,
        "prompt": routine.prompt,
        "priority": routine.priority,
        "tags": list(routine.tags or []),
        "enabled": routine.enabled,
        "paused_reason": routine.paused_reason,
        "active_window": window_text(routine) or None,
        "session_policy": routine.session_policy,
        "model": routine.model,
        "timeout_seconds": routine.timeout_seconds,
        "max_turns": routine.max_turns,
        "created_by": routine.source,
        "next_fire_at": when(routine.next_fire_at),
        "last_fire_at": when(routine.last_fire_at),
        "last_result": routine.last_result or None,
    }


def _routine(name: object) -> Routine:
    if not isinstance(name, str) or not name.strip():
        raise AgentToolError("'name' must be a routine's name, as list_routines shows it")
    try:
        return Routine.objects.get(name=name)
    except Routine.DoesNotExist:
        raise UnknownRoutineName(
            f"there is no routine named {name[:100]!r}; call list_routines to see the routines' names"
        ) from None


def create_routine(**values: Any) -> dict[str, Any]:
    """A routine from the agent: source `agent`, held to the guard rails (minimum interval, a cap)."""
    try:
        for field in ("active_from", "active_until"):
            if isinstance(values.get(field), str):
                text = values[field].strip()
                values[field] = changes.parse_time(text, field=field) if text else None
        routine = changes.create(source=RoutineSource.AGENT, **values)
    except changes.RoutineInvalid as exc:
        raise AgentToolError(f"no routine was created: {exc}") from None
    logger.info("agent_routine_created name=%s schedule=%s", routine.name, routine.schedule)
    return describe_routine(routine)


def list_routines() -> dict[str, Any]:
    """Every routine (the owner's and the agent's), by name, with its next fire."""
    routines = list(Routine.objects.order_by("name")[:MAX_LISTED_ROUTINES])
    return {
        "now": timezone.now().astimezone(ZoneInfo(settings.TIME_ZONE)).isoformat(),
        "time_zone": settings.TIME_ZONE,
        "count": Routine.objects.count(),
        "routines": [describe_routine(routine) for routine in routines],
    }


def pause_routine(*, name: str) -> dict[str, Any]:
    """Pause a routine (any routine: pausing loses nothing, and the owner can resume it)."""
    routine = changes.pause(_routine(name), reason="paused by the agent")
    logger.info("agent_routine_paused name=%s", routine.name)
    return describe_routine(routine)


def delete_routine(*, name: str) -> dict[str, Any]:
    """Delete a routine the agent created; the owner's own routines can only be paused."""
    routine = _routine(name)
    if routine.source != RoutineSource.AGENT:
        raise RoutineNotYours(
            f"the routine {routine.name!r} was made by the user, so only the user can delete it; "
            "call pause_routine to stop it firing, or ask the user"
        )
    described = describe_routine(routine)
    changes.remove(routine)
    logger.info("agent_routine_deleted name=%s", routine.name)
    return {"deleted": True, **described}
