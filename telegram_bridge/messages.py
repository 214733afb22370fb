"""One update from getUpdates to its pulse: only the allowed chats, the message's file downloaded into
the Desk, the one database operation (`handlers.handle_message`), the acknowledgement and the reply.

The offset that confirms an update is the poller's (`telegram_bridge.poller`): it moves past an update
only once `apply` returned.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Bot, Message, Update
from telegram.constants import ChatAction
from telegram.error import NetworkError, RetryAfter, TelegramError

from pulses.backoff import exponential
from telegram_bridge import handlers, media
from telegram_bridge.async_calls import STOPPED, StopRequest, in_thread
from telegram_bridge.client import retry_after_seconds
from telegram_bridge.handlers import Action, Handled, IncomingMessage, SavedFile
from telegram_bridge.incoming import Unreadable, incoming_message
from telegram_bridge.notify import NotificationFailed, send_parts

logger = logging.getLogger(__name__)

ACK_REACTION = "👀"
ACK_TIMEOUT_SECONDS = 5.0
UNREADABLE_REPLY = (
    "I could not read that message: Telegram sent something newer than this Reeve understands, so it "
    "did not reach the agent. Please send it as text."
)
# Tries for one file when the network fails (a refusal such as "file is too big" is not retried).
DOWNLOAD_ATTEMPTS = 3


class Interrupted(Exception):
    """A stop request arrived while an update was being applied: it stays unconfirmed."""


class MessageIntake:
    """Applies the updates of `allowed_chats`; the others are ignored (and logged once per chat)."""

    def __init__(self, *, allowed_chats: frozenset[int], stop: StopRequest, backoff_cap: float) -> None:
        self.allowed_chats = allowed_chats
        self._ignored_chats: set[int] = set()
        self._stop = stop
        self._backoff_cap = backoff_cap

    async def apply(self, bot: Bot, update: Update) -> None:
        """Turn `update` into a pulse (or a command's effect), committed before this returns; raises
        Interrupted when a stop request cut a download short."""
        message = update.effective_message
        if message is not None and message.chat.id not in self.allowed_chats:
            if message.chat.id not in self._ignored_chats:
                self._ignored_chats.add(message.chat.id)
                logger.warning(
                    "telegram_chat_ignored chat_id=%s name=%s reason=not_in_TELEGRAM_CHAT_ID",
                    message.chat.id,
                    message.chat.effective_name,
                )
            return
        incoming = incoming_message(update)
        if incoming is None or message is None:
            logger.info("telegram_update_skipped update_id=%s reason=nothing_sent", update.update_id)
            return
        saved: SavedFile | None = None
        problem = ""
        # A redelivery needs no second download: handle_message reports it as a duplicate.
        if incoming.attachment is not None and not await in_thread(
            handlers.already_applied, incoming, bot_id=bot.id
        ):
            saved, problem = await self._save_file(bot, incoming)
        handled: Handled = await in_thread(
            handlers.handle_message,
            incoming,
            bot_id=bot.id,
            files=[saved] if saved else [],
            file_problem=problem,
        )
        # Committed: nothing after this may fail the update (a redelivery would only be a duplicate).
        try:
            await self._acknowledge(bot, message)
        except Exception as exc:  # an answer the library cannot read: the reaction is only a courtesy
            logger.warning("telegram_ack_failed chat_id=%s error=%r", message.chat.id, exc)
        if handled.reply and handled.action != Action.DUPLICATE:
            try:
                await send_parts(bot, [incoming.chat_id], [handled.reply], silent=True)
            except Exception as exc:  # NotificationFailed, or an answer the library cannot read
                logger.warning("telegram_reply_failed chat_id=%s error=%r", incoming.chat_id, exc)

    async def answer_unreadable(self, bot: Bot, update: Unreadable) -> None:
        """Tell an allowed chat that its message could not be read, so it did not reach the agent."""
        if update.chat_id not in self.allowed_chats:
            return
        try:
            await send_parts(bot, [update.chat_id], [UNREADABLE_REPLY], silent=True)
        except NotificationFailed as exc:
            logger.warning("telegram_reply_failed chat_id=%s error=%s", update.chat_id, exc)

    async def _save_file(self, bot: Bot, incoming: IncomingMessage) -> tuple[SavedFile | None, str]:
        """Download the message's file into the Desk: the saved file, or None and why not (for the
        user). Raises Interrupted when a stop request cuts the download short."""
        attachment = incoming.attachment
        assert attachment is not None
        if incoming.is_edit:
            earlier = await in_thread(handlers.saved_files, incoming, bot_id=bot.id)
            if attachment.unique_id in earlier:
                return earlier[attachment.unique_id], ""
        problem = media.too_big(attachment, attachment.size)
        path = media.inbox_path(incoming, attachment)
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            if problem:
                break
            try:
                data = await self._stop.call(media.fetch(bot, attachment))
                if data is STOPPED:
                    raise Interrupted
                await media.save(path, data)
            except media.FileNotSaved as exc:
                problem = str(exc)
            except RetryAfter as exc:
                await self._stop.sleep(retry_after_seconds(exc))
            except NetworkError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    problem = f"your {attachment.label.lower()}: the download failed ({exc.message})"
                else:
                    await self._stop.sleep(exponential(attempt, initial=1.0, cap=self._backoff_cap))
            except OSError as exc:
                problem = f"your {attachment.label.lower()}: it could not be written to the Desk"
                logger.error("telegram_file_write_failed path=%s error=%s", path, exc)
            else:
                logger.info(
                    "telegram_file_saved chat_id=%s message_id=%s kind=%s bytes=%s path=%s",
                    incoming.chat_id,
                    incoming.message_id,
                    attachment.kind,
                    len(data),
                    path,
                )
                return SavedFile(attachment.kind, attachment.unique_id, str(path), attachment.details), ""
            if self._stop.is_set:
                raise Interrupted
        logger.warning(
            "telegram_file_not_saved chat_id=%s message_id=%s kind=%s reason=%s",
            incoming.chat_id,
            incoming.message_id,
            attachment.kind,
            problem,
        )
        return None, problem

    async def _acknowledge(self, bot: Bot, message: Message) -> None:
        """Show the user at once that the message arrived: a reaction, else a typing action."""
        timeouts: dict[str, Any] = {
            "read_timeout": ACK_TIMEOUT_SECONDS,
            "write_timeout": ACK_TIMEOUT_SECONDS,
            "connect_timeout": ACK_TIMEOUT_SECONDS,
            "pool_timeout": ACK_TIMEOUT_SECONDS,
        }
        try:
            await bot.set_message_reaction(message.chat.id, message.message_id, ACK_REACTION, **timeouts)
            return
        except TelegramError as exc:
            logger.info("telegram_reaction_failed chat_id=%s error=%s", message.chat.id, exc)
        try:
            await bot.send_chat_action(message.chat.id, ChatAction.TYPING, **timeouts)
        except TelegramError as exc:
            logger.warning("telegram_ack_failed chat_id=%s error=%s", message.chat.id, exc)
