"""The queue's pause switch (`QueuePause`): one row, in the database, so every worker, the web process
and the commands see the same state, as the agent hold's (`pulses.agent_hold`). Its transitions are all
here, used through `pulses.queue`.

While the queue is paused no worker claims a pulse (a run already going finishes); routines still
fire, so each fire is recorded as its pulse, waiting. A pause with an end (`until`) ends by itself:
the first worker that looks at it after that time resumes it (its wait is bounded by `until`). On
resume the routines' catch-up rule (`pulses.routines.firing`) is applied to the fires made during the
pause: of a routine's waiting fires only the latest runs, and only while it is inside the routine's
catch-up window; the others are cancelled and counted as missed, as fires missed while Reeve was down.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from pulses.db import wakeup
from pulses.db.compiled import FirstValue
from pulses.db.write_gate import gated
from pulses.limits import MAX_PAUSE_REASON_CHARS

logger = logging.getLogger(__name__)

PAUSE_ID = 1  # the one row
SKIPPED_FIRE = (
    "skipped: fired while the queue was paused; the routine's catch-up rule runs only its latest fire"
)


class InvalidPause(ValueError):
    """A pause that cannot be stored (an end in the past, a reason too long)."""


class QueuePause(models.Model):
    """The one pause row (pk 1); `paused` says whether the switch is on. Kept after a resume, so the
    surfaces and the log can say what the last pause was."""

    paused = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="when it resumes by itself; empty: by hand")
    reason = models.CharField(max_length=MAX_PAUSE_REASON_CHARS, blank=True, default="")
    paused_by = models.CharField(max_length=200, blank=True, default="")
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "queue_pause"
        verbose_name = "queue pause"

    def __str__(self) -> str:
        return "queue paused" if self.paused else "queue running"


@dataclass(frozen=True)
class PauseState:
    """What the status surfaces show: whether the queue is paused, since when, until when (None: until
    resumed by hand), why and by whom."""

    paused: bool = False
    since: datetime | None = None
    until: datetime | None = None
    reason: str = ""
    by: str = ""

    def summary(self) -> str:
        """One line for doctor, the banner and the health judgement ("" when not paused)."""
        if not self.paused:
            return ""
        until = f"until {_local(self.until)}" if self.until else "until resumed (manage.py queue resume)"
        why = f": {self.reason}" if self.reason else ""
        return f"the queue is paused {until}, by {self.by or 'unknown'}{why}"


@dataclass(frozen=True)
class Resumed:
    """What a resume did: how long the pause lasted and the routine fires its catch-up rule skipped."""

    since: datetime | None
    skipped_fires: int


def _local(when: datetime) -> str:
    local = timezone.localtime(when)
    day = "" if local.date() == timezone.localdate() else f"{local:%a %d %b} "
    return f"{day}{local:%H:%M} ({timezone.get_current_timezone_name()})"


def state(now: datetime | None = None) -> PauseState:
    """The pause as the status surfaces show it (one primary-key read); a pause whose end has passed
    shows as over even before a worker resumed it."""
    row = QueuePause.objects.filter(pk=PAUSE_ID).first()
    now = now or timezone.now()
    if row is None or not row.paused or (row.until is not None and row.until <= now):
        return PauseState()
    return PauseState(paused=True, since=row.since, until=row.until, reason=row.reason, by=row.paused_by)


# The worker asks before each claim: compiled once (pulses.db.compiled), one primary-key probe.
_paused_since = FirstValue(
    lambda: QueuePause.objects.filter(pk=PAUSE_ID, paused=True).values_list("since", flat=True)
)


def claims_paused(now: datetime | None = None) -> tuple[bool, datetime | None]:
    """For the worker, before each claim: whether claims are paused, and until when (None: until a
    resume). A pause whose end has come is resumed here (by whichever worker gets there first), so
    the routines' catch-up rule is applied before anything is claimed."""
    if _paused_since() is None:
        return False, None
    now = now or timezone.now()
    until = QueuePause.objects.filter(pk=PAUSE_ID).values_list("until", flat=True).first()
    if until is not None and until <= now:
        resume(by="until", now=now)
        return False, None
    return True, until


@gated
def pause(
    *, by: str, until: datetime | None = None, reason: str = "", now: datetime | None = None
) -> PauseState:
    """Pause the queue (or change a standing pause's end and reason): no claims until `until`, or until
    a resume. InvalidPause for an end that has passed or a reason too long."""
    now = now or timezone.now()
    reason = " ".join((reason or "").split())
    if until is not None and until <= now:
        raise InvalidPause(f"the pause would end at {until.isoformat()}, which has passed; give a later time")
    if len(reason) > MAX_PAUSE_REASON_CHARS:
        raise InvalidPause(f"the reason is {len(reason)} characters; at most {MAX_PAUSE_REASON_CHARS}")
    with transaction.atomic():
        row = _locked_row()
        if not row.paused:
            row.since, row.ended_at, row.ended_by = now, None, ""
        row.paused, row.until, row.reason, row.paused_by = True, until, reason, by
        row.save()
        wakeup.announce()  # idle workers look again (and find nothing to claim)
    logger.warning(
        "queue_paused by=%s until=%s reason=%s", by, until.isoformat() if until else "-", reason or "-"
    )
    return PauseState(paused=True, since=row.since, until=until, reason=reason, by=by)


@gated
def resume(*, by: str, now: datetime | None = None) -> Resumed | None:
    """Resume the queue: the routines' catch-up rule is applied to the fires made while it was paused,
    and the workers are woken. None when it was not paused (another caller resumed it first)."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_row(create=False)
        if row is None or not row.paused:
            return None
        skipped = _apply_catch_up(since=row.since or now, now=now)
        row.paused, row.ended_at, row.ended_by = False, now, by
        row.save(update_fields=["paused", "ended_at", "ended_by"])
        wakeup.announce()
    logger.warning(
        "queue_resumed by=%s since=%s skipped_fires=%s",
        by,
        row.since.isoformat() if row.since else "-",
        skipped,
    )
    return Resumed(since=row.since, skipped_fires=skipped)


def _apply_catch_up(*, since: datetime, now: datetime) -> int:
    """The routines' rule for missed fires, applied to the fires that waited out the pause (pending,
    never claimed): of each routine's, the latest runs if it is still inside the routine's catch-up
    window; every other one is cancelled and counted in the routine's `missed_count`."""
    from pulses.models import Pulse, Status
    from pulses.routines.models import Routine

    waiting = (
        Pulse.objects.filter(
            status=Status.PENDING,
            attempt_count=0,
            routine__isnull=False,
            fire_at__gte=since,
            fire_at__lte=now,
        )
        .order_by("routine_id", "fire_at")
        .select_related("routine")
    )
    by_routine: dict[int, list[Pulse]] = defaultdict(list)
    for pulse in waiting:
        by_routine[pulse.routine_id].append(pulse)
    skipped = 0
    for routine_id, fires in by_routine.items():
        *older, latest = fires
        routine = latest.routine
        dropped = list(older)
        if now - latest.fire_at > routine.effective_catch_up_window(latest.fire_at):
            dropped.append(latest)
        done = sum(1 for pulse in dropped if pulse.skip_fire(SKIPPED_FIRE, now=now))
        if done:
            Routine.objects.filter(pk=routine_id).update(missed_count=F("missed_count") + done)
            logger.warning("routine_fires_skipped name=%s missed=%s reason=queue_paused", routine.name, done)
        skipped += done
    return skipped


def _locked_row(*, create: bool = True) -> QueuePause | None:
    """The pause row, locked for this transaction (on SQLite the transaction is the lock)."""
    row = QueuePause.objects.select_for_update().filter(pk=PAUSE_ID).first()
    if row is None and create:
        # The first pause ever; a second process doing the same waits on the primary key, then finds
        # the row (get_or_create re-reads it after its IntegrityError).
        QueuePause.objects.get_or_create(pk=PAUSE_ID)
        row = QueuePause.objects.select_for_update().get(pk=PAUSE_ID)
    return row
