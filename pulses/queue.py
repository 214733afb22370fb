"""The one entry point every caller uses to change the pulse queue (reading it: `pulses.reports`).

Claims are short transactions: on SQLite every transaction is BEGIN IMMEDIATE (see settings), so the
select-then-conditional-update below is serialised between processes; on PostgreSQL the candidate rows
are locked with FOR UPDATE SKIP LOCKED so concurrent workers pass each other by. No transaction is
ever held while an agent runs: the worker commits the claim, runs the agent, then reports back here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from pulses import wakeup
from pulses.executor import AttemptOutcome
from pulses.models import Priority, Pulse, PulseAttempt, PulseNotPending, Status, WorkerRecord
from pulses.write_gate import gated

logger = logging.getLogger(__name__)

__all__ = [
    "AttemptOutcome",
    "PulseNotPending",
    "ScheduleResult",
    "cancel",
    "claim",
    "heartbeat",
    "record_attempt",
    "record_session",
    "recover_expired_leases",
    "release",
    "renew_leases",
    "requeue",
    "reschedule",
    "retry_delay",
    "duplicate",
    "next_due_at",
    "run_now",
    "schedule",
]


@dataclass(frozen=True)
class ScheduleResult:
    pulse: Pulse
    created: bool


@gated
def schedule(
    *,
    prompt: str,
    scheduled_at: datetime | None = None,
    priority: str = Priority.NORMAL,
    source: str = "manual",
    session_id: str = "",
    sticky_notes: Sequence[str] = (),
    tags: Sequence[str] = (),
    max_retries: int = 3,
    idempotency_key: str | None = None,
    parent_id: int | None = None,
) -> ScheduleResult:
    """Create a pulse; a repeated idempotency key returns the first pulse instead (created=False)."""
    if idempotency_key:
        existing = Pulse.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return ScheduleResult(existing, created=False)
    try:
        with transaction.atomic():
            pulse = Pulse.objects.create(
                prompt=prompt,
                scheduled_at=scheduled_at or timezone.now(),
                priority=priority,
                source=source,
                session_id=session_id or "",
                sticky_notes=list(sticky_notes),
                tags=list(tags),
                max_retries=max_retries,
                idempotency_key=idempotency_key or None,
                parent_id=parent_id,
            )
            wakeup.announce()
    except IntegrityError:
        if not idempotency_key:
            raise
        # Another request with the same key committed first: theirs is the pulse.
        return ScheduleResult(Pulse.objects.get(idempotency_key=idempotency_key), created=False)
    logger.info(
        "pulse_scheduled id=%s priority=%s source=%s at=%s",
        pulse.pk,
        pulse.priority,
        pulse.source,
        pulse.scheduled_at.isoformat(),
    )
    return ScheduleResult(pulse, created=True)


@gated
def claim(*, worker: str, limit: int, lease_seconds: float | None = None) -> list[Pulse]:
    """Lease up to `limit` due pulses to `worker`, highest priority then oldest first.

    A pulse whose session is already running (here or on another worker) is left for later, and
    one batch never holds two pulses of one session, so a session's pulses run one at a time.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    lease = timedelta(seconds=lease_seconds or settings.PULSE_LEASE_SECONDS)
    busy_sessions = Pulse.objects.filter(status=Status.PROCESSING).exclude(session_id="").values("session_id")
    with transaction.atomic():
        candidates = (
            Pulse.objects.due(now)
            .exclude(Q(session_id__in=busy_sessions) & ~Q(session_id=""))
            .values_list("id", "session_id")
        )
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        chosen: list[int] = []
        sessions: set[str] = set()
        for pulse_id, session_id in candidates[: limit * 2 + 8]:
            if session_id and (session_id in sessions or not _session_free(session_id)):
                continue
            if session_id:
                sessions.add(session_id)
            chosen.append(pulse_id)
            if len(chosen) == limit:
                break
        if not chosen:
            return []
        Pulse.objects.filter(id__in=chosen, status=Status.PENDING).update(
            status=Status.PROCESSING,
            lease_owner=worker,
            lease_expires_at=now + lease,
            executed_at=now,
            attempts=F("attempts") + 1,
        )
        claimed = list(Pulse.objects.filter(id__in=chosen, lease_owner=worker).in_run_order())
    for pulse in claimed:
        logger.info(
            "pulse_claimed id=%s priority=%s attempt=%s worker=%s",
            pulse.pk,
            pulse.priority,
            pulse.attempts,
            worker,
        )
    return claimed


def _session_free(session_id: str) -> bool:
    """On PostgreSQL, claims run side by side, so the busy-session filter above may have read a
    snapshot from before another worker's claim of this session committed. A transaction-scoped
    advisory lock on the session serialises those claimers; the re-check after taking it sees any
    claim committed meanwhile. (On SQLite every claim is already serialised by BEGIN IMMEDIATE.)"""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [f"reeve-session:{session_id}"])
        if not cursor.fetchone()[0]:
            return False
    return not Pulse.objects.filter(status=Status.PROCESSING, session_id=session_id).exists()


def retry_delay(attempt: int) -> timedelta:
    """Delay before the retry that follows attempt `attempt` (1, 2, ...): 2^(n-1) minutes, capped."""
    minutes = min(2 ** max(attempt - 1, 0), settings.PULSE_RETRY_CAP_MINUTES)
    return timedelta(minutes=minutes)


def _store_attempt(pulse: Pulse, *, worker: str, outcome: AttemptOutcome, error: str) -> None:
    PulseAttempt.objects.create(
        pulse=pulse,
        number=pulse.attempts,
        worker=worker,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        duration_ms=outcome.duration_ms,
        exit_code=outcome.exit_code,
        succeeded=outcome.success,
        session_id=outcome.session_id,
        result_text=outcome.result_text,
        cost_usd=outcome.cost_usd,
        num_turns=outcome.num_turns,
        error=error,
        stdout_tail=outcome.stdout_tail,
        stderr_tail=outcome.stderr_tail,
    )


def _owned(pulse_id: int, worker: str) -> Pulse | None:
    return Pulse.objects.filter(pk=pulse_id, status=Status.PROCESSING, lease_owner=worker).first()


@gated
def record_attempt(pulse_id: int, *, worker: str, outcome: AttemptOutcome) -> str | None:
    """Store a finished run: completed, pending again with backoff, or failed for good.

    Returns the pulse's new status, or None when `worker` no longer holds the lease (it expired and
    the pulse was recovered), in which case nothing is written.
    """
    with transaction.atomic():
        pulse = _owned(pulse_id, worker)
        if pulse is None:
            logger.warning("pulse_lease_lost id=%s worker=%s result_discarded", pulse_id, worker)
            return None
        changes: dict[str, object] = {
            "finished_at": outcome.finished_at,
            "execution_duration_ms": outcome.duration_ms,
            "lease_owner": "",
            "lease_expires_at": None,
        }
        if outcome.session_id:
            changes["session_id"] = outcome.session_id
        if outcome.success:
            changes.update(status=Status.COMPLETED, error_message="")
        elif pulse.attempts <= pulse.max_retries:
            changes.update(
                status=Status.PENDING,
                error_message=outcome.error,
                scheduled_at=outcome.finished_at + retry_delay(pulse.attempts),
            )
        else:
            changes.update(status=Status.FAILED, error_message=outcome.error)
        Pulse.objects.filter(pk=pulse.pk).update(**changes)
        _store_attempt(pulse, worker=worker, outcome=outcome, error=outcome.error)
        if changes["status"] == Status.PENDING:
            wakeup.announce()
    status = changes["status"]
    if status == Status.COMPLETED:
        logger.info("pulse_completed id=%s duration_ms=%s", pulse_id, outcome.duration_ms)
    elif status == Status.PENDING:
        logger.warning(
            "pulse_retry_scheduled id=%s attempt=%s retry_at=%s error=%s",
            pulse_id,
            pulse.attempts,
            changes["scheduled_at"],
            _short(outcome.error),
        )
    else:
        logger.error(
            "pulse_failed id=%s attempts=%s error=%s", pulse_id, pulse.attempts, _short(outcome.error)
        )
    return str(status)


@gated
def release(pulse_id: int, *, worker: str, outcome: AttemptOutcome) -> bool:
    """Return an interrupted pulse (worker shutdown) to pending at once; the run is not counted."""
    with transaction.atomic():
        pulse = _owned(pulse_id, worker)
        if pulse is None:
            return False
        note = "interrupted: the worker shut down; returned to pending"
        _store_attempt(pulse, worker=worker, outcome=outcome, error=note)
        changes: dict[str, object] = {
            "status": Status.PENDING,
            "lease_owner": "",
            "lease_expires_at": None,
            "attempts": F("attempts") - 1,
        }
        if outcome.session_id:
            changes["session_id"] = outcome.session_id
        Pulse.objects.filter(pk=pulse.pk).update(**changes)
    logger.warning("pulse_released id=%s worker=%s", pulse_id, worker)
    return True


@gated
def record_session(pulse_id: int, *, worker: str, session_id: str) -> None:
    """Store the session id the agent announced while it still runs (so its tools can resume it)."""
    Pulse.objects.filter(pk=pulse_id, status=Status.PROCESSING, lease_owner=worker).update(
        session_id=session_id
    )


@gated
def renew_leases(*, worker: str, pulse_ids: Iterable[int], lease_seconds: float | None = None) -> set[int]:
    """Extend the leases `worker` holds; returns the ids it still holds."""
    ids = list(pulse_ids)
    if not ids:
        return set()
    until = timezone.now() + timedelta(seconds=lease_seconds or settings.PULSE_LEASE_SECONDS)
    owned = Pulse.objects.filter(id__in=ids, status=Status.PROCESSING, lease_owner=worker)
    with transaction.atomic():
        owned.update(lease_expires_at=until)
        return set(owned.values_list("id", flat=True))


@gated
def recover_expired_leases(now: datetime | None = None) -> list[int]:
    """Return pulses whose worker stopped renewing to pending (or failed, when out of retries).

    The lost run counts as a failed attempt with an error naming the worker.
    """
    now = now or timezone.now()
    recovered: list[int] = []
    with transaction.atomic():
        stale = Pulse.objects.stale(now)
        if connection.features.has_select_for_update_skip_locked:
            stale = stale.select_for_update(skip_locked=True)
        for pulse in stale:
            error = (
                f"lease expired: worker {pulse.lease_owner} stopped renewing its lease "
                "(killed, crashed or host lost) while the agent ran"
            )
            retry = pulse.attempts <= pulse.max_retries
            Pulse.objects.filter(pk=pulse.pk, status=Status.PROCESSING).update(
                status=Status.PENDING if retry else Status.FAILED,
                lease_owner="",
                lease_expires_at=None,
                error_message=error,
                finished_at=None if retry else now,
            )
            started = pulse.executed_at or now
            _store_attempt(
                pulse,
                worker=pulse.lease_owner,
                outcome=AttemptOutcome(success=False, started_at=started, finished_at=now),
                error=error,
            )
            recovered.append(pulse.pk)
            logger.warning(
                "lease_expired id=%s worker=%s now=%s",
                pulse.pk,
                pulse.lease_owner,
                "pending" if retry else "failed",
            )
        if recovered:
            wakeup.announce()
    return recovered


def next_due_at() -> datetime | None:
    """When the soonest pending pulse is due (None when nothing is pending)."""
    return Pulse.objects.pending().order_by("scheduled_at").values_list("scheduled_at", flat=True).first()


@gated
def cancel(pulse_id: int) -> Pulse:
    """Cancel a pending pulse; PulseNotPending otherwise, Pulse.DoesNotExist when there is none."""
    pulse = Pulse.objects.get(pk=pulse_id)
    pulse.cancel()
    logger.info("pulse_cancelled id=%s", pulse_id)
    return pulse


@gated
def reschedule(pulse_id: int, when: datetime) -> Pulse:
    """Move a pending pulse to `when`."""
    pulse = Pulse.objects.get(pk=pulse_id)
    with transaction.atomic():
        pulse.reschedule(when)
        wakeup.announce()
    logger.info("pulse_rescheduled id=%s at=%s", pulse_id, when.isoformat())
    return pulse


@gated
def requeue(pulse_id: int, when: datetime | None = None) -> Pulse:
    """Run a finished (failed, cancelled or completed) pulse again, now or at `when`."""
    pulse = Pulse.objects.get(pk=pulse_id)
    with transaction.atomic():
        pulse.requeue(when)
        wakeup.announce()
    logger.info("pulse_requeued id=%s", pulse_id)
    return pulse


@gated
def heartbeat(*, worker: str, host: str, pid: int, started_at: datetime, running: int) -> None:
    """Record that `worker` is alive, for `/api/status` and `reeve-status`."""
    WorkerRecord.objects.update_or_create(
        name=worker,
        defaults={
            "host": host,
            "pid": pid,
            "started_at": started_at,
            "last_seen": timezone.now(),
            "running": running,
        },
    )


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@gated
def run_now(pulse_id: int) -> Pulse:
    """Make a pulse due now: a pending one moves to now, a finished one is requeued now.

    PulseNotPending when it is processing (it is running already)."""
    pulse = Pulse.objects.get(pk=pulse_id)
    now = timezone.now()
    with transaction.atomic():
        if pulse.status == Status.PENDING:
            pulse.reschedule(now)
        else:
            pulse.requeue(now)
        wakeup.announce()
    logger.info("pulse_run_now id=%s", pulse_id)
    return pulse


@gated
def duplicate(pulse_id: int, *, scheduled_at: datetime | None = None) -> Pulse:
    """A new pending pulse with the same prompt, priority, session, notes and tags (its parent is the
    original), due now or at `scheduled_at`."""
    original = Pulse.objects.get(pk=pulse_id)
    copy = schedule(
        prompt=original.prompt,
        scheduled_at=scheduled_at,
        priority=original.priority,
        source=original.source,
        session_id=original.session_id,
        sticky_notes=original.sticky_notes or (),
        tags=original.tags or (),
        max_retries=original.max_retries,
        parent_id=original.pk,
    ).pulse
    logger.info("pulse_duplicated id=%s copy=%s", pulse_id, copy.pk)
    return copy
