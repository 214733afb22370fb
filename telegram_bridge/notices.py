"""Tell a chat that its message waits for the agent's run in progress.

A session runs one pulse at a time, so a Telegram message that resumes the chat's session waits for
the run before it. Registered in settings.PULSE_WAITING_HOOKS: the worker running that session calls
it with the waiting pulse's id once the wait passes PULSE_BUSY_NOTICE_SECONDS. The chat hears it once
per run it waits for: the notice is claimed by a unique row committed before the message is sent,
so no transaction is open during the HTTP call and two workers never both send it.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from pulses.models import Pulse, Status
from telegram_bridge.models import BusyNotice, TelegramMessage

logger = logging.getLogger(__name__)

STILL_WORKING = "⏳ Still working on your previous message; I'll get to this one as soon as it's done."


def tell_still_working(pulse_id: int) -> None:
    """Tell the chat a Telegram pulse came from that it waits for its session's running pulse; nothing
    for other pulses, when the run ended meanwhile, or when the chat was told during this run.
    Never raises for Telegram trouble."""
    # Imported here, as the failure alerts do: a worker that never sends pays nothing for them.
    from telegram_bridge.client import TelegramConfig, TelegramNotConfigured
    from telegram_bridge.notify import NotificationFailed, send_message

    chat_id = TelegramMessage.objects.filter(pulse_id=pulse_id).values_list("chat_id", flat=True).first()
    waiting = Pulse.objects.filter(pk=pulse_id, status=Status.PENDING).exclude(session_id="").first()
    if chat_id is None or waiting is None:
        return
    busy_id = (
        Pulse.objects.filter(status=Status.PROCESSING, session_id=waiting.session_id)
        .values_list("pk", flat=True)
        .first()
    )
    if busy_id is None:
        return
    try:
        if not TelegramConfig.from_settings().is_configured:
            return
    except TelegramNotConfigured as exc:
        logger.warning("telegram_busy_notice_skipped id=%s reason=%s", pulse_id, exc)
        return
    try:
        with transaction.atomic():  # a savepoint: the refusal below leaves any outer transaction usable
            BusyNotice.objects.create(
                chat_id=chat_id, busy_pulse_id=busy_id, waiting_pulse_id=pulse_id, sent_at=timezone.now()
            )
    except IntegrityError:
        logger.info("telegram_busy_notice_suppressed id=%s chat_id=%s busy=%s", pulse_id, chat_id, busy_id)
        return
    try:
        send_message(STILL_WORKING, chat_ids=[chat_id], priority=waiting.priority)
    except (NotificationFailed, TelegramNotConfigured) as exc:
        logger.error("telegram_busy_notice_failed id=%s chat_id=%s error=%s", pulse_id, chat_id, exc)
        return
    logger.info("telegram_busy_notice_sent id=%s chat_id=%s busy=%s", pulse_id, chat_id, busy_id)
