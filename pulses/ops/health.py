"""The one definition of healthy (issue 31): what `manage.py health`, `reeve-health-check`,
`reeve-status`, `doctor`, the dashboard and `/metrics` (`reeve_healthy`, `reeve_oldest_overdue_seconds`)
all judge by. `/api/health` is not one of them: it is a liveness probe of the web process alone.

Healthy means:
- no pulse due for more than PULSE_OVERDUE_ALERT_MINUTES (a live worker while pulses are due);
- the worker's loop reporting: a worker is alive while it reports (`alive_within`), so a killed
  worker, or one whose loop hangs (SIGSTOP), counts as dead;
- the Telegram listener polling, when Telegram is configured (`ListenerRecord`);
- the outbox not stuck: no finished pulse's answer waiting longer than the same threshold;
- the agent able to run (no queue-wide hold, `queue.agent_hold_state()`, and its setup usable).

While the queue is paused (`pulses.queue_pause`) overdue pulses wait on purpose: that is a note
("paused"), not ill health.

`watch` turns a judgement into at most one Telegram alert per incident and one on recovery.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pulses.db.write_gate import gated, write_gate
from pulses.models import (
    Delivery,
    DeliveryState,
    HealthIncident,
    ListenerRecord,
    Pulse,
    WorkerRecord,
    alive_within,
)

logger = logging.getLogger(__name__)


def overdue_after() -> timedelta:
    return timedelta(minutes=settings.PULSE_OVERDUE_ALERT_MINUTES)


def listener_alive_within() -> timedelta:
    """A listener reports at each pass of its loop, which waits up to one long poll (30 s) for Telegram:
    it may stay silent for that long poll and its reports' allowance on top."""
    return alive_within() + timedelta(seconds=60)


def telegram_configured() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID)


@dataclass
class Health:
    problems: list[str] = field(default_factory=list)  # each makes it unhealthy, one line each
    notes: list[str] = field(default_factory=list)  # worth knowing, not unhealthy
    workers_alive: int = 0
    oldest_overdue_seconds: float = 0.0  # how long the oldest due pulse has waited (0: none due)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        return "; ".join(self.notes) or "healthy"


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def _budget_holds(pulse: Pulse, now: datetime) -> datetime | None:
    """When a reached spend cap (pulses/budget.py) lets `pulse` run, if one holds it: it waits on
    purpose, which is not ill health."""
    if settings.PULSE_DAILY_BUDGET_USD is None and settings.PULSE_MONTHLY_BUDGET_USD is None:
        return None
    from pulses import budget

    if pulse.priority == "critical" and not settings.PULSE_BUDGET_HOLDS_CRITICAL:
        return None
    return budget.status(now).resumes_at


def _paused(now: datetime) -> str:
    """The pause, in words, while the queue is paused ("" otherwise)."""
    from pulses import queue

    return queue.queue_pause_state(now).summary()


def _pending_due(now: datetime) -> int:
    return Pulse.objects.due(now).count()


def assess(*, now: datetime | None = None, agent: bool = True) -> Health:
    """Judge the installation now. `agent=False` leaves the agent out (doctor checks it itself)."""
    now = now or timezone.now()
    health = Health()
    workers = list(WorkerRecord.objects.alive(now))
    health.workers_alive = len(workers)
    oldest = Pulse.objects.due(now).order_by("scheduled_at").first()
    if paused := _paused(now):
        waiting = f"; {_pending_due(now)} pulse(s) due wait for the resume" if oldest is not None else ""
        health.notes.append(f"paused: {paused}{waiting}")
    if oldest is not None:
        waited = now - oldest.scheduled_at
        health.oldest_overdue_seconds = max(waited.total_seconds(), 0.0)
        late = waited > overdue_after() and not paused  # while paused they wait on purpose (the note)
        if late and (until := _budget_holds(oldest, now)):
            health.notes.append(f"pulse #{oldest.pk} waits for the spend cap until {until:%Y-%m-%d %H:%M}")
        elif late:
            why = (
                "no worker is running (start it: sudo systemctl start reeve-daemon, or ./reeve start)"
                if not workers
                else f"{len(workers)} worker(s) alive but not taking it"
            )
            health.problems.append(f"pulse #{oldest.pk} overdue by {_minutes(waited)}: {why}")
    if not workers and not health.problems:
        health.notes.append("no worker running")
    if telegram_configured():
        since = now - listener_alive_within()
        if not ListenerRecord.objects.filter(last_seen__gte=since, stopped_at__isnull=True).exists():
            health.problems.append(
                "the Telegram listener is not polling (start it: sudo systemctl start reeve-telegram, "
                "or ./reeve run_telegram_listener)"
            )
    stuck = (
        Delivery.objects.filter(state=DeliveryState.WAITING, pulse__finished_at__lte=now - overdue_after())
        .order_by("pulse__finished_at")
        .select_related("pulse")
        .first()
    )
    if stuck is not None:
        health.problems.append(
            f"the answer of pulse #{stuck.pulse_id} has waited {_minutes(now - stuck.pulse.finished_at)} "
            "in the outbox: is the Telegram listener running?"
        )
    if agent:
        from pulses import queue
        from pulses.agent.check import setup_problem

        if problem := setup_problem() or queue.agent_hold_state().summary():
            health.problems.append(f"no pulse runs: {problem}")
    return health


def watch(health: Health) -> str:
    """Open an incident (and send its one alert) when health turns bad, close it (and send the one
    recovery message) when it is good again; nothing in between. Returns what it did: "alerted",
    "recovered" or ""."""
    from telegram_bridge import alerts

    with write_gate(), transaction.atomic():
        open_incident = HealthIncident.objects.select_for_update().filter(closed_at__isnull=True).first()
        if not health.healthy and open_incident is None:
            incident = HealthIncident.objects.create(problems="\n".join(health.problems))
            action = "alerted"
        elif health.healthy and open_incident is not None:
            open_incident.closed_at = timezone.now()
            open_incident.save(update_fields=["closed_at"])
            incident = open_incident
            action = "recovered"
        else:
            return ""
    logger.warning("health_%s incident=%s problems=%s", action, incident.pk, health.summary())
    if action == "alerted":
        alerts.alert_unhealthy(incident.pk, host=socket.gethostname())
    else:
        alerts.alert_recovered(incident.pk, host=socket.gethostname())
    return action


@gated
def report_listener(*, stopped: bool = False, started_at: datetime) -> None:
    """The Telegram listener's report that it polls (or, with `stopped`, that it stopped cleanly)."""
    now = timezone.now()
    host = socket.gethostname()
    ListenerRecord.objects.update_or_create(
        name=f"{host}:{os.getpid()}",
        defaults={
            "host": host,
            "pid": os.getpid(),
            "started_at": started_at,
            "last_seen": now,
            "stopped_at": now if stopped else None,
        },
    )
