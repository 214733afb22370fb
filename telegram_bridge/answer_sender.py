"""The listener's answers going back: the answers of finished pulses (the outbox,
`telegram_bridge.outbox`) sent to Telegram part by part, each part noted before it is handed to
Telegram and once Telegram took it, so a crash never loses an answer and never sends a part twice: a
part whose send was cut short is passed over (at most once), and a note says so (at least once). The
notifications API clients queued (`telegram_bridge.notifications`) go the same way, each part noted once
Telegram took it (a crash between the two may send that part again)."""

from __future__ import annotations

import asyncio
import logging

import httpx
from django.db import DatabaseError
from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError, TimedOut

from pulses.backoff import Backoff
from pulses.db.wakeup import Waiter, make_waiter
from pulses.models import DeliveryState
from telegram_bridge import notifications, outbox, quiet_hours
from telegram_bridge.async_calls import STOPPED, StopRequest, in_thread
from telegram_bridge.models import NotificationState
from telegram_bridge.notify import send_parts

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
        reconnect = False
        try:
            while not self._stop.is_set:
                try:
                    if waiter is not None:
                        if reconnect:
                            # The LISTEN connection died with the database: open it again first,
                            # or every later wait raises at once.
                            await asyncio.to_thread(waiter.reconnect)
                            reconnect = False
                            logger.warning("telegram_outbox_database_available_again")
                        waiter.forget_changes()  # the read below sees every commit made before it
                    batch = await in_thread(outbox.take_due, configured_chats=self.configured_chats)
                    for outgoing in batch:
                        if self._stop.is_set:
                            break
                        await self._one_item(self._send_answer, bot, outgoing)
                    queued = await in_thread(notifications.take_due, configured_chats=self.configured_chats)
                    for notification in queued:
                        if self._stop.is_set:
                            break
                        await self._one_item(self._send_notification, bot, notification)
                    batch = batch or queued
                    pause = None if batch else await in_thread(_seconds_until_next)
                    backoff.reset()
                    if batch:
                        continue
                    timeout = poll if pause is None else min(pause, poll)
                    if waiter is None:
                        await self._stop.sleep(timeout)
                    else:
                        await asyncio.to_thread(waiter.wait, timeout)
                except DatabaseError as exc:
                    # A database restart or failover: wait it out, then reconnect (the change
                    # waiter's own connection too), as the worker does.
                    reconnect = True
                    delay = backoff.next_delay()
                    logger.error("telegram_outbox_database_error retry_in_s=%s error=%s", delay, exc)
                    await self._stop.sleep(delay)
        finally:
            self._waiter = None
            if waiter is not None:
                waiter.close()

    async def _one_item(self, send, bot: Bot, outgoing) -> None:
        """Send one answer or notification; an unexpected error in it (a Bot API answer the library
        cannot read, a bug) is that item's, not the loop's: it is tried again later, and after
        ITEM_TRIES takes (counted in its row) it is set aside as failed, with a log line and an
        alert, so the answers behind it still go out."""
        try:
            await send(bot, outgoing)
        except (DatabaseError, asyncio.CancelledError):
            raise
        except Exception as exc:
            answer = isinstance(outgoing, outbox.Outgoing)
            what = (
                f"answer of pulse #{outgoing.pulse_id}"
                if answer
                else f"notification #{outgoing.notification_id}"
            )
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            if outgoing.tries < ITEM_TRIES:
                logger.exception("telegram_outbox_item_failed item=%r try=%s", what, outgoing.tries)
                module = outbox if answer else notifications
                await in_thread(module.retry_later, outgoing, error=error)
                return
            logger.exception("telegram_outbox_item_set_aside item=%r tries=%s", what, outgoing.tries)
            if answer:
                await in_thread(outbox.finish, outgoing.delivery_id, state=DeliveryState.FAILED, detail=error)
            else:
                await in_thread(
                    notifications.finish,
                    outgoing.notification_id,
                    state=NotificationState.FAILED,
                    detail=error,
                )
            await alert_operator(
                bot,
                self.configured_chats,
                f"⚠️ Reeve set aside the {what} after {outgoing.tries} tries: {error[:300]}. "
                "The listener goes on with the others; the log (telegram_outbox_item_set_aside) has the "
                "details.",
            )

    async def _send_answer(self, bot: Bot, outgoing: outbox.Outgoing) -> None:
        """Send one reply part by part: each part noted before the send and once Telegram took it."""
        messages = outgoing.messages[outgoing.parts_sent :]
        missing = ""
        silent = quiet_hours.silent(outgoing.priority)
        if outgoing.in_doubt and messages:
            # Telegram may have taken it before the send was cut short: sending it again could
            # show it twice, so it is passed over, and a short note says so. The skip is committed
            # after the note: a crash (or an error) before the note went out leaves the part in
            # doubt, so the next try sends the note then. A note may show twice; it is never lost,
            # which would leave the person with neither the answer nor a word about it.
            skipped_index, skipped_chat, _ = messages.pop(0)
            missing = f"message {skipped_index + 1} of {len(outgoing.messages)} may be missing"
            note = GAP_NOTE.format(pulse_id=outgoing.pulse_id)
            try:
                await self._stop.call(bot.send_message(skipped_chat, note, disable_notification=silent))
            except TelegramError as exc:  # only a note: the parts that follow matter more
                logger.warning("telegram_answer_gap_note_failed pulse=%s error=%s", outgoing.pulse_id, exc)
            await in_thread(outbox.part_skipped, outgoing)
        for index, chat_id, text in messages:
            first_in_chat = index % len(outgoing.parts) == 0
            reply = (
                ReplyParameters(outgoing.reply_to, allow_sending_without_reply=True)
                if outgoing.reply_to and first_in_chat
                else None
            )
            if self._stop.is_set:
                return  # not started: not in doubt, the next start sends it
            await in_thread(outbox.part_starting, outgoing.delivery_id, index=index)
            try:
                sent = await self._stop.call(
                    bot.send_message(chat_id, text, reply_parameters=reply, disable_notification=silent)
                )
            except (BadRequest, Forbidden) as exc:
                # The chat is gone or the bot was blocked: trying again cannot help.
                await in_thread(outbox.part_not_sent, outgoing.delivery_id, index=index)
                await in_thread(
                    outbox.finish, outgoing.delivery_id, state=DeliveryState.FAILED, detail=exc.message
                )
                return
            except RetryAfter as exc:
                await in_thread(outbox.part_not_sent, outgoing.delivery_id, index=index)
                await in_thread(outbox.retry_later, outgoing, error=f"rate limited ({exc.message})")
                return
            except TelegramError as exc:  # unreachable, 5xx, timeouts, a token being replaced
                if never_arrived(exc):
                    await in_thread(outbox.part_not_sent, outgoing.delivery_id, index=index)
                await in_thread(outbox.retry_later, outgoing, error=exc.message)
                return
            if sent is STOPPED:
                return  # unknown whether it arrived: in doubt, never sent again
            await in_thread(outbox.part_sent, outgoing.delivery_id, sent=index + 1)
        await in_thread(outbox.finish, outgoing.delivery_id, state=DeliveryState.SENT, detail=missing)

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


ITEM_TRIES = outbox.ITEM_TRIES  # takes of an answer or notification that raises, before it is set aside


async def alert_operator(bot: Bot, chat_ids: tuple[int, ...], text: str) -> None:
    """Tell the operator (the configured chats) about an item set aside; never raises."""
    try:
        await send_parts(bot, chat_ids, [text], silent=quiet_hours.silent("normal"))
    except Exception as exc:  # an alert must not become the loop's next failure
        logger.error("telegram_alert_failed subject=set_aside error=%s", exc)


GAP_NOTE = (  # a kill, a stop or a timeout while Telegram may have taken the part
    "(Part of this answer may be missing above: its send was cut short. "
    "The whole answer is pulse #{pulse_id} on the dashboard.)"
)


def never_arrived(exc: TelegramError) -> bool:
    """True when the failed call surely did not reach Telegram or Telegram answered it with an error
    (so nothing was sent); False when the request may have gone out (a timeout, a broken read)."""
    cause = exc.__cause__
    if cause is None:
        return not isinstance(exc, TimedOut)  # an HTTP error answer from the Bot API (502 ...)
    return isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
