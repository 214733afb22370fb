"""The one entry point every caller uses to change the pulse queue (reading it: `pulses.reports`).

The transitions themselves are `pulses.models`'; this module chooses the transaction around each, the
wake-up of idle workers, the attempt's row and the log line. The claim lives in `pulses.claiming`, what
a worker writes back (a run's record, its release, leases, liveness) in `pulses.recording`, a stop of
a running pulse (its request, the worker's read, the stopped run's end) in `pulses.stops`; all are used
through this module. No transaction is ever held while an agent runs: the worker commits the
claim, runs the agent, then reports back here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from pulses import agent_hold, history, limits, queue_pause
from pulses.agent.executor import AttemptOutcome
from pulses.claiming import (
    claim,
    claim_holder,
    critical_waiting_for_a_slot,
    next_due_at,
    waiting_for_sessions_of,
)
from pulses.db import wakeup
from pulses.db.write_gate import gated
from pulses.limits import InvalidPulse
from pulses.models import (
    Delivery,
    Priority,
    Pulse,
    PulseNotPending,
    PulseNotRunning,
    Status,
)
from pulses.recording import (
    hold_for_agent,
    mark_preempted,
    record_attempt,
    record_session,
    recover_dead_workers,
    recover_expired_leases,
    release,
    renew_leases,
    report_alive,
    retry_delay,
)
from pulses.stops import end_interrupted, request_stop
from pulses.stops import requested_for as stop_requests_for

logger = logging.getLogger(__name__)

# Where a pulse's answer may be sent when it finishes ("" keeps it in the queue only).
DELIVERY_CHANNELS = ("", "telegram")

__all__ = [
    "AttemptOutcome",
    "InvalidPulse",
    "PulseNotPending",
    "PulseNotRunning",
    "ScheduleResult",
    "cancel",
    "end_interrupted",
    "request_stop",
    "stop_requests_for",
    "claim",
    "claim_holder",
    "critical_waiting_for_a_slot",
    "mark_preempted",
    "report_alive",
    "record_attempt",
    "record_session",
    "recover_dead_workers",
    "recover_expired_leases",
    "release",
    "renew_leases",
    "requeue",
    "reschedule",
    "retry_delay",
    "duplicate",
    "agent_hold_recheck_at",
    "agent_hold_state",
    "agent_ready",
    "hold_for_agent",
    "take_agent_probe",
    "warn_agent_usage",
    "next_due_at",
    "pause",
    "queue_pause_state",
    "resume",
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
    model: str = "",
    timeout_seconds: int | None = None,
    max_turns: int | None = None,
) -> ScheduleResult:
    """Create a pulse; a repeated idempotency key returns the first pulse instead (created=False).

    InvalidPulse when it breaks a limit of `pulses.limits` (the callers' own checks say it first).

    `deliver="telegram"` sends the agent's answer to Telegram when the pulse finishes: as a reply to
    `reply_to` (chat id, message id), else to the configured chat. The outbox row is written in the
    pulse's transaction, so the request cannot be lost.

    `model`, `timeout_seconds` and `max_turns` are how the agent runs it (pulses.limits bounds them;
    empty or None: AGENT_MODEL, PULSE_TIMEOUT_SECONDS, the agent's own turn limit)."""
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
        model=model,
        timeout_seconds=timeout_seconds,
        max_turns=max_turns,
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
                model=model or "",
                timeout_seconds=timeout_seconds,
                max_turns=max_turns,
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


# The queue-wide hold while the agent cannot run (pulses.agent_hold).
agent_hold_state = agent_hold.state
agent_hold_recheck_at = agent_hold.recheck_at
take_agent_probe = agent_hold.take_probe
warn_agent_usage = agent_hold.warn


def agent_ready(*, by: str, ran_from: datetime | None = None, notify: bool = True) -> bool:
    """The agent ran (a pulse that started at `ran_from`, `agent_probe`, `doctor`): end the hold, if
    one stands (a run older than the hold proves nothing), and wake the workers; with `notify` the
    person is told here and now (AGENT_RESUMED_HOOKS). True when this call ended a hold."""
    ended = agent_hold.end(by=by, ran_from=ran_from)
    if ended is not None and notify:
        agent_hold.run_resumed_hooks(ended.pk)
    return ended is not None


# The queue's pause switch (pulses.queue_pause): no claims while it is on.
queue_pause_state = queue_pause.state
claims_paused = queue_pause.claims_paused
InvalidPause = queue_pause.InvalidPause


def pause(*, by: str, until: datetime | None = None, reason: str = "") -> queue_pause.PauseState:
    """Pause the queue until `until` (None: until a resume); `by` says who (`api token NAME`, `admin
    USERNAME`, `command`). InvalidPause for an end that has passed."""
    return queue_pause.pause(by=by, until=until, reason=reason)


def resume(*, by: str) -> queue_pause.Resumed | None:
    """Resume the queue (the routines' catch-up rule applies to what fired meanwhile); None when it was
    not paused."""
    return queue_pause.resume(by=by)


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
    """Give a pulse that has not started yet a new prompt; False once a worker has claimed it.
    InvalidPulse when the prompt, with the pulse's sticky notes, breaks a limit of `pulses.limits`."""
    limits.check_prompt(prompt)
    notes = Pulse.objects.filter(pk=pulse_id).values_list("sticky_notes", flat=True).first()
    limits.check_prompt_bytes(prompt, notes or ())
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
    """A new pending pulse with the same prompt, priority, session, notes, tags and agent options (its
    parent is the original), due now or at `scheduled_at`."""
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
        model=original.model,
        timeout_seconds=original.timeout_seconds,
        max_turns=original.max_turns,
    ).pulse
    logger.info("pulse_duplicated id=%s copy=%s", pulse_id, copy.pk)
    return copy
