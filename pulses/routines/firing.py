"""Firing routines: each fire becomes one pulse, however many workers on however many hosts fire.

The worker sleeps until the soonest `next_fire_at` (as it sleeps until the soonest pulse) and calls
`fire_due`. A batch of due routines is taken in one short transaction: on PostgreSQL their rows are
locked FOR UPDATE SKIP LOCKED, so two workers never take the same routine and never wait on each
other; on SQLite the transaction is BEGIN IMMEDIATE, so firings are serialised. Inside it each
routine's pulse is created and its `next_fire_at` moved past now; the unique (routine, fire_at)
constraint on the pulse is the database's last word should anything else slip. Nothing is locked
once the batch commits, and the worker claims the new pulses at once.

After downtime a routine gets at most one catch-up pulse, for its latest missed fire, when that is
still inside its catch-up window (default one period, at most 24 h); the other missed fires are
counted and logged as skipped, never run in a burst.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from pulses.db import is_postgres, wakeup
from pulses.db.compiled import FirstValue
from pulses.db.write_gate import gated
from pulses.models import Delivery, Pulse
from pulses.routines import schedule as schedules
from pulses.routines.models import Routine, RoutineKind, SessionPolicy
from pulses.web import metrics

logger = logging.getLogger(__name__)

BATCH = 200
# The worker makes a fire's pulse up to this long before its time, due at the fire time: the run then
# starts on the dot, as a pulse scheduled for later does, with the firing's transaction done ahead.
FIRE_AHEAD = timedelta(seconds=2)
# Missed fires are walked one by one to count them; past this many the count is a lower bound.
MAX_WALK = 20_000
SOURCE = "routine"


@dataclass(frozen=True)
class Fire:
    """What one routine's turn produced: a pulse (or none), and the fires skipped on the way."""

    routine_id: int
    name: str
    pulse_id: int | None
    fire_at: datetime | None
    missed: int = 0
    outside_window: bool = False


_next_fire_at = FirstValue(lambda: Routine.objects.upcoming().values_list("next_fire_at", flat=True))


def next_fire_at() -> datetime | None:
    """When the soonest enabled routine fires (None without any): one probe of the partial index.
    The worker asks at every pass of its loop, so the query is compiled once (pulses.db.compiled)."""
    return _next_fire_at()


@gated
def fire_due(now: datetime | None = None, *, batch: int = BATCH) -> list[Fire]:
    """Fire every enabled routine whose next fire is at or before `now` (default: the present); each
    pulse is due at its fire time (the worker passes a `now` slightly ahead, see FIRE_AHEAD)."""
    now = now or timezone.now()
    fires: list[Fire] = []
    while True:
        done = _fire_batch(now, batch)
        fires.extend(done)
        if len(done) < batch:
            return fires


def _fire_batch(now: datetime, batch: int) -> list[Fire]:
    with transaction.atomic():
        due = Routine.objects.due(now)
        if is_postgres():
            due = due.select_for_update(skip_locked=True)
        # Highest priority first, so a crowd of routines due together is queued in run order.
        routines = sorted(due[:batch], key=lambda r: (_rank(r.priority), r.next_fire_at, r.pk))
        fires = [_fire_one(routine, now) for routine in routines]
        if any(fire.pulse_id for fire in fires):
            wakeup.announce()
    metrics.record_routine_fires(fires)
    for fire in fires:
        if fire.missed:
            logger.warning("routine_fires_skipped name=%s missed=%s", fire.name, fire.missed)
        if fire.outside_window:
            logger.info("routine_fire_skipped name=%s fire_at=%s reason=window", fire.name, fire.fire_at)
        elif fire.pulse_id:
            logger.info(
                "routine_fired name=%s fire_at=%s pulse=%s",
                fire.name,
                fire.fire_at.isoformat(),
                fire.pulse_id,
            )
    return fires


def _fire_one(routine: Routine, now: datetime) -> Fire:
    """`_fire` in a savepoint: a routine whose fire raises an unexpected error (a row edited by hand
    into something Reeve cannot read, a bug) is paused with the reason, and the batch's other
    routines fire as usual, instead of one routine stopping every fire behind it."""
    try:
        with transaction.atomic():
            return _fire(routine, now)
    except DatabaseError:
        raise
    except Exception as exc:
        reason = f"paused: firing failed ({type(exc).__name__}: {exc})"[:300]
        Routine.objects.filter(pk=routine.pk).update(enabled=False, paused_reason=reason, updated_at=now)
        logger.exception("routine_paused name=%s reason=firing_failed", routine.name)
        return Fire(routine.pk, routine.name, None, None)


def _rank(priority: str) -> int:
    from pulses.models import PRIORITY_RANK

    return PRIORITY_RANK.get(priority, len(PRIORITY_RANK))


def _fire(routine: Routine, now: datetime) -> Fire:
    """One due routine, inside the batch's transaction: its pulse (or its skip) and its next fire."""
    try:
        plan, zone = routine.parsed_schedule, routine.zone
    except schedules.ScheduleError as exc:  # stored before validation existed, or a zone gone
        Routine.objects.filter(pk=routine.pk).update(
            enabled=False, paused_reason=f"paused: {exc.message}", updated_at=now
        )
        logger.error("routine_paused name=%s reason=%s", routine.name, exc.message)
        return Fire(routine.pk, routine.name, None, None)
    if routine.next_fire_zone != routine.zone_name:
        # TIME_ZONE (or the routine's zone) changed since next_fire_at was computed: that time
        # belongs to the old zone, so it is recomputed from now, and nothing fires twice.
        _advance(routine, next_at=plan.next_after(max(now, routine.last_fire_at or now), zone))
        logger.warning("routine_zone_changed name=%s zone=%s", routine.name, routine.zone_name)
        return Fire(routine.pk, routine.name, None, None)
    latest, count, next_at = _missed(plan, zone, routine.next_fire_at, now)
    window = routine.effective_catch_up_window(latest)
    runs = now - latest <= window
    missed = count - 1 if runs else count
    changes: dict[str, object] = {"missed_count": F("missed_count") + missed} if missed else {}
    if runs and not routine.in_window(latest):
        _advance(routine, next_at=next_at, outside_window_count=F("outside_window_count") + 1, **changes)
        return Fire(routine.pk, routine.name, None, latest, missed, outside_window=True)
    if not runs:
        _advance(routine, next_at=next_at, **changes)
        return Fire(routine.pk, routine.name, None, None, missed)
    pulse = _create_pulse(routine, latest)
    _advance(
        routine,
        next_at=next_at,
        last_fire_at=latest,
        last_pulse_id=pulse.pk,
        fire_count=F("fire_count") + 1,
        **changes,
    )
    return Fire(routine.pk, routine.name, pulse.pk, latest, missed)


def _missed(plan: schedules.Schedule, zone, first: datetime, now: datetime) -> tuple[datetime, int, datetime]:
    """The latest fire at or before `now` from `first` on, how many there were, and the next one."""
    if plan.interval is not None:
        # Interval fires are evenly spaced: counted, not walked.
        count = (now - first) // plan.interval + 1
        latest = first + (count - 1) * plan.interval
        return latest, count, latest + plan.interval
    latest, count = first, 1
    for fire in plan.fires_after(first, zone):
        if fire > now:
            return latest, count, fire
        latest, count = fire, count + 1
        if count >= MAX_WALK:
            return latest, count, plan.next_after(now, zone)
    raise AssertionError("unreachable: a cron schedule fires forever")  # pragma: no cover


def _advance(routine: Routine, *, next_at: datetime, **changes: object) -> None:
    Routine.objects.filter(pk=routine.pk).update(
        next_fire_at=next_at, next_fire_zone=routine.zone_name, updated_at=timezone.now(), **changes
    )


def fire_key(routine: Routine, fire_at: datetime) -> str:
    """The pulse's idempotency key for a fire. The hourly prompt's is the key `trigger_pulse
    --heartbeat` uses for that hour, so the cron line and the routine never double a heartbeat."""
    if routine.kind == RoutineKind.HOURLY_PROMPT:
        from pulses.ops import hourly_prompt

        return hourly_prompt.hour_key(fire_at)
    return f"routine:{routine.pk}:{fire_at.astimezone(UTC).isoformat()}"


def pulse_values(routine: Routine, *, scheduled_at: datetime) -> dict[str, object]:
    """What a pulse of this routine carries (its fires and `run now` alike)."""
    prompt = routine.prompt
    tags = list(routine.tags or ())
    if routine.kind == RoutineKind.HOURLY_PROMPT:
        from pulses.ops import hourly_prompt

        local = timezone.localtime(scheduled_at)
        prompt = hourly_prompt.hourly_prompt_text(local)
        tags = list(dict.fromkeys([*tags, "heartbeat", hourly_prompt.period(local)]))
    session = routine.session_id if routine.session_policy != SessionPolicy.NEW else ""
    return {
        "prompt": prompt,
        "scheduled_at": scheduled_at,
        "priority": routine.priority,
        "source": SOURCE,
        "session_id": session,
        "sticky_notes": list(routine.sticky_notes or ()),
        "tags": tags,
        "max_retries": routine.max_retries,
        "check_command": routine.check_command,
        "model": routine.model,
        "timeout_seconds": routine.timeout_seconds,
        "max_turns": routine.max_turns,
        "routine_id": routine.pk,
    }


def deliver_answer(routine: Routine, pulse: Pulse) -> None:
    """The outbox row of a routine that sends its answers to Telegram, in the pulse's transaction
    (as `queue.schedule(deliver=...)` writes it)."""
    if routine.deliver:
        Delivery.objects.create(pulse=pulse)


def _create_pulse(routine: Routine, fire_at: datetime) -> Pulse:
    key = fire_key(routine, fire_at)
    values = pulse_values(routine, scheduled_at=fire_at)
    if routine.kind == RoutineKind.HOURLY_PROMPT:
        # The cron line may have made this hour's heartbeat already: that pulse is this fire's.
        existing = Pulse.objects.filter(idempotency_key=key).first()
        if existing:
            return existing
    try:
        with transaction.atomic():
            pulse = Pulse.objects.create(fire_at=fire_at, idempotency_key=key, **values)
            deliver_answer(routine, pulse)
            return pulse
    except IntegrityError:
        # Only another firing of this very fire gets here (the row locks and the conditional
        # next_fire_at make it all but impossible): the pulse it made is the one.
        return Pulse.objects.get(idempotency_key=key)


def recompute_zones(now: datetime | None = None) -> int:
    """Move the fires of routines whose zone changed (TIME_ZONE, for those that follow it) to the
    new zone, from now on; the worker runs it at start. Returns how many moved."""
    now = now or timezone.now()
    moved = 0
    stale = Routine.objects.enabled().filter(timezone="").exclude(next_fire_zone=settings.TIME_ZONE)
    for routine in stale:
        try:
            next_at = routine.parsed_schedule.next_after(max(now, routine.last_fire_at or now), routine.zone)
        except schedules.ScheduleError:
            continue  # the firing pauses it with the reason
        moved += Routine.objects.filter(pk=routine.pk, next_fire_zone=routine.next_fire_zone).update(
            next_fire_at=next_at, next_fire_zone=routine.zone_name
        )
        logger.warning("routine_zone_changed name=%s zone=%s", routine.name, routine.zone_name)
    return moved
