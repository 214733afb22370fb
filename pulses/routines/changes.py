"""The one entry point for changing routines: create, update, pause, resume, run now, remove, and
what a finished run does to its routine (the failure streak that pauses it).

Every edge (admin, API, command, MCP tools) validates and writes through here; a bad field raises
`RoutineInvalid` naming it, and nothing is stored.
"""

from __future__ import annotations

__all__ = [
    "RoutineInvalid",
    "create",
    "pause",
    "preview",
    "record_run",
    "remove",
    "resume",
    "run_now",
    "update",
]

import logging
from collections.abc import Mapping
from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from pulses import limits
from pulses.db import wakeup
from pulses.db.write_gate import gated
from pulses.models import Priority, Pulse
from pulses.queue import DELIVERY_CHANNELS
from pulses.routines import guard_rails
from pulses.routines import schedule as schedules
from pulses.routines.firing import deliver_answer, pulse_values
from pulses.routines.models import (
    Routine,
    RoutineInvalid,
    RoutineKind,
    RoutineSource,
    RunResult,
    SessionPolicy,
)

logger = logging.getLogger(__name__)

NAME_CHARS = 100
PROMPT_CHARS = limits.MAX_PROMPT_CHARS  # a routine's pulses are pulses: the same limits as any other
MAX_RETRIES = 100
EDITABLE = (
    "name",
    "prompt",
    "schedule",
    "timezone",
    "priority",
    "tags",
    "sticky_notes",
    "max_retries",
    "deliver",
    "session_policy",
    "session_id",
    "active_from",
    "active_until",
    "catch_up_window",
    "check_command",
    "pause_after_failures",
    "model",
    "timeout_seconds",
    "max_turns",
)
# A change to one of these moves the next fire.
TIMING = ("schedule", "timezone")


def validate(routine: Routine) -> None:
    """Raise RoutineInvalid for the first field that cannot be stored."""
    name = (routine.name or "").strip()
    if not name or len(name) > NAME_CHARS:
        raise RoutineInvalid("name", f"a routine needs a name of 1 to {NAME_CHARS} characters")
    if name.isascii() and name.isdigit():
        # /api/routines/7 is routine id 7: a name like an id would stand in for another routine.
        raise RoutineInvalid("name", f"a routine's name needs a letter: '{name}' reads as a routine's id")
    if routine.kind == RoutineKind.PROMPT and not (routine.prompt or "").strip():
        raise RoutineInvalid("prompt", "the prompt is empty")
    if len(routine.prompt or "") > PROMPT_CHARS:
        raise RoutineInvalid("prompt", f"the prompt is longer than {PROMPT_CHARS} characters")
    try:
        schedules.parse(routine.schedule)
        schedules.zone(routine.zone_name)
        schedules.check_window(routine.active_from, routine.active_until)
    except schedules.ScheduleError as exc:
        raise RoutineInvalid(exc.field, exc.message) from None
    if routine.priority not in Priority.values:
        raise RoutineInvalid(
            "priority", f"unknown priority '{routine.priority}'; one of {', '.join(Priority.values)}"
        )
    if routine.session_policy not in SessionPolicy.values:
        raise RoutineInvalid(
            "session_policy",
            f"unknown session policy '{routine.session_policy}'; one of new, continue, fixed",
        )
    if routine.session_policy == SessionPolicy.FIXED and not limits.is_session_id(routine.session_id):
        raise RoutineInvalid("session_id", f"a fixed session needs its id: {limits.SESSION_ID_FORM}")
    if routine.session_id and not limits.is_session_id(routine.session_id):
        raise RoutineInvalid("session_id", limits.SESSION_ID_FORM)
    if not 0 <= int(routine.max_retries) <= MAX_RETRIES:
        raise RoutineInvalid("max_retries", f"max_retries is 0 to {MAX_RETRIES}")
    if (routine.deliver or "") not in DELIVERY_CHANNELS:
        raise RoutineInvalid(
            "deliver", f"unknown delivery '{routine.deliver}'; use telegram or leave it empty"
        )
    for field in ("tags", "sticky_notes"):
        value = getattr(routine, field)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise RoutineInvalid(field, f"{field} is a list of texts")
    _check_pulse_limits(routine)
    if routine.catch_up_window is not None and routine.catch_up_window < timedelta(0):
        raise RoutineInvalid("catch_up_window", "the catch-up window cannot be negative")


def _check_pulse_limits(routine: Routine) -> None:
    """The limits every pulse keeps (pulses.limits), which a fire writes without `queue.schedule`:
    notes and tags, the prompt with its notes in bytes (the agent's one argument), and the agent
    options."""
    for field, most, chars in (
        ("sticky_notes", limits.MAX_NOTES, limits.MAX_NOTE_CHARS),
        ("tags", limits.MAX_TAGS, limits.MAX_TAG_CHARS),
    ):
        try:
            limits.text_list(getattr(routine, field), name=field, max_items=most, max_chars=chars)
        except limits.InvalidPulse as exc:
            raise RoutineInvalid(field, str(exc)) from None
    try:
        limits.check_prompt_bytes(routine.prompt or "", routine.sticky_notes)
    except limits.InvalidPulse as exc:
        raise RoutineInvalid("prompt", str(exc)) from None
    for field, check in limits.AGENT_OPTION_CHECKS:
        try:
            check(getattr(routine, field))
        except limits.InvalidPulse as exc:
            raise RoutineInvalid(field, str(exc)) from None


def _schedule_next(routine: Routine, now: datetime) -> None:
    routine.next_fire_at = routine.parsed_schedule.next_after(now, routine.zone)
    routine.next_fire_zone = routine.zone_name


@gated
def create(*, source: str = RoutineSource.OWNER, now: datetime | None = None, **fields: object) -> Routine:
    """Validate and store a new routine, enabled, its first fire computed from now."""
    unknown = set(fields) - set(EDITABLE) - {"enabled", "kind"}
    if unknown:
        raise RoutineInvalid(sorted(unknown)[0], "not a routine field")
    routine = Routine(source=source, **fields)
    routine.name = (routine.name or "").strip()
    validate(routine)
    if Routine.objects.filter(name=routine.name).exists():
        raise RoutineInvalid("name", f"a routine named '{routine.name}' exists already")
    if routine.source == RoutineSource.AGENT:
        guard_rails.check_agent_priority(routine.priority)  # the agent tops out at high
        guard_rails.check_agent_timeout(routine.timeout_seconds)  # and at the owner's run limit
    if routine.enabled:
        _schedule_next(routine, now or timezone.now())
    # The agent's own routines keep to its guard rails, checked and stored as one step; what the
    # owner changes later is theirs.
    agent = routine.source == RoutineSource.AGENT
    with guard_rails.agent_routine_allowed(routine, now=now) if agent else transaction.atomic():
        routine.save()
        wakeup.announce()  # a worker asleep until a later fire must wake to learn of this one
    logger.info(
        "routine_created name=%s schedule=%r zone=%s source=%s next=%s",
        routine.name,
        routine.schedule,
        routine.zone_name,
        routine.source,
        routine.next_fire_at.isoformat() if routine.next_fire_at else "-",
    )
    return routine


@gated
def update(routine: Routine, changes: Mapping[str, object], *, now: datetime | None = None) -> Routine:
    """Change a routine's fields; a new schedule or zone moves its next fire (from now on)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise RoutineInvalid(sorted(unknown)[0], "not a routine field one can change")
    before = {field: getattr(routine, field) for field in TIMING}
    for field, value in changes.items():
        setattr(routine, field, value)
    routine.name = (routine.name or "").strip()
    validate(routine)
    if Routine.objects.filter(name=routine.name).exclude(pk=routine.pk).exists():
        raise RoutineInvalid("name", f"a routine named '{routine.name}' exists already")
    if routine.enabled and any(getattr(routine, f) != before[f] for f in TIMING):
        _schedule_next(routine, now or timezone.now())
    with transaction.atomic():
        routine.save()
        wakeup.announce()
    logger.info("routine_updated name=%s fields=%s", routine.name, ",".join(sorted(changes)))
    return routine


@gated
def pause(routine: Routine, *, reason: str = "") -> Routine:
    """Stop firing; its next fire is forgotten (resume computes a fresh one)."""
    Routine.objects.filter(pk=routine.pk).update(
        enabled=False, paused_reason=reason or "paused by hand", next_fire_at=None, updated_at=timezone.now()
    )
    routine.refresh_from_db()
    logger.info("routine_paused name=%s reason=%s", routine.name, routine.paused_reason)
    return routine


@gated
def resume(routine: Routine, *, now: datetime | None = None) -> Routine:
    """Fire again from the next fire after now (what it missed while paused is not caught up);
    the failure streak starts over."""
    routine.enabled = True
    routine.paused_reason = ""
    routine.failure_streak = 0
    _schedule_next(routine, now or timezone.now())
    with transaction.atomic():
        routine.save(
            update_fields=[
                "enabled",
                "paused_reason",
                "failure_streak",
                "next_fire_at",
                "next_fire_zone",
                "updated_at",
            ]
        )
        wakeup.announce()
    logger.info("routine_resumed name=%s next=%s", routine.name, routine.next_fire_at.isoformat())
    return routine


@gated
def run_now(routine: Routine) -> Pulse:
    """A pulse of the routine due now, outside its schedule (its next fire stays as it is)."""
    now = timezone.now()
    with transaction.atomic():
        pulse = Pulse.objects.create(**pulse_values(routine, scheduled_at=now))
        deliver_answer(routine, pulse)
        Routine.objects.filter(pk=routine.pk).update(last_pulse_id=pulse.pk, updated_at=now)
        wakeup.announce()
    logger.info("routine_run_now name=%s pulse=%s", routine.name, pulse.pk)
    return pulse


@gated
def remove(routine: Routine) -> None:
    """Delete the routine; its pulses stay in the history (their link is cleared)."""
    name = routine.name
    routine.delete()
    logger.info("routine_removed name=%s", name)


@gated
def record_run(pulse: Pulse, result: str, *, session_id: str = "") -> bool:
    """What a finished run of a routine's pulse does to the routine: a success resets its failure
    streak, a failure adds to it, and the failure that reaches `pause_after_failures` pauses it.
    True exactly once per pause, for the caller that should send the alert."""
    if not pulse.routine_id:
        return False
    routine = Routine.objects.filter(pk=pulse.routine_id)
    now = timezone.now()
    changes: dict[str, object] = {"last_result": result, "updated_at": now}
    session_id = session_id or pulse.session_id
    if session_id:
        # The previous run's session, for routines that continue it.
        routine.filter(session_policy=SessionPolicy.CONTINUE).update(session_id=session_id)
    if result == RunResult.COMPLETED:
        routine.update(failure_streak=0, **changes)
        return False
    if result == RunResult.SKIPPED:
        routine.update(check_skip_count=F("check_skip_count") + 1, **changes)
        return False
    with transaction.atomic():
        routine.update(failure_streak=F("failure_streak") + 1, **changes)
        current = routine.values("name", "failure_streak", "pause_after_failures").first()
        if current is None or not current["pause_after_failures"]:
            return False
        if current["failure_streak"] < current["pause_after_failures"]:
            return False
        reason = f"paused after {current['failure_streak']} failed runs in a row"
        paused = routine.filter(enabled=True).update(enabled=False, paused_reason=reason, next_fire_at=None)
    if paused:
        logger.error("routine_paused name=%s reason=%s", current["name"], reason)
    return bool(paused)


def preview(
    schedule_text: str, zone_name: str, *, count: int = 5, after: datetime | None = None
) -> list[datetime]:
    """The next `count` fire times of a schedule in a zone (the admin form's preview);
    RoutineInvalid when either cannot be read."""
    try:
        plan = schedules.parse(schedule_text)
        zone = schedules.zone(zone_name)
    except schedules.ScheduleError as exc:
        raise RoutineInvalid(exc.field, exc.message) from None
    fires = plan.fires_after(after or timezone.now(), zone)
    return [next(fires).astimezone(zone) for _ in range(count)]


def parse_time(value: str, *, field: str) -> time:
    """'08:00' -> time(8, 0); RoutineInvalid naming `field` otherwise."""
    try:
        return time.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise RoutineInvalid(field, f"'{value}' is not a time of day like 08:00") from None
