"""Quiet hours (TELEGRAM_QUIET_HOURS): inside the daily window, in TIME_ZONE, every message Reeve sends
to Telegram other than a critical one goes out with `disable_notification` (it arrives without a
sound). The one rule every sender asks: answers, queued notifications, `notify`, alerts."""

from __future__ import annotations

from datetime import datetime, time

from django.conf import settings
from django.utils import timezone

CRITICAL = "critical"
SILENT = "silent"


def in_window(moment: time, start: time, end: time) -> bool:
    """Whether the time of day `moment` is in [start, end); a window with end before start crosses
    midnight (22:00-07:00 holds 23:30 and 06:59, not 07:00)."""
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def quiet_now(now: datetime | None = None) -> bool:
    """Whether it is inside the quiet hours now (False without TELEGRAM_QUIET_HOURS)."""
    window = settings.TELEGRAM_QUIET_HOURS
    if not window:
        return False
    local = timezone.localtime(now or timezone.now())
    return in_window(local.time().replace(tzinfo=None), *window)


def silent(priority: str, *, now: datetime | None = None) -> bool:
    """Whether a message of `priority` goes out without a sound: `silent` always, `critical` never,
    any other inside the quiet hours."""
    if priority == SILENT:
        return True
    return priority != CRITICAL and quiet_now(now)
