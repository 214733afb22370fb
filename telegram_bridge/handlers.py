"""An incoming Telegram message becomes a pulse: the bridge's one database operation.

Synchronous and free of python-telegram-bot types, so the poller calls it from a thread and tests
call it directly. Applying one update is one transaction: the pulse (keyed by the update id) and the
chat's conversation state commit together, so a redelivered update changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from django.db import transaction

from pulses import queue
from pulses.models import Priority, Pulse
from telegram_bridge.models import TelegramChat

logger = logging.getLogger(__name__)

PULSE_SOURCE = "telegram"
PULSE_TAGS = ("telegram", "user_message")
NEW_CONVERSATION_COMMAND = "/new"
NEW_CONVERSATION_REPLY = "🆕 Starting a fresh conversation: your next message opens a new agent session."


@dataclass(frozen=True)
class IncomingMessage:
    update_id: int
    chat_id: int
    message_id: int
    sender: str
    text: str
    chat_title: str = ""


class Action(StrEnum):
    PULSE = "pulse"  # a new pulse was scheduled
    DUPLICATE = "duplicate"  # the update was applied before (redelivered after a crash)
    NEW_CONVERSATION = "new_conversation"  # `/new` alone: the chat's next message starts afresh


@dataclass(frozen=True)
class Handled:
    action: Action
    pulse_id: int | None = None
    session_id: str = ""
    reply: str = ""


def idempotency_key(*, bot_id: int, update_id: int) -> str:
    """The pulse key for one update: update ids are unique per bot, so the bot id is part of it."""
    return f"telegram:{bot_id}:{update_id}"


def prompt_for(message: IncomingMessage, text: str) -> str:
    return f"Telegram message from {message.sender}: {text}"


def split_command(text: str) -> tuple[str, str]:
    """`/new@reeve_bot hello` -> ("/new", "hello"); plain text -> ("", text)."""
    if not text.startswith("/"):
        return "", text
    head, *rest = text.split(maxsplit=1)
    return head.split("@", 1)[0].lower(), rest[0].strip() if rest else ""


def _applied(chat: TelegramChat, message: IncomingMessage, *, bot_id: int) -> None:
    chat.bot_id = bot_id
    chat.last_update_id = message.update_id
    chat.title = message.chat_title[:200]
    chat.save(update_fields=["last_pulse", "bot_id", "last_update_id", "title", "updated_at"])


def handle_message(message: IncomingMessage, *, bot_id: int) -> Handled:
    """Apply one message from an allowed chat: schedule its pulse (resuming the chat's session) or,
    for `/new`, forget the session. Idempotent: applying the same update again changes nothing."""
    key = idempotency_key(bot_id=bot_id, update_id=message.update_id)
    with transaction.atomic():
        chat, _ = TelegramChat.objects.select_for_update().get_or_create(chat_id=message.chat_id)
        if chat.bot_id == bot_id and message.update_id <= chat.last_update_id:
            pulse = Pulse.objects.filter(idempotency_key=key).first()
            logger.info(
                "telegram_update_redelivered chat_id=%s update_id=%s pulse=%s applied_already=true",
                message.chat_id,
                message.update_id,
                pulse.pk if pulse else "-",
            )
            return Handled(Action.DUPLICATE, pulse_id=pulse.pk if pulse else None)
        command, rest = split_command(message.text)
        text = message.text
        session_id = chat.last_pulse.session_id if chat.last_pulse else ""
        if command == NEW_CONVERSATION_COMMAND:
            session_id = ""
            if not rest:
                chat.last_pulse = None
                _applied(chat, message, bot_id=bot_id)
                logger.info("telegram_new_conversation chat_id=%s", message.chat_id)
                return Handled(Action.NEW_CONVERSATION, reply=NEW_CONVERSATION_REPLY)
            text = rest
        result = queue.schedule(
            prompt=prompt_for(message, text),
            priority=Priority.CRITICAL,
            source=PULSE_SOURCE,
            tags=PULSE_TAGS,
            session_id=session_id,
            idempotency_key=key,
        )
        chat.last_pulse = result.pulse
        _applied(chat, message, bot_id=bot_id)
    action = Action.PULSE if result.created else Action.DUPLICATE
    logger.info(
        "telegram_message_queued chat_id=%s update_id=%s pulse=%s resume=%s created=%s",
        message.chat_id,
        message.update_id,
        result.pulse.pk,
        result.pulse.session_id or "-",
        result.created,
    )
    return Handled(action, pulse_id=result.pulse.pk, session_id=result.pulse.session_id)


def start_fresh_conversation(chat_id: int) -> bool:
    """Forget a chat's session so its next message starts a new one; False for an unknown chat."""
    updated = TelegramChat.objects.filter(chat_id=chat_id).update(last_pulse=None)
    if updated:
        logger.info("telegram_new_conversation chat_id=%s via=admin", chat_id)
    return bool(updated)
