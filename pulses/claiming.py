"""Claiming: leasing due pulses to a worker, and what a worker asks about the pulses it could claim.

A claim is one `UPDATE … RETURNING` statement (`pulses.db.claims`): on SQLite inside BEGIN IMMEDIATE
(see settings), so claims are serialised between processes; on PostgreSQL in its own transaction, its
rows picked with FOR UPDATE SKIP LOCKED so concurrent workers pass each other by, and a unique index
keeping each agent session to one running pulse. When that index refuses a batch, the claim goes
session by session. Callers use it through `pulses.queue`.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from pulses.db import claims, is_postgres
from pulses.db.compiled import FirstValue
from pulses.db.write_gate import gated
from pulses.models import Priority, Pulse, PulseQuerySet, Status

logger = logging.getLogger(__name__)

CLAIM_TRIES = 3


@gated
def claim(
    *, worker: str, limit: int, lease_seconds: float | None = None, critical_only: bool = False
) -> list[Pulse]:
    """Lease up to `limit` due pulses to `worker`, highest priority then oldest first (only
    `critical` ones with `critical_only`: a worker's reserved slots).

    A pulse whose session is already running (here or on another worker) is left for later, and
    one batch never holds two pulses of one session, so a session's pulses run one at a time.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds or settings.PULSE_LEASE_SECONDS)
    claimed: list[Pulse] = []
    for _ in range(CLAIM_TRIES):  # a try the database refused is repeated from a fresh snapshot
        result = _claim_in_one_statement(worker, limit, now, until, critical_only=critical_only)
        if result is None:
            result = _claim_session_by_session(worker, limit, now, until, critical_only=critical_only)
        if result is not None:
            claimed = result
            break
    for pulse in claimed:
        logger.info(
            "pulse_claimed id=%s priority=%s attempt=%s worker=%s",
            pulse.pk,
            pulse.priority,
            pulse.attempt_count,
            worker,
        )
    return claimed


def _claim_in_one_statement(
    worker: str, limit: int, now: datetime, until: datetime, *, critical_only: bool
) -> list[Pulse] | None:
    """The claim as one UPDATE … RETURNING: on PostgreSQL a single round trip in its own transaction.

    Sessions are kept apart by the database: the unique index `pulses_one_running_per_session`
    refuses a second running pulse of a session, whether this batch picked two or another worker
    claimed one after our snapshot (PostgreSQL waits for that claim to commit, then refuses). Then
    nothing is claimed and None tells the caller to go session by session instead. None too on an
    SQLite older than 3.35, which has no RETURNING.
    """
    if not claims.returning_supported():
        return None
    sql, params = claims.claim_statement(worker, limit, now, until, critical_only=critical_only)
    # In autocommit a lone statement is its own transaction; SQLite's still goes through atomic() for
    # BEGIN IMMEDIATE, and inside an outer transaction a savepoint keeps a refusal from spoiling it.
    own_transaction = is_postgres() and not connection.in_atomic_block
    try:
        with nullcontext() if own_transaction else transaction.atomic():
            claimed = list(Pulse.objects.raw(sql, params))
    except IntegrityError:
        return None
    claimed.sort(key=lambda pulse: (pulse.priority_rank, pulse.scheduled_at, pulse.pk))
    return claimed


def _claim_session_by_session(
    worker: str, limit: int, now: datetime, until: datetime, *, critical_only: bool
) -> list[Pulse] | None:
    """The claim when pulses of one session compete: candidates are locked, at most one pulse per
    session is taken, and each session is checked free under a lock of its own. None when the
    database still refused (a one-statement claim elsewhere took the session meanwhile)."""
    try:
        return _claim_one_per_session(worker, limit, now, until, critical_only=critical_only)
    except IntegrityError:
        return None


def _claim_one_per_session(
    worker: str, limit: int, now: datetime, until: datetime, *, critical_only: bool
) -> list[Pulse]:
    busy_sessions = Pulse.objects.filter(status=Status.PROCESSING).exclude(session_id="").values("session_id")
    due = Pulse.objects.due(now)
    if critical_only:
        due = due.filter(priority=Priority.CRITICAL)
    with transaction.atomic():
        candidates = due.exclude(Q(session_id__in=busy_sessions) & ~Q(session_id="")).values_list(
            "id", "session_id"
        )
        if is_postgres():
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        chosen: list[int] = []
        sessions: set[str] = set()
        for pulse_id, session_id in candidates[: limit * 2 + 8]:
            if session_id and (session_id in sessions or not claims.session_free(session_id)):
                continue
            if session_id:
                sessions.add(session_id)
            chosen.append(pulse_id)
            if len(chosen) == limit:
                break
        if not chosen:
            return []
        Pulse.objects.filter(id__in=chosen).claim(worker=worker, now=now, until=until)
        return list(Pulse.objects.filter(id__in=chosen, lease_owner=worker).in_run_order())


@dataclass(frozen=True)
class Claim:
    """Who holds a pulse's running claim, and the nonce that claim stored."""

    worker: str
    nonce: str


def claim_holder(pulse_id: int, *, attempt: int) -> Claim | None:
    """The claim `attempt` of the pulse while it still holds (running, lease not expired), else None."""
    row = (
        Pulse.objects.filter(
            pk=pulse_id, status=Status.PROCESSING, attempt_count=attempt, lease_expires_at__gt=timezone.now()
        )
        .values_list("lease_owner", "claim_nonce")
        .first()
    )
    return Claim(worker=row[0], nonce=row[1]) if row else None


_next_due_at = FirstValue(
    lambda: Pulse.objects.pending().order_by("scheduled_at").values_list("scheduled_at", flat=True)
)


def next_due_at() -> datetime | None:
    """When the soonest pending pulse is due (None when nothing is pending). The worker asks at every
    pass of its loop that claimed nothing, so the query is compiled once (pulses.db.compiled)."""
    return _next_due_at()


def _busy_sessions(running: PulseQuerySet) -> PulseQuerySet:
    return running.exclude(session_id="").values("session_id")


def critical_waiting_for_a_slot() -> int | None:
    """The first due critical pulse that a free slot would start now (its session is not running),
    else None: what a worker whose slots are all busy may preempt a run for."""
    return claims.first_claimable(timezone.now(), critical_only=True)


def waiting_for_sessions_of(worker: str) -> list[tuple[int, datetime]]:
    """Due critical pulses held back because a run of `worker` holds their session: (id, due since)."""
    due = Pulse.objects.due().filter(priority=Priority.CRITICAL)
    return list(
        due.filter(session_id__in=_busy_sessions(Pulse.objects.held_by(worker))).values_list(
            "pk", "scheduled_at"
        )
    )
