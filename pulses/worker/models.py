"""The workers' records of themselves: each worker reports it is alive (`queue.report_alive`), and
`/api/status`, the dashboard and `reeve-status` list the ones alive with their slots."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

# A worker that has not reported for this long is taken for gone (`/api/status`, the dashboard).
ALIVE_WITHIN = timedelta(minutes=2)


class WorkerRecordQuerySet(models.QuerySet["WorkerRecord"]):
    def alive(self, now: datetime | None = None) -> WorkerRecordQuerySet:
        """Workers that reported within ALIVE_WITHIN, most recent first."""
        return self.filter(last_seen__gte=(now or timezone.now()) - ALIVE_WITHIN).order_by("-last_seen")


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

    objects = WorkerRecordQuerySet.as_manager()

    class Meta:
        db_table = "pulse_workers"

    def __str__(self) -> str:
        return self.name
