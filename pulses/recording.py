"""What a worker writes back through the queue (`pulses.queue` re-exports all of it): a finished run's
record (completed, a retry with backoff, or failed for good) with its attempt row, an interrupted
run's release, the session an agent announced mid-run, lease renewal, the recovery of leases whose
worker died, and the worker's report that it is alive.

A run's result is written only while its claim still holds (`Pulse.claimed_by`), and on PostgreSQL in
one statement (`pulses.db.claims`). No transaction is ever held while an agent runs.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pulses import agent_hold
from pulses.agent.executor import AttemptOutcome
from pulses.backoff import exponential
from pulses.db import claims, is_postgres, wakeup
from pulses.db.write_gate import gated
from pulses.models import Pulse, PulseAttempt, Status, WorkerRecord

logger = logging.getLogger(__name__)


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


def store_attempt(pulse: Pulse, *, worker: str, outcome: AttemptOutcome, error: str) -> None:
    """The attempt row of this claim's run (`pulse.attempt_count` is its number)."""
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
                store_attempt(pulse, worker=worker, outcome=outcome, error=outcome.error)
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
        store_attempt(pulse, worker=worker, outcome=outcome, error=note)
        wakeup.announce()  # a preempted pulse is due again: idle workers may take it
    logger.warning("pulse_released id=%s worker=%s reason=%s", pulse.pk, worker, _short(outcome.error))
    return True


@gated
def hold_for_agent(pulse: Pulse, *, worker: str, outcome: AttemptOutcome) -> tuple[bool, bool]:
    """A run that found the agent unable to run (`outcome.unavailable`): the pulse is pending again
    with no attempt spent (its attempt row says why), and the queue-wide hold starts or extends.
    (released, whether this call started the hold: then the person is told)."""
    unavailable = outcome.unavailable
    assert unavailable is not None  # noqa: S101 - the caller's condition
    with transaction.atomic():
        released = pulse.release(worker=worker, session_id=outcome.session_id)
        if released:
            note = (
                f"the agent cannot run now ({unavailable.reason}): {unavailable.problem}; "
                f"returned to pending, no attempt spent. {outcome.error}"
            ).strip()
            store_attempt(pulse, worker=worker, outcome=outcome, error=note)
        started = agent_hold.hold(unavailable, now=outcome.finished_at)
    logger.warning(
        "pulse_held id=%s worker=%s reason=%s released=%s", pulse.pk, worker, unavailable.reason, released
    )
    return released, started


def mark_preempted(pulse_id: int, *, worker: str) -> bool:
    """Record that the run `worker` holds of pulse `pulse_id` is being interrupted for a critical
    pulse, before it is: a pulse is preempted at most once (until it is requeued), whichever worker
    runs it next. False when `worker` no longer holds it (then it is not interrupted)."""
    return bool(Pulse.objects.filter(pk=pulse_id).held_by(worker).update(preempted=True))


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
def recover_expired_leases(now: datetime | None = None, *, sparing: Collection[int] = ()) -> list[int]:
    """Return pulses whose worker stopped renewing to pending (or failed, when out of retries).

    The lost run counts as a failed attempt with an error naming the worker. `sparing`: the pulses
    the calling worker is running right now. Its own renewal may have come late (a starved process, a
    long write elsewhere holding SQLite's lock), but it knows they run: recovering them would start a
    second run beside the first; its next renewal extends them instead.
    """
    now = now or timezone.now()
    recovered: list[int] = []
    with transaction.atomic():
        stale = Pulse.objects.stale(now).exclude(pk__in=list(sparing))
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
            store_attempt(
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
def recover_dead_workers(workers: list[str], now: datetime | None = None) -> list[int]:
    """Return the pulses that `workers` (host:pid names proven dead: the instance lock they held was
    free) were running to pending at once (or failed, when out of retries), without waiting for their
    leases. The interrupted run still counts as an attempt, so a pulse that kills its worker every
    time ends failed after max_retries; its attempt row says it was interrupted. Only the claims of
    exactly these workers: live workers elsewhere sharing the queue keep theirs."""
    if not workers:
        return []
    now = now or timezone.now()
    recovered: list[int] = []
    with transaction.atomic():
        held = Pulse.objects.filter(status=Status.PROCESSING, lease_owner__in=workers)
        if is_postgres():
            held = held.select_for_update(skip_locked=True)
        for pulse in held:
            owner = pulse.lease_owner
            error = (
                f"interrupted: worker {owner} died (killed or crashed) while the agent ran; "
                "recovered when the next start took its instance lock"
            )
            if not pulse.interrupt(worker=owner, now=now, error=error):
                continue
            store_attempt(
                pulse,
                worker=owner,
                outcome=AttemptOutcome(success=False, started_at=pulse.executed_at or now, finished_at=now),
                error=error,
            )
            recovered.append(pulse.pk)
            logger.warning("pulse_interrupted id=%s worker=%s now=%s", pulse.pk, owner, pulse.status)
        if recovered:
            wakeup.announce()
    return recovered


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
    stopped: bool = False,
) -> None:
    """Record that `worker` is alive and its slots, for `/api/status` and `reeve-status`; with
    `stopped` (its last report, on a clean stop) that it is gone, shown stopped everywhere at once."""
    now = timezone.now()
    WorkerRecord.objects.update_or_create(
        name=worker,
        defaults={
            "host": host,
            "pid": pid,
            "started_at": started_at,
            "last_seen": now,
            "running": running,
            "concurrency": concurrency,
            "critical_reserved": critical_reserved,
            "stopped_at": now if stopped else None,
        },
    )


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
