"""Routines: recurring wake-ups stored in Reeve (imported by `pulses.models`, so in the `pulses` app).

A routine is a schedule plus what each of its pulses carries. `next_fire_at` is the one column the
worker reads to know when to wake (the soonest enabled one, an index range of one row); a fire is the
pulse keyed by (routine, fire time), which the database holds unique, so any number of workers create
it once (`pulses.routines.firing`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.db.models import Q

from pulses.routines import schedule as schedules
from pulses.states import Priority


class RoutineInvalid(ValueError):
    """A field that cannot be stored; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SessionPolicy(models.TextChoices):
    NEW = "new"  # a fresh agent session each run
    CONTINUE = "continue"  # resume the session of the routine's previous run
    FIXED = "fixed"  # always the session in `session_id`


class RoutineSource(models.TextChoices):
    OWNER = "owner"  # the admin, the API with a full token, the command: not limited
    AGENT = "agent"  # the agent's MCP tools: held to the guard rails (pulses.routines.limits)


class RoutineKind(models.TextChoices):
    PROMPT = "prompt"  # its own prompt
    # The hourly prompt (pulses ops hourly_prompt): time-of-day prompts, and the per-hour key it
    # shares with `trigger_pulse --heartbeat`, so cron and the routine never double a heartbeat.
    HOURLY_PROMPT = "hourly_prompt"


class RunResult(models.TextChoices):
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # the wake check said there was nothing to do; no agent ran


class RoutineQuerySet(models.QuerySet["Routine"]):
    def enabled(self) -> RoutineQuerySet:
        return self.filter(enabled=True)

    def due(self, now: datetime) -> RoutineQuerySet:
        """Enabled routines whose next fire has come, soonest first."""
        return self.enabled().filter(next_fire_at__lte=now).order_by("next_fire_at", "id")

    def upcoming(self) -> RoutineQuerySet:
        return self.enabled().filter(next_fire_at__isnull=False).order_by("next_fire_at", "id")

    def active_agent_routines(self) -> RoutineQuerySet:
        return self.enabled().filter(source=RoutineSource.AGENT)


class Routine(models.Model):
    name = models.CharField(max_length=100, unique=True)
    prompt = models.TextField(blank=True)
    schedule = models.CharField(
        max_length=200, help_text="a 5-field cron expression, @hourly/@daily/@weekly, or 'every 30 minutes'"
    )
    timezone = models.CharField(
        max_length=64, blank=True, default="", help_text="an IANA zone; empty follows TIME_ZONE"
    )
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    tags = models.JSONField(default=list, blank=True)
    sticky_notes = models.JSONField(default=list, blank=True)
    max_retries = models.PositiveIntegerField(default=3)
    deliver = models.CharField(
        max_length=16,
        blank=True,
        default="",
        choices=[("", "no"), ("telegram", "telegram")],
        help_text="telegram: each run's answer goes to the configured chat (as deliver on a pulse)",
    )
    session_policy = models.CharField(max_length=16, choices=SessionPolicy.choices, default=SessionPolicy.NEW)
    # The fixed session (policy `fixed`), or the previous run's session (policy `continue`).
    session_id = models.CharField(max_length=200, blank=True, default="")
    kind = models.CharField(max_length=16, choices=RoutineKind.choices, default=RoutineKind.PROMPT)
    source = models.CharField(max_length=16, choices=RoutineSource.choices, default=RoutineSource.OWNER)
    enabled = models.BooleanField(default=True)
    paused_reason = models.CharField(max_length=300, blank=True, default="")
    # Fires outside [active_from, active_until) in the routine's zone are skipped (may wrap midnight).
    active_from = models.TimeField(null=True, blank=True)
    active_until = models.TimeField(null=True, blank=True)
    catch_up_window = models.DurationField(
        null=True, blank=True, help_text="how late a missed fire still runs; empty: one period, at most 24 h"
    )
    check_command = models.TextField(
        blank=True, default="", help_text="run in the Desk first: exit 0 wakes the agent, 1 skips the run"
    )
    pause_after_failures = models.PositiveIntegerField(
        default=5, help_text="pause after this many failed runs in a row (0: never)"
    )
    # What each of its pulses carries to the agent (pulses.limits); empty / null take the defaults.
    model = models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_default="",
        help_text="empty: AGENT_MODEL (or the agent's own)",
    )
    timeout_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="seconds before its runs are killed; empty: PULSE_TIMEOUT_SECONDS"
    )
    max_turns = models.PositiveIntegerField(
        null=True, blank=True, help_text="the agent's turn limit for each run (--max-turns); empty: its own"
    )
    failure_streak = models.PositiveIntegerField(default=0)

    next_fire_at = models.DateTimeField(null=True, blank=True)
    # The zone `next_fire_at` was computed in: a change of TIME_ZONE (or of `timezone`) shows here.
    next_fire_zone = models.CharField(max_length=64, blank=True, default="")
    last_fire_at = models.DateTimeField(null=True, blank=True)
    last_pulse = models.ForeignKey(
        "pulses.Pulse", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_result = models.CharField(max_length=16, choices=RunResult.choices, blank=True, default="")
    fire_count = models.PositiveIntegerField(default=0)
    # Fires that made no pulse: missed during downtime (beyond the one catch-up), or outside the window.
    missed_count = models.PositiveIntegerField(default=0)
    outside_window_count = models.PositiveIntegerField(default=0)
    # Runs whose wake check found nothing to do.
    check_skip_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RoutineQuerySet.as_manager()

    class Meta:
        db_table = "pulse_routines"
        ordering = ["name"]
        indexes = [
            # The worker's "when is the next fire" and the firing's "which are due": enabled rows
            # only, in fire order, so either is one index probe however many routines are stored.
            models.Index(
                fields=["next_fire_at", "id"], condition=Q(enabled=True), name="routines_next_fire_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone_name(self) -> str:
        return self.timezone or settings.TIME_ZONE

    @property
    def zone(self) -> ZoneInfo:
        return schedules.zone(self.zone_name)

    @property
    def parsed_schedule(self) -> schedules.Schedule:
        return schedules.parse(self.schedule)

    def next_fires(self, count: int = 5, *, after: datetime) -> list[datetime]:
        """The next `count` fire times after `after`, in the routine's zone (the form's preview)."""
        zone = self.zone
        fires = self.parsed_schedule.fires_after(after, zone)
        return [next(fires).astimezone(zone) for _ in range(count)]

    def effective_catch_up_window(self, around: datetime) -> timedelta:
        if self.catch_up_window is not None:
            return self.catch_up_window
        return self.parsed_schedule.catch_up_window(around, self.zone)

    def in_window(self, fire_at: datetime) -> bool:
        return schedules.in_window(fire_at.astimezone(self.zone), self.active_from, self.active_until)
