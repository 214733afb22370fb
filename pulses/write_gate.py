"""One SQLite write transaction at a time, queued by the kernel instead of SQLite's busy handler.

SQLite allows one writer; a writer that finds the lock taken sleeps in SQLite's busy handler in
growing steps (1, 2, 5 … 100 ms) and retries, so under contention a write waits far longer than the
write it waits for. Every write in `pulses.queue` first takes a thread lock and then an flock on a
file beside the database: the other threads and processes (API, worker, listener) wait in line and
wake the moment the writer is done. Re-entrant within a thread. On PostgreSQL this is a no-op.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connection

_THREAD_GATE = threading.Lock()
_held = threading.local()

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def write_gate() -> Iterator[None]:
    """Hold the gate for one short write transaction."""
    if connection.vendor != "sqlite" or getattr(_held, "depth", 0):
        _held.depth = getattr(_held, "depth", 0) + 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    path = f"{settings.DATABASES['default']['NAME']}.write-gate"
    with _THREAD_GATE, open(path, "a") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
            fcntl.flock(gate, fcntl.LOCK_UN)


def gated(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` inside the write gate."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with write_gate():
            return func(*args, **kwargs)

    return wrapper
