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
An update whose applying raises anything else is not confirmed and comes again; after UPDATE_TRIES
(counted in `telegram_update_failures`) it is set aside, the person told, so one bad update never
blocks the messages behind it. The answer sender ending on an error ends the listener (exit 1).

Each update is applied by `telegram_bridge.messages`. Beside the polling, the listener sends the
answers of finished pulses back (`telegram_bridge.answer_sender`, from the outbox): a message's
answer as a reply to it, other pulses' to the configured chat.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from contextlib import suppress
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from telegram import Bot
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError

from pulses.backoff import Backoff
from pulses.ops import health
from pulses.worker.shutdown import STOP_SIGNALS
from telegram_bridge import handlers
from telegram_bridge.answer_sender import AnswerSender, alert_operator
from telegram_bridge.async_calls import STOPPED, StopRequest, in_thread
from telegram_bridge.client import TelegramConfig, make_bot, retry_after_seconds
from telegram_bridge.incoming import ALLOWED_UPDATES, Unreadable, read_one_by_one
from telegram_bridge.messages import Interrupted, MessageIntake

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 5.0
OUTBOX_POLL_SECONDS = 30.0
OUTBOX_POLL_POSTGRES_SECONDS = 1.0


class InvalidBotToken(Exception):
    """Telegram rejected TELEGRAM_BOT_TOKEN (revoked, mistyped): polling cannot go on."""


class ListenerFailed(Exception):
    """A part of the listener died (the answer sender): the whole listener stops with exit 1, so
    systemd (or whoever runs it) starts it again, instead of polling on without sending answers."""


# How many times applying one update may raise an unexpected error (counted in the database, across
# restarts) before it is set aside: the person is told, the operator alerted, the next update goes on.
UPDATE_TRIES = 3
SET_ASIDE_REPLY = (
    "Sorry, I could not take this message: handling it failed {tries} times ({error}), so it did not "
    "reach the agent. Please send it again, or in another form (as text)."
)


@dataclass
class PollerOptions:
    """How the listener polls: the long poll's timeout and batch, the backoff while Telegram is
    unreachable, and how often it reads the answers outbox."""

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


class Poller:
    def __init__(self, config: TelegramConfig, options: PollerOptions | None = None) -> None:
        self.config = config
        self.options = options or PollerOptions()
        self.backoff = Backoff(initial=self.options.backoff_initial, cap=self.options.backoff_cap)
        self.allowed_chats = frozenset(config.chat_ids)
        self.bot_id = 0
        self._stop = StopRequest()
        self.intake = MessageIntake(
            allowed_chats=self.allowed_chats, stop=self._stop, backoff_cap=self.options.backoff_cap
        )
        self._answers: AnswerSender | None = None
        self._started_at = timezone.now()
        self._next_report = 0.0

    async def _report_polling(self, *, stopped: bool = False) -> None:
        """Tell the watchdog this listener polls (pulses/ops/health.py), at most once per heartbeat
        interval; a database that cannot take it now is the next pass's concern, never the loop's."""
        now = time.monotonic()
        if now < self._next_report and not stopped:
            return
        self._next_report = now + settings.PULSE_HEARTBEAT_SECONDS
        try:
            await in_thread(health.report_listener, started_at=self._started_at, stopped=stopped)
        except Exception as exc:  # a database down, its write gate busy: never the loop's end
            logger.warning("telegram_listener_report_failed error=%s", type(exc).__name__)

    def run(self) -> None:
        """Poll until SIGTERM/SIGINT; raises InvalidBotToken when Telegram rejects the token."""
        asyncio.run(self._main())

    def stop(self) -> None:
        self._stop.set()
        if self._answers is not None:
            self._answers.wake()  # the outbox's wait, on its own thread

    @property
    def stopping(self) -> bool:
        return self._stop.is_set

    async def _main(self) -> None:
        self._stop.start()
        self._answers = AnswerSender(
            configured_chats=self.config.chat_ids,
            stop=self._stop,
            poll_seconds=self.options.outbox_poll_seconds(),
            backoff_initial=self.options.backoff_initial,
            backoff_cap=self.options.backoff_cap,
        )
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        bot = make_bot(self.config)
        try:
            if await self._connect(bot):
                deliveries = asyncio.ensure_future(self._answers.run(bot))
                deliveries.add_done_callback(self._sender_ended)
                try:
                    await self._poll(bot)
                finally:
                    self.stop()  # the outbox stops with the polling, whatever ended it
                    try:
                        await deliveries
                    except Exception as exc:
                        raise ListenerFailed(
                            f"the answer sender stopped on an unexpected error ({type(exc).__name__}: "
                            f"{exc}); the listener exits so that it is started again"
                        ) from exc
        finally:
            with suppress(Exception):
                await bot.shutdown()
            with suppress(Exception):
                await self._report_polling(stopped=True)
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            logger.info("telegram_listener_stopped bot_id=%s", self.bot_id)

    def _sender_ended(self, task: asyncio.Future) -> None:
        """The answer sender ends only when the listener stops; ended otherwise, it takes the polling
        with it (the process then exits 1), never leaving messages taken and answers unsent."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("telegram_answer_sender_died stopping_listener=true", exc_info=task.exception())
        self.stop()

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("telegram_listener_stopping signal=%s", signal.Signals(sig).name)
        self.stop()

    async def _connect(self, bot: Bot) -> bool:
        """getMe until it answers (backing off through outages); False when stopped first."""
        while not self.stopping:
            try:
                if await self._stop.call(bot.initialize()) is STOPPED:
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
            await self._report_polling()
            try:
                updates = await self._stop.call(
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
                    updates = await self._stop.call(
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
                    await self.intake.answer_unreadable(bot, update)
                    offset = update.update_id + 1
                    continue
                try:
                    await self.intake.apply(bot, update)
                except Interrupted:
                    break
                except DatabaseError:
                    # Not confirmed: the update comes again with the next getUpdates.
                    delay = self.backoff.next_delay()
                    logger.exception(
                        "telegram_database_error update_id=%s retry_in_s=%s", update.update_id, delay
                    )
                    await self._stop.sleep(delay)
                    break
                except Exception as exc:  # one update's own trouble: never the whole listener's
                    if not await self._update_failed(bot, update, exc):
                        delay = self.backoff.next_delay()
                        await self._stop.sleep(delay)
                        break  # not confirmed: it comes again, and counts another try
                offset = update.update_id + 1
        await self._confirm(bot, offset)

    async def _update_failed(self, bot: Bot, update, exc: Exception) -> bool:
        """Count an unexpected failure of `update` in the database; True when it is now set aside
        (the person told, the operator alerted: it is confirmed and the next update goes on), False
        when it is to be tried again."""
        message = update.effective_message
        chat_id = message.chat.id if message is not None else 0
        edited = message.edit_date if message is not None and update.edited_message is not None else None
        key = {
            "bot_id": bot.id,
            "chat_id": chat_id,
            "message_id": message.message_id if message is not None else update.update_id,
            "edit_date": int(edited.timestamp()) if edited else 0,  # as `incoming_message` keys it
            "update_id": update.update_id,
        }
        error = f"{type(exc).__name__}: {exc}"
        try:
            tries = await in_thread(handlers.note_failure, **key, error=error)
        except DatabaseError as db_exc:
            logger.exception("telegram_update_failed update_id=%s", update.update_id, exc_info=exc)
            logger.error("telegram_update_failure_not_counted error=%s", db_exc)
            return False
        if tries < UPDATE_TRIES:
            logger.error(
                "telegram_update_failed update_id=%s chat_id=%s try=%s of=%s",
                update.update_id,
                chat_id,
                tries,
                UPDATE_TRIES,
                exc_info=exc,
            )
            return False
        try:
            await in_thread(handlers.set_aside, **key)
        except DatabaseError as db_exc:
            logger.error("telegram_update_set_aside_failed update_id=%s error=%s", update.update_id, db_exc)
            return False
        logger.error(
            "telegram_update_set_aside update_id=%s chat_id=%s message_id=%s tries=%s error=%s",
            update.update_id,
            chat_id,
            key["message_id"],
            tries,
            error,
            exc_info=exc,
        )
        short = type(exc).__name__
        if chat_id in self.allowed_chats:
            await alert_operator(bot, (chat_id,), SET_ASIDE_REPLY.format(tries=tries, error=short))
        others = tuple(c for c in self.config.chat_ids if c != chat_id)
        if others:
            await alert_operator(
                bot,
                others,
                f"⚠️ Reeve set aside a Telegram message (chat {chat_id}, message {key['message_id']}) "
                f"after {tries} failed tries: {error[:300]}. See telegram_update_set_aside in the log.",
            )
        return True

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
        await self._stop.sleep(wait)
