"""Notifications queued through the API (`/api/notify`, the agent's send_notification), sent by the
listener.

The web process never waits for Telegram: `enqueue` writes a row and returns, and the listener's
sender (`answer_sender.py`, beside the answers' outbox) sends it part by part to the configured
chats, noting each part so a restart neither loses nor repeats one. Each API client may queue at
most NOTIFY_BURST notifications a minute and NOTIFY_PER_HOUR an hour, critical ones included: past
either the request is refused with the seconds until one is allowed again (429 + Retry-After), so a
burst of thirty critical notifications is five messages, not thirty. All run tokens share one
allowance ("agent runs"), since each run gets a new token.

`manage.py notify` and the failure alerts are the owner's and the worker's, and still send at once
(`telegram_bridge.notify.send_message`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from pulses.db import is_postgres
from pulses.db.wakeup import announce
from pulses.db.write_gate import gated, write_gate
from telegram_bridge import quiet_hours
from telegram_bridge.models import Notification, NotificationState
from telegram_bridge.notify import split_message
from telegram_bridge.retry_schedule import retry_delay, seconds_until_due

logger = logging.getLogger(__name__)

RUN_TOKENS = "agent runs"  # the one allowance every run token shares
HOLD_SECONDS = 30.0
BATCH = 20
# A notification the listener did not send within a day is closed: it is news no more.
EXPIRE_AFTER = timedelta(days=1)
# Waiting longer than this means no listener is sending (or Telegram is unreachable): say so.
STALE_AFTER = timedelta(minutes=2)


class RateLimited(Exception):
    """The client queued as many notifications as its allowance holds; `retry_after` in seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Queued:
    id: int
    parts: int
    note: str  # empty, or why it may not go out soon (no listener sending)


def client_key(name: str, *, run_token: bool) -> str:
    """Whose allowance a request counts against: all run tokens share one, else the token's name."""
    return RUN_TOKENS if run_token else name


def enqueue(text: str, *, priority: str, client: str, pulse_id: int | None = None) -> Queued:
    """Queue `text` for the listener to send to the configured chats; raises RateLimited past the
    client's allowance."""
    now = timezone.now()
    with write_gate(), transaction.atomic():
        if is_postgres():  # two requests of one client check and insert one after the other
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"reeve-notify:{client}"])
        _check_allowance(client, now)
        row = Notification.objects.create(text=text, priority=priority, client=client, pulse_id=pulse_id)
        announce()
    logger.info("telegram_notification_queued id=%s client=%s priority=%s", row.pk, client, priority)
    return Queued(id=row.pk, parts=len(split_message(text)), note=stale_note(now))


def _check_allowance(client: str, now: datetime) -> None:
    for seconds, cap, name in (
        (60, settings.NOTIFY_BURST, "NOTIFY_BURST, a minute"),
        (3600, settings.NOTIFY_PER_HOUR, "NOTIFY_PER_HOUR, an hour"),
    ):
        recent = list(
            Notification.objects.filter(client=client, created_at__gt=now - timedelta(seconds=seconds))
            .order_by("-created_at")
            .values_list("created_at", flat=True)[: max(cap, 1)]
        )
        if len(recent) >= cap:
            # Allowed again once the cap-th newest leaves the window.
            freed = (
                recent[cap - 1] + timedelta(seconds=seconds) if cap > 0 else now + timedelta(seconds=seconds)
            )
            retry_after = max(math.ceil((freed - now).total_seconds()), 1)
            logger.warning(
                "telegram_notification_refused client=%s cap=%s retry_after_s=%s", client, name, retry_after
            )
            raise RateLimited(
                f"too many notifications: {len(recent)} queued by this token, the most allowed "
                f"({cap}, {name}); try again in {retry_after} s, or put it in your answer",
                retry_after=retry_after,
            )


def stale_note(now: datetime | None = None) -> str:
    """Why queued notifications may not go out soon: one has waited past STALE_AFTER; else ''."""
    oldest = waiting_since()
    now = now or timezone.now()
    if oldest is None or now - oldest < STALE_AFTER:
        return ""
    minutes = int((now - oldest).total_seconds() // 60)
    return (
        f"a notification has waited {minutes} min: is the Telegram listener running "
        "(./reeve start, or the reeve-telegram service)? It sends them."
    )


def waiting_since() -> datetime | None:
    """When the oldest notification still waiting was queued; None when none waits."""
    return (
        Notification.objects.filter(state=NotificationState.WAITING)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )


# --- the listener's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingNotification:
    notification_id: int
    chat_ids: tuple[int, ...]
    parts: tuple[str, ...]
    silent: bool
    parts_sent: int
    tries: int

    @property
    def messages(self) -> list[tuple[int, int, str]]:
        """(index, chat id, text) of every message, chat by chat, the ones already sent included."""
        ordered = [(chat_id, part) for chat_id in self.chat_ids for part in self.parts]
        return [(index, chat_id, part) for index, (chat_id, part) in enumerate(ordered)]


def take_due(*, configured_chats: tuple[int, ...], limit: int = BATCH) -> list[OutgoingNotification]:
    """Hold the waiting notifications that are due (oldest first) and say what each sends."""
    now = timezone.now()
    candidates = list(
        Notification.objects.filter(state=NotificationState.WAITING)
        .exclude(next_try_at__gt=now)
        .order_by("pk")[:limit]
    )
    taken: list[OutgoingNotification] = []
    for row in candidates:
        with write_gate(), transaction.atomic():
            # Conditional on what was read: another listener that took it meanwhile wins.
            held = (
                Notification.objects.filter(pk=row.pk, state=NotificationState.WAITING, tries=row.tries)
                .exclude(next_try_at__gt=now)
                .update(next_try_at=now + timedelta(seconds=HOLD_SECONDS), tries=F("tries") + 1)
            )
        if not held:
            continue
        if now - row.created_at > EXPIRE_AFTER or not configured_chats:
            why = "no chat is configured" if not configured_chats else "not sent within a day"
            finish(row.pk, state=NotificationState.FAILED, detail=why)
            continue
        taken.append(
            OutgoingNotification(
                notification_id=row.pk,
                chat_ids=configured_chats,
                parts=tuple(split_message(row.text)),
                silent=quiet_hours.silent(row.priority, now=now),
                parts_sent=row.parts_sent,
                tries=row.tries + 1,
            )
        )
    return taken


@gated
def part_sent(notification_id: int, *, sent: int) -> None:
    """`sent` messages have gone out; the hold is renewed for the next one."""
    Notification.objects.filter(pk=notification_id, state=NotificationState.WAITING).update(
        parts_sent=sent, next_try_at=timezone.now() + timedelta(seconds=HOLD_SECONDS)
    )


@gated
def finish(notification_id: int, *, state: str, detail: str = "") -> None:
    """Close a notification: sent, or failed (with why)."""
    Notification.objects.filter(pk=notification_id, state=NotificationState.WAITING).update(
        state=state, detail=detail[:2000], finished_at=timezone.now(), next_try_at=None
    )
    log = logger.warning if state == NotificationState.FAILED else logger.info
    log("telegram_notification_%s id=%s%s", state, notification_id, f" reason={detail}" if detail else "")


@gated
def retry_later(outgoing: OutgoingNotification, *, error: str) -> float:
    """Telegram could not be reached: try again after a delay growing with each try; the delay."""
    delay = retry_delay(outgoing.tries)
    Notification.objects.filter(pk=outgoing.notification_id, state=NotificationState.WAITING).update(
        next_try_at=timezone.now() + timedelta(seconds=delay), detail=error[:2000]
    )
    logger.warning(
        "telegram_notification_retry id=%s try=%s retry_in_s=%s error=%s",
        outgoing.notification_id,
        outgoing.tries,
        delay,
        error,
    )
    return delay


def seconds_until_next() -> float | None:
    """Seconds until the soonest notification held back for a retry is due; None when none is."""
    return seconds_until_due(Notification.objects.filter(state=NotificationState.WAITING))
