"""Guard rails on what the agent schedules itself (its MCP tools); the owner's own are not limited.

The agent's pulses and routines top out at `high` priority: `critical` is the owner's (the express
lane: reserved slots and preemption), so the agent can never hold a slot a Telegram message needs.
The agent's routines fire no more often than AGENT_ROUTINE_MIN_INTERVAL_MINUTES, at most
AGENT_MAX_ACTIVE_ROUTINES of them are enabled at once, and it creates at most AGENT_PULSES_PER_HOUR
one-off pulses an hour. A run it schedules may not last longer than the owner's limit for every run
(PULSE_TIMEOUT_SECONDS): it may shorten its runs, not lengthen them. Over a limit is `LimitReached`,
whose message names the limit and the setting the owner raises it with; the tools return it to the
agent as a tool error.

A check and the insert it allows are one step (`agent_pulse_allowed`, `agent_routine_allowed`): on
PostgreSQL requests run side by side, and 200 at once, each counting before any inserted, made 75
pulses against a cap of 60.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from pulses.db.serial import serialized
from pulses.models import PRIORITY_RANK, Priority, Pulse
from pulses.routines import schedule as schedules
from pulses.routines.models import Routine, RoutineInvalid

# Gaps between this many upcoming fires are measured: enough to see a burst inside one hour of a
# day (`*/5 9 * * *`) or one day of a week.
GAP_SAMPLE = 400
AGENT_SOURCE = "agent"
# The names `serialized` orders the checks and their inserts by.
AGENT_PULSES = "agent-pulses"
AGENT_ROUTINES = "agent-routines"
AGENT_TOP_PRIORITY = Priority.HIGH


class LimitReached(RoutineInvalid):
    """The agent went over one of its limits; the message says which and how the owner raises it.
    A RoutineInvalid of the field `limit`, so whatever reports a bad routine reports it too."""

    def __init__(self, message: str) -> None:
        super().__init__("limit", message)


def _raise_with(setting: str) -> str:
    return f"the owner can raise it with {setting} in Reeve's .env"


def shortest_gap(plan: schedules.Schedule, zone, *, after: datetime) -> timedelta:
    """The shortest time between two fires of a schedule over its next GAP_SAMPLE fires."""
    if plan.interval is not None:
        return plan.interval
    fires = plan.fires_after(after, zone)
    previous = next(fires)
    shortest = timedelta.max
    for _ in range(GAP_SAMPLE):
        fire = next(fires)
        shortest = min(shortest, fire - previous)
        previous = fire
    return shortest


def check_agent_priority(priority: str) -> None:
    """The agent may use any priority up to `high`; `critical` (the owner's express lane) is refused."""
    if PRIORITY_RANK.get(priority, len(PRIORITY_RANK)) < PRIORITY_RANK[AGENT_TOP_PRIORITY]:
        raise RoutineInvalid(
            "priority",
            f"priority '{priority}' is kept for the user's own messages (it takes the express lane); "
            f"what you schedule goes up to '{AGENT_TOP_PRIORITY}': send priority '{AGENT_TOP_PRIORITY}'",
        )


def check_agent_timeout(timeout_seconds: int | None) -> None:
    """The agent's pulses and routines may set a run's timeout up to PULSE_TIMEOUT_SECONDS, not past it."""
    most = settings.PULSE_TIMEOUT_SECONDS
    if timeout_seconds is not None and timeout_seconds > most:
        raise RoutineInvalid(
            "timeout_seconds",
            f"timeout_seconds {timeout_seconds} is longer than the owner's limit for every run "
            f"({most:g} s, PULSE_TIMEOUT_SECONDS); send at most {int(most)}, or omit it for that limit "
            f"({_raise_with('PULSE_TIMEOUT_SECONDS')})",
        )


def check_agent_routine(routine: Routine, *, now: datetime | None = None) -> None:
    """An agent's routine (new, or changed, or resumed) must keep to the interval and the cap."""
    now = now or timezone.now()
    minimum = timedelta(minutes=settings.AGENT_ROUTINE_MIN_INTERVAL_MINUTES)
    gap = shortest_gap(routine.parsed_schedule, routine.zone, after=now)
    if gap < minimum:
        raise LimitReached(
            f"routines you create fire at most every {settings.AGENT_ROUTINE_MIN_INTERVAL_MINUTES} "
            f"minutes, and '{routine.schedule}' fires {schedules.describe_interval(gap)}; choose a slower "
            f"schedule ({_raise_with('AGENT_ROUTINE_MIN_INTERVAL_MINUTES')})"
        )
    active = Routine.objects.active_agent_routines().exclude(pk=routine.pk).count()
    if routine.enabled and active >= settings.AGENT_MAX_ACTIVE_ROUTINES:
        raise LimitReached(
            f"at most {settings.AGENT_MAX_ACTIVE_ROUTINES} of your routines may be active, and "
            f"{active} are; pause or delete one first ({_raise_with('AGENT_MAX_ACTIVE_ROUTINES')})"
        )


def check_agent_pulse(now: datetime | None = None) -> None:
    """The agent may create another one-off pulse only while under its hourly cap."""
    cap = settings.AGENT_PULSES_PER_HOUR
    now = now or timezone.now()
    # The cap-th newest agent pulse, read along the (source, id) index: cap rows, not the history.
    newest = (
        Pulse.objects.filter(source=AGENT_SOURCE)
        .order_by("-id")
        .values_list("created_at", flat=True)[cap - 1 : cap]
        if cap > 0
        else [now]
    )
    if any(created > now - timedelta(hours=1) for created in newest):
        raise LimitReached(
            f"you may create at most {cap} pulses an hour and have reached it; wait, or fold the "
            f"work into a pulse you already scheduled ({_raise_with('AGENT_PULSES_PER_HOUR')})"
        )


@contextmanager
def agent_pulse_allowed(now: datetime | None = None) -> Iterator[None]:
    """Run the block (the agent's new pulse being stored) only while under the hourly cap, and
    alone: in one transaction with the check, ordered against every other agent pulse's."""
    with serialized(AGENT_PULSES):
        check_agent_pulse(now)
        yield


@contextmanager
def agent_routine_allowed(routine: Routine, *, now: datetime | None = None) -> Iterator[None]:
    """Run the block (the agent's routine being stored) only within the interval and the cap, and
    alone: in one transaction with the check, ordered against every other agent routine's."""
    with serialized(AGENT_ROUTINES):
        check_agent_routine(routine, now=now)
        yield
