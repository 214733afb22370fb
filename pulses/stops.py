"""Stopping a running pulse (used through `pulses.queue`): the stored request, the worker's read of the
requests for its runs, and the end of an interrupted run as the request asked.

A stop is a request stored on the pulse (`Pulse.stop_requested_by`, `stop_retry`), in a transaction
that wakes the workers (NOTIFY on PostgreSQL, the WAL write on SQLite), so it works from any process
on any host: the worker holding the claim reads it at its next wake-up (`requested_for`) and stops the
run's process group as a drain does (`Executor.interrupt`). The run's end then reads the request again
(`end_interrupted`): the pulse is cancelled with an attempt naming who stopped it, or with `retry` goes
back to pending without spending an attempt. A run interrupted for another reason (the worker's
drain, a preemption) whose pulse was asked to stop meanwhile ends as the stop asked too.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from django.db import transaction
from django.utils import timezone

from pulses.agent.executor import AttemptOutcome
from pulses.db import wakeup
from pulses.db.write_gate import gated
from pulses.models import Pulse, PulseNotRunning, Status
from pulses.recording import release, store_attempt

logger = logging.getLogger(__name__)


@gated
def request_stop(pulse_id: int, *, by: str, retry: bool = False) -> Pulse:
    """Ask the worker running pulse `pulse_id` to stop it; `by` says who asks ("api token NAME",
    "admin USERNAME", "command", "telegram chat ID", "agent"). With `retry` the pulse goes back to
    pending (no attempt spent), else it ends cancelled. The request is stored: the worker acts on it
    within about a second. Pulse.DoesNotExist when there is none, PulseNotRunning when it is not
    processing."""
    with transaction.atomic():
        stored = Pulse.objects.filter(pk=pulse_id, status=Status.PROCESSING).update(
            stop_requested_by=by[:200], stop_retry=retry
        )
        if stored:
            wakeup.announce()
    pulse = Pulse.objects.get(pk=pulse_id)
    if not stored:
        raise PulseNotRunning(f"pulse {pulse_id} is {pulse.status}; only a running pulse can be stopped")
    logger.warning("pulse_stop_requested id=%s by=%s retry=%s", pulse_id, by, retry)
    return pulse


def requested_for(pulse_ids: set[int], *, worker: str) -> dict[int, str]:
    """The runs among `pulse_ids` that `worker` holds and someone asked to stop: id -> who asked.
    One read by primary key, for a worker's running pulses only."""
    if not pulse_ids:
        return {}
    rows = (
        Pulse.objects.filter(pk__in=pulse_ids)
        .held_by(worker)
        .exclude(stop_requested_by="")
        .values_list("pk", "stop_requested_by")
    )
    return dict(rows)


def stopped_because(who: str) -> str:
    """The error of a stopped run's attempt."""
    return f"stopped by {who}"


@gated
def end_interrupted(pulse: Pulse, *, worker: str, outcome: AttemptOutcome) -> bool:
    """An interrupted run's record: as its stop request asked (cancelled with an attempt naming who
    stopped it, or with `retry` pending again, no attempt spent), or without a request returned to
    pending (`queue.release`: a drain, a preemption). False when `worker` no longer holds it."""
    with transaction.atomic():
        # Read under the row's lock (PostgreSQL; SQLite's write gate serializes anyway): a request
        # stored after this read finds the pulse no longer running, and is refused.
        request = (
            Pulse.objects.select_for_update()
            .filter(pk=pulse.pk)
            .held_by(worker)
            .values_list("stop_requested_by", "stop_retry")
            .first()
        )
        who, retry = request or ("", False)
        if not who:
            return release(pulse, worker=worker, outcome=outcome)
        because = stopped_because(who)
        if retry:
            return release(pulse, worker=worker, outcome=replace(outcome, error=because))
        stopped = pulse.stop(
            worker=worker,
            now=timezone.now(),
            duration_ms=outcome.duration_ms,
            session_id=outcome.session_id,
            error=because,
        )
        if not stopped:
            return False
        store_attempt(pulse, worker=worker, outcome=outcome, error=because)
    logger.warning("pulse_stopped id=%s worker=%s by=%s now=cancelled", pulse.pk, worker, who)
    return True
