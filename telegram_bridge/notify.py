"""Outbound messages: split text at Telegram's limit and send it to the configured chat(s).

`send_message` is the one synchronous entry point (`manage.py notify`, the MCP `send_notification`
tool, pulse-failure alerts). It needs no database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from telegram import Bot
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError

from pulses.backoff import exponential
from telegram_bridge import quiet_hours
from telegram_bridge.client import TelegramConfig, make_bot, retry_after_seconds, run_coroutine

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Telegram counts a message's length in UTF-16 code units; 4096 is the most one message may hold.
TELEGRAM_MESSAGE_LIMIT = 4096
SEND_ATTEMPTS = 4
MAX_RETRY_AFTER_SECONDS = 60.0


class EmptyMessage(ValueError):
    """There is nothing to send (empty or whitespace-only text)."""


class NotificationFailed(Exception):
    """Telegram did not take the message (after retries); says how many parts did go out."""


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """The longest prefix length of `text` (in characters) within `limit` UTF-16 units."""
    if utf16_len(text) <= limit:
        return len(text)
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_message(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Cut `text` into parts of at most `limit` UTF-16 units, at line ends where possible, else at a
    space, else anywhere. Joining the parts gives back `text` (whitespace-only parts are dropped)."""
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while utf16_len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            cut = _fit(line, limit)
            space = line.rfind(" ", 0, cut)
            if space >= cut // 2:
                cut = space + 1
            parts.append(line[:cut])
            line = line[cut:]
        if utf16_len(current) + utf16_len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    return [part for part in parts if part.strip()]


async def send_parts(bot: Bot, chat_ids: Sequence[int], parts: Sequence[str], *, silent: bool) -> int:
    """Send every part to every chat, in order; returns the number of messages sent."""
    sent = 0
    for chat_id in chat_ids:
        for part in parts:
            await _with_retries(
                lambda chat_id=chat_id, part=part: bot.send_message(
                    chat_id, part, disable_notification=silent
                ),
                what=f"chat {chat_id}",
                sent_so_far=sent,
            )
            sent += 1
    return sent


async def _with_retries(call: Callable[[], Awaitable[T]], *, what: str, sent_so_far: int) -> T:
    """Run a Bot API call, waiting out 429s and retrying network trouble a few times."""
    done = f"{sent_so_far} message(s) sent"
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            return await call()
        except RetryAfter as exc:
            wait = min(retry_after_seconds(exc), MAX_RETRY_AFTER_SECONDS)
            logger.warning("telegram_send_rate_limited to=%s retry_after_s=%s", what, wait)
        except InvalidToken as exc:
            # The library's message quotes the token: name the variable instead.
            raise NotificationFailed(
                f"Telegram rejected TELEGRAM_BOT_TOKEN: check the token; {done}"
            ) from exc
        except BadRequest as exc:  # a NetworkError subclass, but retrying cannot help
            raise NotificationFailed(
                f"Telegram refused the message for {what}: {exc.message}; {done}"
            ) from exc
        except NetworkError as exc:  # unreachable, 5xx, timeouts: worth another try
            wait = exponential(attempt, initial=1.0, cap=MAX_RETRY_AFTER_SECONDS)
            logger.warning("telegram_send_retry to=%s attempt=%s error=%s", what, attempt, exc.message)
        except TelegramError as exc:
            raise NotificationFailed(
                f"Telegram refused the message for {what}: {exc.message}; {done}"
            ) from exc
        if attempt < SEND_ATTEMPTS:
            await asyncio.sleep(wait)
    raise NotificationFailed(f"Telegram could not be reached after {SEND_ATTEMPTS} attempts; {done}")


async def _send(config: TelegramConfig, parts: list[str], silent: bool) -> int:
    bot = make_bot(config)
    try:
        await _with_retries(bot.initialize, what="getMe", sent_so_far=0)
        return await send_parts(bot, config.chat_ids, parts, silent=silent)
    finally:
        await bot.shutdown()


def send_message(
    text: str, *, silent: bool = False, priority: str = "normal", chat_ids: Sequence[int] = ()
) -> int:
    """Send `text` to every chat in TELEGRAM_CHAT_ID (or to `chat_ids` only), split at Telegram's
    limit; returns the number of messages sent. It arrives without a sound with `silent`, or inside
    the quiet hours unless `priority` is critical. Raises TelegramNotConfigured, EmptyMessage or
    NotificationFailed."""
    config = TelegramConfig.from_settings().require()
    if chat_ids:
        config = replace(config, chat_ids=tuple(chat_ids))
    if not text.strip():
        raise EmptyMessage("nothing to send: the text is empty")
    parts = split_message(text)
    silent = silent or quiet_hours.silent(priority)
    sent = run_coroutine(_send(config, parts, silent))
    logger.info("telegram_notified messages=%s chats=%s silent=%s", sent, len(config.chat_ids), silent)
    return sent
