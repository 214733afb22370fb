"""Calls from the listener's event loop: database functions on the thread Django's connection lives
on (`in_thread`), and Bot API calls and waits that a stop request cuts short (`StopRequest`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from telegram.error import TelegramError

STOPPED = object()  # what a call returns when a stop request cancelled it


def in_thread(func: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
    """Run a database function from the event loop, on the thread Django's connection lives on."""

    def call() -> Any:
        # A long-running process: drop a connection the database closed or that outlived its age.
        close_old_connections()
        return func(*args, **kwargs)

    return sync_to_async(call, thread_sensitive=True)()


class StopRequest:
    """The listener's stop: set from a signal handler or when polling ends; every wait and Bot API
    call made through it returns at once when it is set. `start` makes its event on the running loop."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def start(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        if self._event is not None:
            self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event is not None and self._event.is_set()

    async def call(self, call: Awaitable[Any]) -> Any:
        """Await a Bot API call that a stop request cancels; STOPPED if it was cancelled."""
        assert self._event is not None
        task = asyncio.ensure_future(call)
        stopper = asyncio.ensure_future(self._event.wait())
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

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when a stop request comes."""
        assert self._event is not None
        with suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
