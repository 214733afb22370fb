"""The one entry point every caller uses to change the pulse queue (reading it: `pulses.reports`).

The transitions themselves are `pulses.models`'; this module chooses the transaction around each, the
wake-up of idle workers, the attempt's row and the log line. The claim lives in `pulses.claiming` and
is used from here. A finished run is recorded in one statement on PostgreSQL (`pulses.db.claims`). No
transaction is ever held while an agent runs: the worker commits the claim, runs the agent, then
reports back here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pulses import history, limits
from pulses.agent.executor import AttemptOutcome
from pulses.backoff import exponential
from pulses.claiming import (
    claim,
    claim_holder,
    critical_waiting_for_a_slot,
    next_due_at,
    waiting_for_sessions_of,
)
from pulses.db import claims, is_postgres, wakeup
from pulses.db.write_gate import gated
from pulses.limits import InvalidPulse
from pulses.models import (
    Delivery,
    Priority,
    Pulse,
    PulseAttempt,
    PulseNotPending,
    Status,
    WorkerRecord,
)

logger = logging.getLogger(__name__)

# Where a pulse's answer may be sent when it finishes ("" keeps it in the queue only).
DELIVERY_CHANNELS = ("", "telegram")

__all__ = [
    "AttemptOutcome",
    "InvalidPulse",
    "PulseNotPending",
    "ScheduleResult",
    "cancel",
    "claim",
    "claim_holder",
    "critical_waiting_for_a_slot",
    "report_alive",
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
    "waiting_for_sessions_of",
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
    deliver: str = "",
    reply_to: tuple[int, int] | None = None,
    check_command: str = "",
) -> ScheduleResult:
    """Create a pulse; a repeated idempotency key returns the first pulse instead (created=False).

    InvalidPulse when it breaks a limit of `pulses.limits` (the callers' own checks say it first).

    `deliver="telegram"` sends the agent's answer to Telegram when the pulse finishes: as a reply to
    `reply_to` (chat id, message id), else to the configured chat. The outbox row is written in the
    pulse's transaction, so the request cannot be lost."""
    scheduled_at = scheduled_at or timezone.now()
    limits.check_pulse(
        prompt=prompt,
        priority=priority,
        scheduled_at=scheduled_at,
        source=source,
        session_id=session_id,
        sticky_notes=sticky_notes,
        tags=tags,
        max_retries=max_retries,
        idempotency_key=idempotency_key,
    )
    if (deliver or "") not in DELIVERY_CHANNELS:
        raise InvalidPulse(f"unknown delivery {deliver!r}; use one of {', '.join(DELIVERY_CHANNELS[1:])}")
    if idempotency_key:
        existing = Pulse.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return ScheduleResult(existing, created=False)
    try:
        with transaction.atomic():
            pulse = Pulse.objects.create(
                prompt=prompt,
                scheduled_at=scheduled_at,
                priority=priority,
                source=source,
                session_id=session_id or "",
                sticky_notes=list(sticky_notes),
                tags=list(tags),
                max_retries=max_retries,
                idempotency_key=idempotency_key or None,
                parent_id=parent_id,
                check_command=check_command or "",
            )
            if deliver:
                chat_id, message_id = reply_to or (None, None)
                Delivery.objects.create(pulse=pulse, chat_id=chat_id, reply_to_message_id=message_id)
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


def retry_delay(attempt: int) -> timedelta:
    """Delay before the retry that follows attempt `attempt` (1, 2, ...): 2^(n-1) minutes, capped."""
    return timedelta(minutes=exponential(attempt, initial=1, cap=settings.PULSE_RETRY_CAP_MINUTES))


def _attempt_values(pulse: Pulse, *, worker: str, outcome: AttemptOutcome, error: str) -> dict[str, object]:
    return {
        "pulse_id": pulse.pk,
        "number": pulse.attempt_count,
        "worker": worker,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration_ms": outcome.duration_ms,
        "exit_code": outcome.exit_code,
        "succeeded": outcome.success,
        "session_id": outcome.session_id,
        "result_text": outcome.result_text,
        "cost_usd": outcome.cost_usd,
        "num_turns": outcome.num_turns,
        "error": error,
        "stdout_tail": outcome.stdout_tail,
        "stderr_tail": outcome.stderr_tail,
    }


def _store_attempt(pulse: Pulse, *, worker: str, outcome: AttemptOutcome, error: str) -> None:
    PulseAttempt.objects.create(**_attempt_values(pulse, worker=worker, outcome=outcome, error=error))


@gated
def record_attempt(pulse: Pulse, *, worker: str, outcome: AttemptOutcome) -> str | None:
    """Store a finished run of a pulse `claim` returned: completed, pending again with backoff, or
    failed for good.

    Returns the pulse's new status, or None when `worker` no longer holds the claim (the lease
    expired and the pulse was recovered), in which case nothing is written: the UPDATE's condition
    is the check, and the attempt's row is written in the same transaction only when it matched.
    """
    changes = pulse.finish_changes(
        success=outcome.success,
        finished_at=outcome.finished_at,
        duration_ms=outcome.duration_ms,
        session_id=outcome.session_id,
        error=outcome.error,
        retry_at=outcome.finished_at + retry_delay(pulse.attempt_count),
    )
    if outcome.skipped:
        changes["skipped"] = True
    status = changes["status"]
    if is_postgres() and status != Status.PENDING:
        # A retry also has to NOTIFY the idle workers in its transaction; the rest need one statement.
        attempt = _attempt_values(pulse, worker=worker, outcome=outcome, error=outcome.error)
        recorded = claims.record_in_one_statement(pulse, worker=worker, changes=changes, attempt=attempt)
    else:
        with transaction.atomic():
            recorded = pulse.finish(worker=worker, changes=changes)
            if recorded:
                _store_attempt(pulse, worker=worker, outcome=outcome, error=outcome.error)
                if status == Status.PENDING:
                    wakeup.announce()
    if not recorded:
        logger.warning("pulse_lease_lost id=%s worker=%s result_discarded", pulse.pk, worker)
        return None
    if outcome.skipped:
        logger.info("pulse_skipped id=%s reason=wake_check_nothing_to_do", pulse.pk)
    elif status == Status.COMPLETED:
        logger.info("pulse_completed id=%s duration_ms=%s", pulse.pk, outcome.duration_ms)
    elif status == Status.PENDING:
        logger.warning(
            "pulse_retry_scheduled id=%s attempt=%s retry_at=%s error=%s",
            pulse.pk,
            pulse.attempt_count,
            changes["scheduled_at"],
            _short(outcome.error),
        )
    else:
        logger.error(
            "pulse_failed id=%s attempts=%s error=%s", pulse.pk, pulse.attempt_count, _short(outcome.error)
        )
    return str(status)


@gated
def release(pulse: Pulse, *, worker: str, outcome: AttemptOutcome) -> bool:
    """Return an interrupted pulse (worker shutdown, or preempted for a critical pulse) to pending
    at once, keeping the session it reached; the run is not counted against its retries."""
    with transaction.atomic():
        if not pulse.release(worker=worker, session_id=outcome.session_id):
            return False
        note = f"{outcome.error or 'interrupted: the worker shut down'}; returned to pending"
        _store_attempt(pulse, worker=worker, outcome=outcome, error=note)
        wakeup.announce()  # a preempted pulse is due again: idle workers may take it
    logger.warning("pulse_released id=%s worker=%s reason=%s", pulse.pk, worker, _short(outcome.error))
    return True


@gated
def record_session(pulse_id: int, *, worker: str, session_id: str) -> None:
    """Store the session id the agent announced while it still runs (so its tools can resume it).

    Not when another running pulse holds that session already (an agent that reused a session it
    was not asked to resume): the database refuses it, and the attempt's record stores it later."""
    try:
        with transaction.atomic():
            Pulse.objects.filter(pk=pulse_id).held_by(worker).update(session_id=session_id)
    except IntegrityError:
        logger.warning("pulse_session_in_use id=%s session=%s not_stored_mid_run", pulse_id, session_id)


@gated
def renew_leases(*, worker: str, pulse_ids: Iterable[int], lease_seconds: float | None = None) -> set[int]:
    """Extend the leases `worker` holds; returns the ids it still holds."""
    ids = list(pulse_ids)
    if not ids:
        return set()
    until = timezone.now() + timedelta(seconds=lease_seconds or settings.PULSE_LEASE_SECONDS)
    with transaction.atomic():
        return Pulse.objects.filter(id__in=ids).renew(worker=worker, until=until)


@gated
def recover_expired_leases(now: datetime | None = None) -> list[int]:
    """Return pulses whose worker stopped renewing to pending (or failed, when out of retries).

    The lost run counts as a failed attempt with an error naming the worker.
    """
    now = now or timezone.now()
    recovered: list[int] = []
    with transaction.atomic():
        stale = Pulse.objects.stale(now)
        if is_postgres():
            stale = stale.select_for_update(skip_locked=True)
        for pulse in stale:
            owner = pulse.lease_owner
            error = (
                f"lease expired: worker {owner} stopped renewing its lease "
                "(killed, crashed or host lost) while the agent ran"
            )
            retry = pulse.expire(now=now, error=error)
            started = pulse.executed_at or now
            _store_attempt(
                pulse,
                worker=owner,
                outcome=AttemptOutcome(success=False, started_at=started, finished_at=now),
                error=error,
            )
            recovered.append(pulse.pk)
            logger.warning(
                "lease_expired id=%s worker=%s now=%s",
                pulse.pk,
                owner,
                "pending" if retry else "failed",
            )
        if recovered:
            wakeup.announce()
    return recovered


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
def revise_prompt(pulse_id: int, prompt: str) -> bool:
    """Give a pulse that has not started yet a new prompt; False once a worker has claimed it."""
    revised = Pulse(pk=pulse_id).revise_prompt(prompt)
    if revised:
        logger.info("pulse_prompt_revised id=%s", pulse_id)
    return revised


@gated
def requeue(pulse_id: int, when: datetime | None = None) -> Pulse:
    """Run a finished (failed, cancelled or completed) pulse again, now or at `when`."""
    pulse = Pulse.objects.get(pk=pulse_id)
    with transaction.atomic():
        _requeue(pulse, when)
        wakeup.announce()
    logger.info("pulse_requeued id=%s", pulse_id)
    return pulse


def _requeue(pulse: Pulse, when: datetime | None) -> None:
    """The requeue transition, and its pulse out of the day it had finished on (history's counts)."""
    finished = (pulse.status, pulse.finished_at)
    pulse.requeue(when)
    history.forget(*finished)


@gated
def report_alive(
    *,
    worker: str,
    host: str,
    pid: int,
    started_at: datetime,
    running: int,
    concurrency: int = 1,
    critical_reserved: int = 0,
) -> None:
    """Record that `worker` is alive and its slots, for `/api/status` and `reeve-status`."""
    WorkerRecord.objects.update_or_create(
        name=worker,
        defaults={
            "host": host,
            "pid": pid,
            "started_at": started_at,
            "last_seen": timezone.now(),
            "running": running,
            "concurrency": concurrency,
            "critical_reserved": critical_reserved,
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
            _requeue(pulse, now)
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
