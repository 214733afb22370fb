"""The listener's answers going back: the answers of finished pulses (the outbox,
`telegram_bridge.outbox`) sent to Telegram part by part, each part noted once Telegram took it, so a
crash neither loses an answer nor sends a part twice; and the notifications API clients queued
(`telegram_bridge.notifications`), the same way."""

from __future__ import annotations

import asyncio
import logging

from django.db import DatabaseError
from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from pulses.backoff import Backoff
from pulses.db.wakeup import Waiter, make_waiter
from pulses.models import DeliveryState
from telegram_bridge import notifications, outbox
from telegram_bridge.async_calls import STOPPED, StopRequest, in_thread
from telegram_bridge.models import NotificationState

logger = logging.getLogger(__name__)


def _seconds_until_next() -> float | None:
    """Seconds until the soonest answer or notification held back for a retry is due; None if none."""
    waits = [w for w in (outbox.seconds_until_next(), notifications.seconds_until_next()) if w is not None]
    return min(waits, default=None)


class AnswerSender:
    """Sends the outbox's answers to `configured_chats` (or in reply to a message) until stopped."""

    def __init__(
        self,
        *,
        configured_chats: tuple[int, ...],
        stop: StopRequest,
        poll_seconds: float,
        backoff_initial: float,
        backoff_cap: float,
    ) -> None:
        self.configured_chats = configured_chats
        self._stop = stop
        self._poll_seconds = poll_seconds
        self._backoff = Backoff(initial=backoff_initial, cap=backoff_cap)
        self._waiter: Waiter | None = None

    def wake(self) -> None:
        """End the wait for the next change (the listener is stopping); callable from any thread."""
        if self._waiter is not None:
            self._waiter.poke()

    async def run(self, bot: Bot) -> None:
        """Send the answers of finished pulses until stopped: at once when a commit may have finished
        one, and again when a delivery held back by a Telegram outage is due."""
        try:
            self._waiter = await in_thread(make_waiter)
        except (DatabaseError, OSError) as exc:
            logger.warning("telegram_outbox_polling reason=no_change_notifications error=%s", exc)
        waiter = self._waiter
        backoff = self._backoff
        poll = self._poll_seconds
        try:
            while not self._stop.is_set:
                if waiter is not None:
                    waiter.forget_changes()  # the read below sees every commit made before it
                try:
                    batch = await in_thread(outbox.take_due, configured_chats=self.configured_chats)
                    for outgoing in batch:
                        if self._stop.is_set:
                            break
                        await self._send_answer(bot, outgoing)
                    queued = await in_thread(notifications.take_due, configured_chats=self.configured_chats)
                    for notification in queued:
                        if self._stop.is_set:
                            break
                        await self._send_notification(bot, notification)
                    batch = batch or queued
                    pause = None if batch else await in_thread(_seconds_until_next)
                except DatabaseError as exc:
                    delay = backoff.next_delay()
                    logger.error("telegram_outbox_database_error retry_in_s=%s error=%s", delay, exc)
                    await self._stop.sleep(delay)
                    continue
                backoff.reset()
                if batch:
                    continue
                timeout = poll if pause is None else min(pause, poll)
                if waiter is None:
                    await self._stop.sleep(timeout)
                else:
                    await asyncio.to_thread(waiter.wait, timeout)
        finally:
            self._waiter = None
            if waiter is not None:
                waiter.close()

    async def _send_answer(self, bot: Bot, outgoing: outbox.Outgoing) -> None:
        """Send one reply part by part, noting each part once Telegram took it."""
        for index, chat_id, text in outgoing.messages[outgoing.parts_sent :]:
            first_in_chat = index % len(outgoing.parts) == 0
            reply = (
                ReplyParameters(outgoing.reply_to, allow_sending_without_reply=True)
                if outgoing.reply_to and first_in_chat
                else None
            )
            try:
                sent = await self._stop.call(bot.send_message(chat_id, text, reply_parameters=reply))
            except (BadRequest, Forbidden) as exc:
                # The chat is gone or the bot was blocked: trying again cannot help.
                await in_thread(
                    outbox.finish, outgoing.delivery_id, state=DeliveryState.FAILED, detail=exc.message
                )
                return
            except RetryAfter as exc:
                await in_thread(outbox.retry_later, outgoing, error=f"rate limited ({exc.message})")
                return
            except TelegramError as exc:  # unreachable, 5xx, timeouts, a token being replaced
                await in_thread(outbox.retry_later, outgoing, error=exc.message)
                return
            if sent is STOPPED:
                return  # unknown whether it arrived; the hold lapses and a restart sends it
            await in_thread(outbox.part_sent, outgoing.delivery_id, sent=index + 1)
        await in_thread(outbox.finish, outgoing.delivery_id, state=DeliveryState.SENT)

    async def _send_notification(self, bot: Bot, outgoing: notifications.OutgoingNotification) -> None:
        """Send one queued notification part by part, noting each part once Telegram took it."""
        for index, chat_id, text in outgoing.messages[outgoing.parts_sent :]:
            try:
                sent = await self._stop.call(
                    bot.send_message(chat_id, text, disable_notification=outgoing.silent)
                )
            except (BadRequest, Forbidden) as exc:
                await in_thread(
                    notifications.finish,
                    outgoing.notification_id,
                    state=NotificationState.FAILED,
                    detail=exc.message,
                )
                return
            except RetryAfter as exc:
                await in_thread(notifications.retry_later, outgoing, error=f"rate limited ({exc.message})")
                return
            except TelegramError as exc:
                await in_thread(notifications.retry_later, outgoing, error=exc.message)
                return
            if sent is STOPPED:
                return
            await in_thread(notifications.part_sent, outgoing.notification_id, sent=index + 1)
        await in_thread(notifications.finish, outgoing.notification_id, state=NotificationState.SENT)
