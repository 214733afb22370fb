"""What the dashboard shows of routines: the fires coming next, and the routines whose last run
was skipped or failed (or that paused themselves after failing), each as a plain row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q

from pulses.routines import schedule as schedules
from pulses.routines.models import Routine, RunResult

TIME_FORMAT = "%m-%d %H:%M %Z"


@dataclass(frozen=True)
class RoutineRow:
    pk: int
    name: str
    schedule_text: str
    zone: str
    enabled: bool
    # In the routine's own zone, as text: a template would convert a datetime to TIME_ZONE.
    next_fire: str
    last_fire: str
    last_result: str
    note: str  # why it is listed: its pause reason, its failure streak, its skips


def _local(moment: datetime | None, zone) -> str:
    return moment.astimezone(zone).strftime(TIME_FORMAT) if moment else ""


def _words(routine: Routine) -> str:
    try:
        return routine.parsed_schedule.describe()
    except schedules.ScheduleError:
        return routine.schedule


def _row(routine: Routine, note: str = "") -> RoutineRow:
    zone = routine.zone
    return RoutineRow(
        pk=routine.pk,
        name=routine.name,
        schedule_text=_words(routine),
        zone=routine.zone_name,
        enabled=routine.enabled,
        next_fire=_local(routine.next_fire_at, zone),
        last_fire=_local(routine.last_fire_at, zone),
        last_result=routine.last_result,
        note=note,
    )


def upcoming_fires(limit: int = 10) -> list[RoutineRow]:
    """The enabled routines that fire next, soonest first (a range of the next-fire index)."""
    return [_row(routine) for routine in Routine.objects.upcoming()[:limit]]


def _note(routine: Routine) -> str:
    parts = []
    if not routine.enabled and routine.paused_reason:
        parts.append(routine.paused_reason)
    if routine.failure_streak:
        parts.append(f"{routine.failure_streak} failed in a row")
    if routine.check_skip_count:
        parts.append(f"{routine.check_skip_count} skipped by its wake check")
    if routine.missed_count:
        parts.append(f"{routine.missed_count} missed while down")
    if routine.outside_window_count:
        parts.append(f"{routine.outside_window_count} outside its window")
    return "; ".join(parts)


def needing_attention(limit: int = 10) -> list[RoutineRow]:
    """Routines whose last run was skipped or failed, or that are failing: the latest first."""
    troubled = Routine.objects.filter(
        Q(last_result__in=(RunResult.FAILED, RunResult.SKIPPED)) | Q(failure_streak__gt=0)
    ).order_by(F("last_fire_at").desc(nulls_last=True), "name")
    return [_row(routine, _note(routine)) for routine in troubled[:limit]]
