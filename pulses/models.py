"""The pulse queue's data: pulses, their attempts, and the workers that run them.

Row transitions live here as model methods; nothing else assigns `status`. Each transition is a
conditional UPDATE (it names the state it expects), so a stale in-memory copy can never overwrite a
row another process has moved on.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Case, Q, Value, When
from django.utils import timezone


class Priority(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    DEFERRED = "deferred"


class Status(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
PRIORITY_RANK = {p.value: rank for rank, p in enumerate(Priority)}


class PulseNotPending(Exception):
    """A change that needs a pending pulse met one in another state."""


class PulseQuerySet(models.QuerySet["Pulse"]):
    def pending(self) -> PulseQuerySet:
        return self.filter(status=Status.PENDING)

    def due(self, now: datetime | None = None) -> PulseQuerySet:
        """Pending pulses whose time has come, in run order: priority, then oldest first."""
        return self.pending().filter(scheduled_at__lte=now or timezone.now()).in_run_order()

    def overdue(self, now: datetime | None = None) -> PulseQuerySet:
        return self.due(now)

    def in_run_order(self) -> PulseQuerySet:
        return self.order_by("priority_rank", "scheduled_at", "id")

    def stale(self, now: datetime | None = None) -> PulseQuerySet:
        """Processing pulses whose worker stopped renewing its lease."""
        return self.filter(status=Status.PROCESSING, lease_expires_at__lt=now or timezone.now())

    def upcoming(self) -> PulseQuerySet:
        return self.pending().order_by("scheduled_at", "priority_rank", "id")

    def with_tag(self, tag: str) -> PulseQuerySet:
        # Tags are a JSON list; matching the quoted element works on SQLite and PostgreSQL alike.
        return self.filter(tags__icontains=json.dumps(tag))


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
    attempts = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)

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
        ]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.priority}/{self.status}] {self.prompt[:60]}"

    @property
    def is_overdue(self) -> bool:
        return self.status == Status.PENDING and self.scheduled_at <= timezone.now()

    def _transition(self, expect: Q, **changes: object) -> bool:
        """UPDATE this row only if it still matches `expect`; refresh the named fields on success."""
        updated = Pulse.objects.filter(expect, pk=self.pk).update(**changes)
        if updated:
            for field, value in changes.items():
                setattr(self, field, value)
        return bool(updated)

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

    def revise_prompt(self, prompt: str) -> bool:
        """Replace the prompt while the pulse has not started (pending, never claimed); False after."""
        return self._transition(Q(status=Status.PENDING, attempts=0), prompt=prompt)

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
            attempts=0,
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
            # The dashboard's and /api/stats' last 24 hours are a range of this index.
            models.Index(fields=["finished_at"], name="attempts_finished_idx"),
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


class FinishedDay(models.Model):
    """How many pulses finished on one UTC day, by final status: the sealed past of the queue's
    counts (`pulses.history`), so counting a year of history reads a row per day, not a row per pulse."""

    day = models.DateField(primary_key=True)
    completed = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)

    class Meta:
        db_table = "pulse_finished_days"
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day}: {self.completed} completed, {self.failed} failed, {self.cancelled} cancelled"


class WorkerRecord(models.Model):
    """A worker process that has heartbeated; `/api/status` lists the recent ones."""

    name = models.CharField(max_length=200, unique=True)  # host:pid
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    running = models.IntegerField(default=0)

    class Meta:
        db_table = "pulse_workers"

    def __str__(self) -> str:
        return self.name

    @property
    def is_alive(self) -> bool:
        return self.last_seen >= timezone.now() - timedelta(minutes=2)


class TokenScope(models.TextChoices):
    FULL = "full"  # every endpoint
    AGENT = "agent"  # only what the agent's MCP tools do: /api/agent/* and /api/notify


class ApiToken(models.Model):
    """A named, revocable API client token; only its SHA-256 is stored, never the token itself."""

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=16, choices=TokenScope.choices, default=TokenScope.FULL)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="the first characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pulse_api_tokens"
        ordering = ["name"]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.name} ({self.prefix}…, {self.scope}, {state})"


class DeliveryState(models.TextChoices):
    WAITING = "waiting"  # the pulse has not finished yet, or its answer is still to be sent
    SENT = "sent"
    SKIPPED = "skipped"  # nothing to send: the agent said it already, or had nothing to say
    FAILED = "failed"  # Telegram refused it for good (the chat is gone, the bot was blocked)


class Delivery(models.Model):
    """The outbox row of a pulse whose answer goes back to Telegram when it finishes.

    Written with the pulse, in its transaction, so the request can never be lost; the Telegram
    listener sends the answer once the pulse has finished and notes each part it sent, so a crash
    between the run and the send neither loses the answer nor sends it twice.
    """

    pulse = models.OneToOneField(Pulse, on_delete=models.CASCADE, related_name="delivery")
    # The chat to answer in and the message to answer; no chat means every configured chat.
    chat_id = models.BigIntegerField(null=True, blank=True)
    reply_to_message_id = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.WAITING)
    agent_notified = models.BooleanField(
        default=False, help_text="the agent messaged the user itself during the run (send_notification)"
    )
    parts_sent = models.PositiveIntegerField(default=0)
    tries = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True, default="", help_text="why it was skipped, or Telegram's refusal")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pulse_deliveries"
        indexes = [
            # The listener's outbox sweep reads only the deliveries still to do, however many were sent.
            models.Index(fields=["pulse"], condition=Q(state="waiting"), name="deliveries_waiting_idx"),
        ]

    def __str__(self) -> str:
        return f"answer of pulse #{self.pulse_id}: {self.state}"
