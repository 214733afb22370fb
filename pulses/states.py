"""A pulse's priorities and states, apart from the models so that modules the models import
(`pulses.routines.models`) can name them without an import cycle; `pulses.models` re-exports them."""

from __future__ import annotations

from django.db import models


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
