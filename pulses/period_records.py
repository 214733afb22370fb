"""Rows kept per period of time rather than per pulse: the pulses finished on each UTC day
(`pulses.history`'s sealed counts) and the spend caps reached in each day or month (`pulses.budget`'s
alerts). Models of the `pulses` app, registered through pulses/models.py, which re-exports them."""

from __future__ import annotations

from django.db import models


class FinishedDay(models.Model):
    """How many pulses finished on one UTC day, by final status: the sealed past of the queue's
    counts (`pulses.history`), so counting a year of history reads a row per day, not a row per pulse."""

    day = models.DateField(primary_key=True)
    completed = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)

    class Meta:
        db_table = "pulse_finished_days"
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day}: {self.completed} completed, {self.failed} failed, {self.cancelled} cancelled"


class BudgetCapReached(models.Model):
    """A spend cap reached in one period (`pulses.budget`): one row per cap and period, written by the
    first worker that sees it, so the alert goes out once however many workers share the queue."""

    period = models.CharField(max_length=10)  # "day" or "month"
    starts_at = models.DateTimeField()  # when the period began, in TIME_ZONE
    cap_usd = models.DecimalField(max_digits=12, decimal_places=4)
    spent_usd = models.FloatField()
    reached_at = models.DateTimeField()

    class Meta:
        db_table = "pulse_budget_caps_reached"
        ordering = ["reached_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["period", "starts_at"], name="budget_cap_reached_once"),
        ]

    def __str__(self) -> str:
        return f"{self.period} cap {self.cap_usd} USD reached at {self.reached_at}"
