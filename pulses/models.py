"""The pulse queue's data: pulses and their attempts (the workers' records are
`pulses.worker.models`', the answers' outbox `pulses.deliveries`', the per-day and per-period rows
`pulses.period_records`', the runs' live tails `pulses.run_tails`'; all are re-exported here).

Row transitions live here as model methods; nothing else assigns `status`. Each transition is a
conditional UPDATE (it names the state it expects), so a stale in-memory copy can never overwrite a
row another process has moved on.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

# Re-exported: the state names, and this app's models that live with the code that owns them.
from pulses.deliveries import Delivery, DeliveryState  # noqa: F401
from pulses.period_records import BudgetCapReached, FinishedDay  # noqa: F401
from pulses.run_tails import RunTailEvent  # noqa: F401
from pulses.states import FINISHED, PRIORITY_RANK, Priority, Status  # noqa: F401
from pulses.worker.models import (  # noqa: F401
    ALIVE_WITHIN,
    HealthIncident,
    ListenerRecord,
    WorkerRecord,
    WorkerRecordQuerySet,
    alive_within,
)

# The source of the pulses the agent schedules itself, and of the routines it creates.
AGENT_SOURCE = "agent"


class PulseNotPending(Exception):
    """A change that needs a pending pulse met one in another state."""


class PulseNotRunning(Exception):
    """A stop met a pulse that is not running (not processing)."""


class PulseQuerySet(models.QuerySet["Pulse"]):
    """The queue's named sets ("due", "stale", "upcoming") and the transitions of many rows at once."""

    @staticmethod
    def due_condition(now: datetime | None = None) -> Q:
        """The one definition of due (also called overdue): pending, and its time has come."""
        return Q(status=Status.PENDING, scheduled_at__lte=now or timezone.now())

    def pending(self) -> PulseQuerySet:
        return self.filter(status=Status.PENDING)

    def due(self, now: datetime | None = None) -> PulseQuerySet:
        """Pending pulses whose time has come, in run order: priority, then oldest first."""
        return self.filter(self.due_condition(now)).in_run_order()

    def not_due(self, now: datetime | None = None) -> PulseQuerySet:
        """Everything `due` leaves out."""
        return self.exclude(self.due_condition(now))

    def in_run_order(self) -> PulseQuerySet:
        return self.order_by("priority_rank", "scheduled_at", "id")

    def soonest_first(self) -> PulseQuerySet:
        """The order people read waiting pulses in: by time, then priority."""
        return self.order_by("scheduled_at", "priority_rank", "id")

    def upcoming(self) -> PulseQuerySet:
        """Pending pulses, soonest first (the due ones first of all)."""
        return self.pending().soonest_first()

    def stale(self, now: datetime | None = None) -> PulseQuerySet:
        """Processing pulses whose worker stopped renewing its lease."""
        return self.filter(status=Status.PROCESSING, lease_expires_at__lt=now or timezone.now())

    def held_by(self, worker: str) -> PulseQuerySet:
        """Processing pulses whose lease `worker` holds."""
        return self.filter(status=Status.PROCESSING, lease_owner=worker)

    def made_by_agent(self) -> PulseQuerySet:
        """The pulses the agent made: its own (source `agent`) and the fires of its routines. The
        only ones its tools may list, cancel or move; the owner's (Telegram, API, commands, cron,
        their routines) are out of its reach."""
        return self.filter(Q(source=AGENT_SOURCE) | Q(routine__source=AGENT_SOURCE))

    def with_tag(self, tag: str) -> PulseQuerySet:
        # Tags are a JSON list; matching the quoted element works on SQLite and PostgreSQL alike.
        return self.filter(tags__icontains=json.dumps(tag))

    def claim(self, *, worker: str, now: datetime, until: datetime) -> int:
        """pending -> processing for the pending rows of this set, leased to `worker` until `until`."""
        return self.filter(status=Status.PENDING).update(**claim_changes(worker=worker, now=now, until=until))

    def renew(self, *, worker: str, until: datetime) -> set[int]:
        """Extend the leases `worker` holds among these rows; the ids it still holds."""
        held = self.held_by(worker)
        held.update(lease_expires_at=until)
        return set(held.values_list("id", flat=True))


def claim_changes(*, worker: str, now: datetime, until: datetime) -> dict[str, object]:
    """What a claim writes (pending -> processing): the ORM claim above and the one-statement claim
    (`pulses.db.claims`) both write exactly this. The nonce is fresh for each claim (one per
    statement, shared by its batch: the run token's MAC names the pulse too), so a run token made for
    one claim never works for a later one, even with the same worker and attempt number."""
    return {
        "status": Status.PROCESSING,
        "lease_owner": worker,
        "lease_expires_at": until,
        "executed_at": now,
        "attempt_count": F("attempt_count") + 1,
        "claim_nonce": secrets.token_hex(16),
        # A stop asked of an earlier run (it ended on its own first) never reaches this one.
        "stop_requested_by": "",
        "stop_retry": False,
    }


class Pulse(models.Model):
    prompt = models.TextField()
    scheduled_at = models.DateTimeField(default=timezone.now)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    priority_rank = models.GeneratedField(
        expression=Case(
            *(When(priority=value, then=Value(rank)) for value, rank in PRIORITY_RANK.items()),
            default=Value(len(PRIORITY_RANK)),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    session_id = models.CharField(max_length=200, blank=True, default="")
    sticky_notes = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=100, default="manual")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    execution_duration_ms = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    # How many times it was claimed (its runs so far); the runs themselves are `attempt_set`.
    attempt_count = models.PositiveIntegerField(default=0, verbose_name="attempts")
    max_retries = models.PositiveIntegerField(default=3)
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set by each claim (`claim_changes`): the run token of that claim names it, so the token dies
    # with its run (pulses/api/tokens.py). Not a secret: the token's MAC needs SECRET_KEY.
    claim_nonce = models.CharField(max_length=32, blank=True, default="", db_default="")
    # A run of it was interrupted for a critical pulse (PULSE_PREEMPT): it is not interrupted again,
    # on any worker, until it is requeued.
    preempted = models.BooleanField(default=False, db_default=False)
    # Someone asked to stop its current run (`queue.request_stop`): who ("api token NAME", "admin
    # USERNAME", "command", "telegram chat ID", "agent"), and whether it then goes back to pending.
    # The worker holding the claim reads it at its next wake-up; each claim clears it.
    stop_requested_by = models.CharField(max_length=200, blank=True, default="", db_default="")
    stop_retry = models.BooleanField(default=False, db_default=False)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    # A routine's pulse: the routine and the fire it is for (unique together: one pulse per fire).
    routine = models.ForeignKey(
        "pulses.Routine", null=True, blank=True, on_delete=models.SET_NULL, related_name="pulses"
    )
    fire_at = models.DateTimeField(null=True, blank=True)
    # A wake check, run in the Desk before the agent: exit 0 wakes it, exit 1 skips the run.
    # Defaults in the database too, so a row inserted by hand (sqlite3, psql) needs neither column.
    check_command = models.TextField(blank=True, default="", db_default="")
    # Completed without an agent run: the wake check found nothing to do.
    skipped = models.BooleanField(default=False, db_default=False)
    # How the agent runs it (pulses.limits: an allow-list, never free-form flags): empty / null take
    # the defaults (AGENT_MODEL, PULSE_TIMEOUT_SECONDS, the agent's own turn limit).
    model = models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_default="",
        help_text="empty: AGENT_MODEL (or the agent's own)",
    )
    timeout_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="seconds before its run is killed; empty: PULSE_TIMEOUT_SECONDS"
    )
    max_turns = models.PositiveIntegerField(
        null=True, blank=True, help_text="the agent's turn limit for its run (--max-turns); empty: its own"
    )

    objects = PulseQuerySet.as_manager()

    class Meta:
        db_table = "pulses"
        ordering = ["-id"]
        indexes = [
            # The claim query: pending rows only, walked in run order. Finished history never
            # enters this index, so the claim stays flat however long the history grows.
            models.Index(
                fields=["priority_rank", "scheduled_at", "id"],
                condition=Q(status="pending"),
                name="pulses_claim_idx",
            ),
            models.Index(
                fields=["lease_expires_at"], condition=Q(status="processing"), name="pulses_lease_idx"
            ),
            models.Index(fields=["status", "scheduled_at"], name="pulses_status_sched_idx"),
            # History: the admin's status filter walks (status, id) newest first; listings, counts of
            # the day and retention read (status, finished_at) ranges; the date navigation probes
            # scheduled_at; the source filter's choices skip along (source, id). None of them reads
            # the whole table however long the history grows.
            models.Index(fields=["status", "finished_at"], name="pulses_status_finished_idx"),
            models.Index(fields=["status", "id"], name="pulses_status_id_idx"),
            models.Index(fields=["scheduled_at"], name="pulses_scheduled_idx"),
            models.Index(fields=["source", "id"], name="pulses_source_idx"),
        ]
        constraints = [
            # One session runs one pulse at a time, across every worker and host: the database
            # itself refuses a second running pulse of a session (see queue.claim).
            models.UniqueConstraint(
                fields=["session_id"],
                condition=Q(status="processing") & ~Q(session_id=""),
                name="pulses_one_running_per_session",
            ),
            # A routine's fire is one pulse, whichever worker on whichever host made it.
            models.UniqueConstraint(
                fields=["routine", "fire_at"], condition=Q(routine__isnull=False), name="pulses_one_per_fire"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.priority}/{self.status}] {self.prompt[:60]}"

    @property
    def is_overdue(self) -> bool:
        """This row against `PulseQuerySet.due_condition`, in Python."""
        return self.status == Status.PENDING and self.scheduled_at <= timezone.now()

    @property
    def has_retries_left(self) -> bool:
        """A failed run of this claim is followed by a retry (else the pulse fails for good)."""
        return self.attempt_count <= self.max_retries

    def _transition(self, expect: Q, **changes: object) -> bool:
        """UPDATE this row only if it still matches `expect`; refresh the named fields on success."""
        updated = Pulse.objects.filter(expect, pk=self.pk).update(**changes)
        if updated:
            for field, value in changes.items():
                # F("attempt_count") - 1 is the database's to compute
                if not hasattr(value, "resolve_expression"):
                    setattr(self, field, value)
        return bool(updated)

    def claimed_by(self, worker: str) -> Q:
        """This row as long as `worker`'s claim holds: once its lease expired and the pulse was claimed
        again (by anyone, even this worker) it is another attempt, and this matches nothing."""
        return Q(pk=self.pk, status=Status.PROCESSING, lease_owner=worker, attempt_count=self.attempt_count)

    def finish_changes(
        self,
        *,
        success: bool,
        finished_at: datetime,
        duration_ms: int,
        session_id: str,
        error: str,
        retry_at: datetime,
    ) -> dict[str, object]:
        """What recording a finished run writes: completed; else pending again at `retry_at` while
        retries are left (a retry); else failed for good."""
        changes: dict[str, object] = {
            "finished_at": finished_at,
            "execution_duration_ms": duration_ms,
            "lease_owner": "",
            "lease_expires_at": None,
        }
        if session_id:
            changes["session_id"] = session_id
        if success:
            changes.update(status=Status.COMPLETED, error_message="")
        elif self.has_retries_left:
            changes.update(status=Status.PENDING, error_message=error, scheduled_at=retry_at)
        else:
            changes.update(status=Status.FAILED, error_message=error)
        return changes

    def finish(self, *, worker: str, changes: dict[str, object]) -> bool:
        """Write `finish_changes` if `worker`'s claim still holds; False (nothing written) otherwise."""
        return self._transition(self.claimed_by(worker), **changes)

    def release(self, *, worker: str, session_id: str = "") -> bool:
        """An interrupted run (worker shutdown): pending again at once, the run not counted."""
        changes: dict[str, object] = {
            "status": Status.PENDING,
            "lease_owner": "",
            "lease_expires_at": None,
            "attempt_count": F("attempt_count") - 1,
        }
        if session_id:
            changes["session_id"] = session_id
        return self._transition(self.claimed_by(worker), **changes)

    def expire(self, *, now: datetime, error: str) -> bool:
        """Its worker stopped renewing the lease: pending again while retries are left, else failed.
        True when a retry follows."""
        retry = self.has_retries_left
        self._transition(
            Q(status=Status.PROCESSING),
            status=Status.PENDING if retry else Status.FAILED,
            lease_owner="",
            lease_expires_at=None,
            error_message=error,
            finished_at=None if retry else now,
        )
        return retry

    def interrupt(self, *, worker: str, now: datetime, error: str) -> bool:
        """`worker` is proven dead while it ran this pulse: pending again at once while retries are
        left, else failed; the run counted. False when `worker` no longer holds it."""
        retry = self.has_retries_left
        return self._transition(
            self.claimed_by(worker),
            status=Status.PENDING if retry else Status.FAILED,
            lease_owner="",
            lease_expires_at=None,
            error_message=error,
            finished_at=None if retry else now,
        )

    def stop(self, *, worker: str, now: datetime, duration_ms: int, session_id: str, error: str) -> bool:
        """Its run was stopped on request (`queue.request_stop`): processing -> cancelled, the run
        counted, the session it reached kept. False when `worker` no longer holds it."""
        changes: dict[str, object] = {
            "status": Status.CANCELLED,
            "finished_at": now,
            "execution_duration_ms": duration_ms,
            "lease_owner": "",
            "lease_expires_at": None,
            "error_message": error,
        }
        if session_id:
            changes["session_id"] = session_id
        return self._transition(self.claimed_by(worker), **changes)

    def cancel(self) -> None:
        if not self._transition(
            Q(status=Status.PENDING),
            status=Status.CANCELLED,
            finished_at=timezone.now(),
            lease_owner="",
            lease_expires_at=None,
        ):
            self.refresh_from_db(fields=["status"])
            raise PulseNotPending(f"pulse {self.pk} is {self.status}; only a pending pulse can be cancelled")

    def skip_fire(self, reason: str, *, now: datetime | None = None) -> bool:
        """Cancel a routine's fire that never started (pending, never claimed), saying why; False
        once a worker has claimed it."""
        return self._transition(
            Q(status=Status.PENDING, attempt_count=0),
            status=Status.CANCELLED,
            finished_at=now or timezone.now(),
            error_message=reason,
        )

    def revise_prompt(self, prompt: str) -> bool:
        """Replace the prompt while the pulse has not started (pending, never claimed); False after."""
        return self._transition(Q(status=Status.PENDING, attempt_count=0), prompt=prompt)

    def reschedule(self, when: datetime) -> None:
        if not self._transition(Q(status=Status.PENDING), scheduled_at=when):
            self.refresh_from_db(fields=["status"])
            raise PulseNotPending(
                f"pulse {self.pk} is {self.status}; only a pending pulse can be rescheduled"
            )

    def requeue(self, when: datetime | None = None) -> None:
        """A failed, cancelled or completed pulse runs again, with a fresh retry budget."""
        done = Q(status__in=[Status.FAILED, Status.CANCELLED, Status.COMPLETED])
        if not self._transition(
            done,
            status=Status.PENDING,
            scheduled_at=when or timezone.now(),
            attempt_count=0,
            preempted=False,
            error_message="",
            finished_at=None,
            lease_owner="",
            lease_expires_at=None,
        ):
            self.refresh_from_db(fields=["status"])
            raise PulseNotPending(
                f"pulse {self.pk} is {self.status}; only a failed, cancelled or completed pulse "
                "can be requeued"
            )


class PulseAttempt(models.Model):
    """One run of the agent for a pulse; a retry adds an attempt, never a new pulse."""

    pulse = models.ForeignKey(Pulse, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.IntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    session_id = models.CharField(max_length=200, blank=True, default="")
    result_text = models.TextField(blank=True, default="")
    cost_usd = models.FloatField(null=True, blank=True)
    num_turns = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    stdout_tail = models.TextField(blank=True, default="")
    stderr_tail = models.TextField(blank=True, default="")

    class Meta:
        db_table = "pulse_attempts"
        ordering = ["started_at", "id"]
        indexes = [
            # The dashboard's and /api/stats' last 24 hours are a range of this index, and the spend of
            # a month (pulses.budget) reads the index alone: its pulses (by source, by routine) and the
            # newest id counted too (`id` is SQLite's rowid anyway; PostgreSQL needs it named).
            models.Index(
                fields=["finished_at", "cost_usd", "pulse", "id"], name="attempts_finished_cost_idx"
            ),
            # Only attempts that still carry output tails: retention trims the old ones without
            # reading the already-trimmed years again.
            models.Index(
                fields=["finished_at"],
                condition=~Q(stdout_tail="") | ~Q(stderr_tail=""),
                name="attempts_with_tails_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"pulse #{self.pulse_id} attempt {self.number}"


# Registered in this app from their own modules, which import from this one, so they come last.
from pulses.agent_hold import AgentHold  # noqa: E402, F401
from pulses.api.models import FULL_SCOPES, ApiToken, TokenScope  # noqa: E402, F401
from pulses.queue_pause import QueuePause  # noqa: E402, F401

# Registered in this app; it imports Priority from here, so it comes last.
from pulses.routines.models import Routine  # noqa: E402, F401
