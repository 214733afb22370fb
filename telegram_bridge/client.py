"""The Bot API client: configuration from settings, a python-telegram-bot `Bot`, and how to run it.

Everything that talks to Telegram builds its `Bot` here, so the base URL (`TELEGRAM_API_BASE_URL`),
the timeouts and the reading of `RetryAfter` are the same for the listener, `notify` and alerts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from telegram import Bot
from telegram.error import RetryAfter
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

T = TypeVar("T")

# Opt in to python-telegram-bot's coming behaviour (time periods as timedelta) now: without it every
# 429 prints a deprecation warning, and retry_after_seconds below reads both forms anyway.
os.environ.setdefault("PTB_TIMEDELTA", "true")

# Seconds the HTTP client waits beyond the long-poll timeout before it calls the poll lost.
POLL_READ_MARGIN = 10.0


class TelegramNotConfigured(Exception):
    """TELEGRAM_BOT_TOKEN or TELEGRAM_CHAT_ID is missing or malformed."""


@dataclass(frozen=True)
class TelegramConfig:
    token: str
    chat_ids: tuple[int, ...]
    base_url: str

    @classmethod
    def from_settings(cls) -> TelegramConfig:
        """Read the TELEGRAM_* settings; a chat id that is not an integer raises TelegramNotConfigured."""
        raw = settings.TELEGRAM_CHAT_ID
        if isinstance(raw, str | int):
            raw = [raw]
        chat_ids: list[int] = []
        for item in raw:
            for part in str(item).split(","):
                if not part.strip():
                    continue
                try:
                    chat_ids.append(int(part.strip()))
                except ValueError:
                    raise TelegramNotConfigured(
                        f"TELEGRAM_CHAT_ID must be chat ids (integers, comma-separated); got {part.strip()!r}"
                    ) from None
        return cls(
            token=(settings.TELEGRAM_BOT_TOKEN or "").strip(),
            chat_ids=tuple(dict.fromkeys(chat_ids)),
            base_url=settings.TELEGRAM_API_BASE_URL or "https://api.telegram.org/bot",
        )

    @property
    def is_configured(self) -> bool:
        return bool(self.token and self.chat_ids)

    def require(self) -> TelegramConfig:
        """Self, or TelegramNotConfigured naming the variable that is missing."""
        if not self.token:
            raise TelegramNotConfigured(
                "Telegram is not configured: set TELEGRAM_BOT_TOKEN (the token @BotFather gave you)"
            )
        if not self.chat_ids:
            raise TelegramNotConfigured(
                "Telegram is not configured: set TELEGRAM_CHAT_ID (your chat id, or a comma-separated list)"
            )
        return self


def file_base_url(base_url: str) -> str:
    """The Bot API's file URL beside `TELEGRAM_API_BASE_URL`: `…/bot` becomes `…/file/bot`, as on
    api.telegram.org and a self-hosted Bot API server."""
    head, bot, tail = base_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if bot else f"{base_url.rstrip('/')}/file/bot"


def make_bot(config: TelegramConfig, *, request_timeout: float = 15.0) -> Bot:
    """A `Bot` for `config`; long polls get their own connection, so a send never waits behind one."""
    # httpx logs every request URL at INFO, and Bot API URLs carry the token: keep them out of logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return Bot(
        config.token,
        base_url=config.base_url,
        base_file_url=file_base_url(config.base_url),
        request=_request(pool_size=4, timeout=request_timeout),
        # get_updates adds its `timeout` to the read timeout, so a healthy long poll never times out.
        get_updates_request=_request(pool_size=1, timeout=request_timeout, read_timeout=POLL_READ_MARGIN),
    )


def _request(*, pool_size: int, timeout: float, read_timeout: float | None = None) -> HTTPXRequest:
    """An HTTP connection pool whose every wait is `timeout` (reading: `read_timeout` when given)."""
    return HTTPXRequest(
        connection_pool_size=pool_size,
        connect_timeout=timeout,
        read_timeout=timeout if read_timeout is None else read_timeout,
        write_timeout=timeout,
        pool_timeout=timeout,
    )


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds (python-telegram-bot returns int or timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, even when the caller sits in an event loop
    (the MCP server's tools do): then it runs on a private loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="telegram-send", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
