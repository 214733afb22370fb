"""When the listener tries a held-back message again, for both of its outboxes (answers' deliveries in
telegram_bridge/outbox.py, notifications in telegram_bridge/notifications.py): the delay after each
failed try (pulses.backoff's one rule) and how long until the soonest one is due."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from pulses.backoff import exponential

RETRY_CAP_SECONDS = 60.0


def retry_delay(tries: int) -> float:
    """Seconds before a message that failed its `tries`-th try is tried again: 1, 2, 4 … up to the cap."""
    return exponential(tries, initial=1.0, cap=RETRY_CAP_SECONDS)


def seconds_until_due(waiting: QuerySet) -> float | None:
    """Seconds until the soonest of `waiting` held back for a retry (`next_try_at`) is due; None when
    none is."""
    soonest = (
        waiting.filter(next_try_at__isnull=False)
        .order_by("next_try_at")
        .values_list("next_try_at", flat=True)
        .first()
    )
    if soonest is None:
        return None
    return max((soonest - timezone.now()).total_seconds(), 0.0)
