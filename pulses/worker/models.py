"""The processes' records of themselves: each worker reports it is alive (`queue.report_alive`), and
`/api/status`, the dashboard and `reeve-status` list the ones alive with their slots; the Telegram
listener reports that it polls (`ListenerRecord`); the watchdog's open incident (`HealthIncident`,
pulses/ops/health.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# The least time a worker may stay silent before it is taken for gone (see `alive_within`).
ALIVE_WITHIN = timedelta(seconds=3)


def alive_within() -> timedelta:
    """How long a worker may stay silent and still count as alive: three of its reports
    (PULSE_HEARTBEAT_SECONDS, 10 s: 30 s), at least 3 s. A worker whose loop hangs (SIGSTOP, a deadlock) stops
    reporting and counts as gone after it, as a killed one does; one that stopped cleanly at once."""
    return max(timedelta(seconds=3 * settings.PULSE_HEARTBEAT_SECONDS), ALIVE_WITHIN)


class WorkerRecordQuerySet(models.QuerySet["WorkerRecord"]):
    def alive(self, now: datetime | None = None) -> WorkerRecordQuerySet:
        """Workers that reported within `alive_within()` and did not say they stopped, most recent first."""
        since = (now or timezone.now()) - alive_within()
        return self.filter(last_seen__gte=since, stopped_at__isnull=True).order_by("-last_seen")


class WorkerRecord(models.Model):
    """A worker process that has reported it is alive; `/api/status` lists the recent ones."""

    name = models.CharField(max_length=200, unique=True)  # host:pid
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    running = models.IntegerField(default=0)
    # Its slots: PULSE_MAX_CONCURRENT ordinary ones and PULSE_CRITICAL_RESERVED for critical pulses.
    concurrency = models.IntegerField(default=1)
    critical_reserved = models.IntegerField(default=0)
    # Set by its last report when it stopped cleanly (cleared when a worker of that name reports again).
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = WorkerRecordQuerySet.as_manager()

    class Meta:
        db_table = "pulse_workers"

    def __str__(self) -> str:
        return self.name


class ListenerRecord(models.Model):
    """A Telegram listener that reports, at each pass of its getUpdates loop, that it polls
    (`telegram_bridge/poller.py`); the watchdog takes it for gone after `listener_alive_within()`."""

    name = models.CharField(max_length=200, unique=True)  # host:pid
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pulse_listeners"

    def __str__(self) -> str:
        return self.name


class HealthIncident(models.Model):
    """One stretch of ill health the watchdog (`manage.py health --alert`) alerted on: opened with the
    one alert, closed with the one recovery message. At most one is open (`closed_at` null)."""

    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    problems = models.TextField(help_text="what was wrong when it opened, one line each")

    class Meta:
        db_table = "pulse_health_incidents"

    def __str__(self) -> str:
        return f"incident #{self.pk} from {self.opened_at:%Y-%m-%d %H:%M}"
