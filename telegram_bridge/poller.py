"""The listener loop: long-poll getUpdates, turn each allowed message into a pulse, then confirm.

Exactly once: Telegram considers an update confirmed when getUpdates is next called with a higher
offset. The offset only moves past an update after `handlers.handle_message` committed it, keyed by
what never repeats (bot, chat, message id, edit date), so a crash before the commit redelivers the
update and a crash after it (before the confirmation) redelivers one that is then skipped. Files
are downloaded into the Desk before that commit, under a name fixed by the message, so a crash
mid-download repeats the download into the same file. Update ids are only the offset: after an
empty poll the offset is dropped, since Telegram restarts update ids after a quiet week.

Errors: network trouble and Bot API 5xx back off exponentially (capped) and recover; 429 waits
for Telegram's `retry_after`; 409 (another poller on the token, or a webhook) is logged as such and
retried; a rejected token stops the loop with InvalidBotToken. SIGTERM/SIGINT/SIGHUP stop it cleanly.

Beside the polling, the listener sends the answers of finished pulses back (telegram_bridge/outbox.py):
a message's answer as a reply to it, other pulses' to the configured chat.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections, connection
from telegram import Bot, Message, ReplyParameters, Update
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from pulses.backoff import Backoff, exponential
from pulses.db.wakeup import Waiter, make_waiter
from pulses.models import DeliveryState
from pulses.worker.shutdown import STOP_SIGNALS
from telegram_bridge import handlers, media, outbox
from telegram_bridge.client import TelegramConfig, make_bot, retry_after_seconds
from telegram_bridge.handlers import Action, Handled, IncomingMessage, SavedFile
from telegram_bridge.incoming import ALLOWED_UPDATES, Unreadable, incoming_message, read_one_by_one
from telegram_bridge.notify import NotificationFailed, send_parts

logger = logging.getLogger(__name__)

ACK_REACTION = "👀"
ACK_TIMEOUT_SECONDS = 5.0
CONFIRM_TIMEOUT_SECONDS = 5.0
STOPPED = object()
UNREADABLE_REPLY = (
    "I could not read that message: Telegram sent something newer than this Reeve understands, so it "
    "did not reach the agent. Please send it as text."
)
# Tries for one file when the network fails (a refusal such as "file is too big" is not retried).
DOWNLOAD_ATTEMPTS = 3
OUTBOX_POLL_SECONDS = 30.0
OUTBOX_POLL_POSTGRES_SECONDS = 1.0


class InvalidBotToken(Exception):
    """Telegram rejected TELEGRAM_BOT_TOKEN (revoked, mistyped): polling cannot go on."""


class Interrupted(Exception):
    """A stop request arrived while an update was being applied: it stays unconfirmed."""


@dataclass
class PollerOptions:
    poll_timeout: int = 30
    batch_limit: int = 100
    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    # How often the answers outbox is read without a change notification. SQLite's commits wake the
    # listener at once (inotify); PostgreSQL's NOTIFY is sent for runnable pulses only, not for
    # finished ones, so there it looks this often.
    outbox_poll: float | None = None

    def outbox_poll_seconds(self) -> float:
        if self.outbox_poll is not None:
            return self.outbox_poll
        return OUTBOX_POLL_POSTGRES_SECONDS if connection.vendor == "postgresql" else OUTBOX_POLL_SECONDS


def _in_thread(func: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
    """Run a database function from the event loop, on the thread Django's connection lives on."""

    def call() -> Any:
        # A long-running process: drop a connection the database closed or that outlived its age.
        close_old_connections()
        return func(*args, **kwargs)

    return sync_to_async(call, thread_sensitive=True)()


class Poller:
    def __init__(self, config: TelegramConfig, options: PollerOptions | None = None) -> None:
        self.config = config
        self.options = options or PollerOptions()
        self.backoff = Backoff(initial=self.options.backoff_initial, cap=self.options.backoff_cap)
        self.allowed_chats = frozenset(config.chat_ids)
        self.bot_id = 0
        self._ignored_chats: set[int] = set()
        self._stop: asyncio.Event | None = None
        self._outbox_waiter: Waiter | None = None

    def run(self) -> None:
        """Poll until SIGTERM/SIGINT; raises InvalidBotToken when Telegram rejects the token."""
        asyncio.run(self._main())

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._outbox_waiter is not None:
            self._outbox_waiter.poke()  # the outbox's wait, on its own thread

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        bot = make_bot(self.config)
        try:
            if await self._connect(bot):
                deliveries = asyncio.ensure_future(self._deliver_answers(bot))
                try:
                    await self._poll(bot)
                finally:
                    self.stop()  # the outbox stops with the polling, whatever ended it
                    await deliveries
        finally:
            with suppress(Exception):
                await bot.shutdown()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            logger.info("telegram_listener_stopped bot_id=%s", self.bot_id)

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("telegram_listener_stopping signal=%s", signal.Signals(sig).name)
        self.stop()

    async def _connect(self, bot: Bot) -> bool:
        """getMe until it answers (backing off through outages); False when stopped first."""
        while not self.stopping:
            try:
                if await self._call(bot.initialize()) is STOPPED:
                    return False
            except TelegramError as exc:
                await self._recover_from(exc, during="getMe")
                continue
            self.bot_id = bot.id
            self.backoff.reset()
            logger.info(
                "telegram_listener_started bot_id=%s username=%s chats=%s",
                bot.id,
                bot.username,
                ",".join(str(c) for c in sorted(self.allowed_chats)),
            )
            return True
        return False

    async def _poll(self, bot: Bot) -> None:
        offset: int | None = None
        while not self.stopping:
            try:
                updates = await self._call(
                    bot.get_updates(
                        offset=offset,
                        limit=self.options.batch_limit,
                        timeout=self.options.poll_timeout,
                        allowed_updates=ALLOWED_UPDATES,
                    )
                )
            except TelegramError as exc:
                await self._recover_from(exc, during="getUpdates")
                continue
            except (TypeError, ValueError, KeyError) as exc:
                # python-telegram-bot could not read an update (Telegram's Bot API is newer than the
                # library): read the batch one update at a time instead of failing on it forever.
                logger.warning("telegram_batch_unreadable offset=%s error=%r", offset, exc)
                try:
                    updates = await self._call(
                        read_one_by_one(bot, offset=offset, limit=self.options.batch_limit)
                    )
                except TelegramError as retry_exc:
                    await self._recover_from(retry_exc, during="getUpdates")
                    continue
            if updates is STOPPED:
                break
            if not updates:
                # This poll confirmed everything below the offset; without one, Telegram answers
                # from its oldest unconfirmed update, which is right even after it restarted its ids.
                offset = None
            if self.backoff.failures:
                logger.info("telegram_recovered after_failures=%s", self.backoff.failures)
                self.backoff.reset()
            for update in updates:
                if self.stopping:
                    break
                if isinstance(update, Unreadable):
                    await self._answer_unreadable(bot, update)
                    offset = update.update_id + 1
                    continue
                try:
                    await self._apply(bot, update)
                except Interrupted:
                    break
                except DatabaseError:
                    # Not confirmed: the update comes again with the next getUpdates.
                    delay = self.backoff.next_delay()
                    logger.exception(
                        "telegram_database_error update_id=%s retry_in_s=%s", update.update_id, delay
                    )
                    await self._sleep(delay)
                    break
                offset = update.update_id + 1
        await self._confirm(bot, offset)

    async def _apply(self, bot: Bot, update: Update) -> None:
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
        if incoming.attachment is not None and not await _in_thread(
            handlers.already_applied, incoming, bot_id=self.bot_id
        ):
            saved, problem = await self._save_file(bot, incoming)
        handled: Handled = await _in_thread(
            handlers.handle_message,
            incoming,
            bot_id=self.bot_id,
            files=[saved] if saved else [],
            file_problem=problem,
        )
        await self._acknowledge(bot, message)
        if handled.reply and handled.action != Action.DUPLICATE:
            try:
                await send_parts(bot, [incoming.chat_id], [handled.reply], silent=True)
            except NotificationFailed as exc:
                logger.warning("telegram_reply_failed chat_id=%s error=%s", incoming.chat_id, exc)

    # --- answers going back -----------------------------------------------------------------------
    async def _deliver_answers(self, bot: Bot) -> None:
        """Send the answers of finished pulses (the outbox) until stopped: at once when a commit may
        have finished one, and again when a delivery held back by a Telegram outage is due."""
        try:
            self._outbox_waiter = await _in_thread(make_waiter)
        except (DatabaseError, OSError) as exc:
            logger.warning("telegram_outbox_polling reason=no_change_notifications error=%s", exc)
        waiter = self._outbox_waiter
        backoff = Backoff(initial=self.options.backoff_initial, cap=self.options.backoff_cap)
        poll = self.options.outbox_poll_seconds()
        try:
            while not self.stopping:
                if waiter is not None:
                    waiter.forget_changes()  # the read below sees every commit made before it
                try:
                    batch = await _in_thread(outbox.take_due, configured_chats=self.config.chat_ids)
                    for outgoing in batch:
                        if self.stopping:
                            break
                        await self._send_answer(bot, outgoing)
                    pause = None if batch else await _in_thread(outbox.seconds_until_next)
                except DatabaseError as exc:
                    delay = backoff.next_delay()
                    logger.error("telegram_outbox_database_error retry_in_s=%s error=%s", delay, exc)
                    await self._sleep(delay)
                    continue
                backoff.reset()
                if batch:
                    continue
                timeout = poll if pause is None else min(pause, poll)
                if waiter is None:
                    await self._sleep(timeout)
                else:
                    await asyncio.to_thread(waiter.wait, timeout)
        finally:
            self._outbox_waiter = None
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
                sent = await self._call(bot.send_message(chat_id, text, reply_parameters=reply))
            except (BadRequest, Forbidden) as exc:
                # The chat is gone or the bot was blocked: trying again cannot help.
                await _in_thread(
                    outbox.finish, outgoing.delivery_id, state=DeliveryState.FAILED, detail=exc.message
                )
                return
            except RetryAfter as exc:
                await _in_thread(outbox.retry_later, outgoing, error=f"rate limited ({exc.message})")
                return
            except TelegramError as exc:  # unreachable, 5xx, timeouts, a token being replaced
                await _in_thread(outbox.retry_later, outgoing, error=exc.message)
                return
            if sent is STOPPED:
                return  # unknown whether it arrived; the hold lapses and a restart sends it
            await _in_thread(outbox.part_sent, outgoing.delivery_id, sent=index + 1)
        await _in_thread(outbox.finish, outgoing.delivery_id, state=DeliveryState.SENT)

    async def _save_file(self, bot: Bot, incoming: IncomingMessage) -> tuple[SavedFile | None, str]:
        """Download the message's file into the Desk: the saved file, or None and why not (for the
        user). Raises Interrupted when a stop request cuts the download short."""
        attachment = incoming.attachment
        assert attachment is not None
        if incoming.is_edit:
            earlier = await _in_thread(handlers.saved_files, incoming, bot_id=self.bot_id)
            if attachment.unique_id in earlier:
                return earlier[attachment.unique_id], ""
        problem = media.too_big(attachment, attachment.size)
        path = media.inbox_path(incoming, attachment)
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            if problem:
                break
            try:
                data = await self._call(media.fetch(bot, attachment))
                if data is STOPPED:
                    raise Interrupted
                await media.save(path, data)
            except media.FileNotSaved as exc:
                problem = str(exc)
            except RetryAfter as exc:
                await self._sleep(retry_after_seconds(exc))
            except NetworkError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    problem = f"your {attachment.label.lower()}: the download failed ({exc.message})"
                else:
                    await self._sleep(exponential(attempt, initial=1.0, cap=self.options.backoff_cap))
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
            if self.stopping:
                raise Interrupted
        logger.warning(
            "telegram_file_not_saved chat_id=%s message_id=%s kind=%s reason=%s",
            incoming.chat_id,
            incoming.message_id,
            attachment.kind,
            problem,
        )
        return None, problem

    async def _answer_unreadable(self, bot: Bot, update: Unreadable) -> None:
        if update.chat_id not in self.allowed_chats:
            return
        try:
            await send_parts(bot, [update.chat_id], [UNREADABLE_REPLY], silent=True)
        except NotificationFailed as exc:
            logger.warning("telegram_reply_failed chat_id=%s error=%s", update.chat_id, exc)

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

    async def _confirm(self, bot: Bot, offset: int | None) -> None:
        """On a clean stop, confirm what was applied so a restart does not fetch it again."""
        if offset is None:
            return
        with suppress(TelegramError, TimeoutError):
            await asyncio.wait_for(
                bot.get_updates(offset=offset, limit=1, timeout=0), timeout=CONFIRM_TIMEOUT_SECONDS
            )

    async def _recover_from(self, exc: TelegramError, *, during: str) -> None:
        """Log what went wrong and wait the right time before the next try; a bad token raises."""
        if isinstance(exc, InvalidToken):
            raise InvalidBotToken(
                # Not exc.message: the library quotes the token there, and tokens stay out of logs.
                "Telegram rejected TELEGRAM_BOT_TOKEN: the token is wrong or was "
                "revoked; get the current one from @BotFather and set TELEGRAM_BOT_TOKEN"
            ) from exc
        if isinstance(exc, RetryAfter):
            wait = retry_after_seconds(exc)
            logger.warning("telegram_rate_limited during=%s retry_after_s=%s", during, wait)
        elif isinstance(exc, Conflict):
            wait = self.backoff.next_delay()
            logger.error(
                "telegram_conflict during=%s retry_in_s=%s: another listener is polling this bot token "
                "(or a webhook is set); stop the other one. Telegram said: %s",
                during,
                wait,
                exc.message,
            )
        elif isinstance(exc, NetworkError):
            wait = self.backoff.next_delay()
            logger.warning(
                "telegram_unreachable during=%s failures=%s retry_in_s=%s error=%s",
                during,
                self.backoff.failures,
                wait,
                exc.message,
            )
        else:
            wait = self.backoff.next_delay()
            logger.error("telegram_error during=%s retry_in_s=%s error=%s", during, wait, exc.message)
        await self._sleep(wait)

    async def _call(self, call: Awaitable[Any]) -> Any:
        """Await a Bot API call that a stop request cancels; STOPPED if it was cancelled."""
        assert self._stop is not None
        task = asyncio.ensure_future(call)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with suppress(asyncio.CancelledError, TelegramError):
            await task
        return STOPPED

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
