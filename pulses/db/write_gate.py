"""One SQLite write transaction at a time, queued by the kernel instead of SQLite's busy handler.

SQLite allows one writer; a writer that finds the lock taken sleeps in SQLite's busy handler in
growing steps (1, 2, 5 … 100 ms) and retries, so under contention a write waits far longer than the
write it waits for. Every write in `pulses.queue` first takes a thread lock and then an flock on a
file beside the database: the other threads and processes (API, worker, listener) wait in line and
wake the moment the writer is done. Re-entrant within a thread. On PostgreSQL this is a no-op.

The gate waits no longer than SQLite's own busy timeout: a process that holds it longer (stuck, or
anyone able to open the file) makes the write fail with WriteGateBusy, an OperationalError, so the
API answers 503 with Retry-After and the worker waits as for any database outage. Across processes
the wait polls a non-blocking flock (flock has no timeout); within a process, threads queue on a lock.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import OperationalError

from pulses.db import is_postgres

_THREAD_GATE = threading.Lock()
_held = threading.local()

P = ParamSpec("P")
R = TypeVar("R")
POLL_SECONDS = (0.0002, 0.0005, 0.001, 0.002)  # then the last, until the busy timeout


class WriteGateBusy(OperationalError):
    """Another process held the write gate for longer than the busy timeout."""

    def __init__(self, path: str, seconds: float) -> None:
        super().__init__(f"database is locked: {path} was held for more than {seconds:g} s; try again")


def _timeout() -> float:
    return float(getattr(settings, "SQLITE_BUSY_TIMEOUT_SECONDS", 30))


def _flock_within(gate, path: str, deadline: float, timeout: float) -> None:
    attempt = 0
    while True:
        try:
            fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise WriteGateBusy(path, timeout) from None
            time.sleep(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)])
            attempt += 1


@contextmanager
def write_gate() -> Iterator[None]:
    """Hold the gate for one short write transaction."""
    if is_postgres() or getattr(_held, "depth", 0):
        _held.depth = getattr(_held, "depth", 0) + 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    path = f"{settings.DATABASES['default']['NAME']}.write-gate"
    timeout = _timeout()
    deadline = time.monotonic() + timeout
    if not _THREAD_GATE.acquire(timeout=timeout):
        raise WriteGateBusy(path, timeout)
    try:
        with open(path, "a") as gate:
            _flock_within(gate, path, deadline, timeout)
            _held.depth = 1
            try:
                yield
            finally:
                _held.depth = 0
                fcntl.flock(gate, fcntl.LOCK_UN)
    finally:
        _THREAD_GATE.release()


def gated(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` inside the write gate."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with write_gate():
            return func(*args, **kwargs)

    return wrapper
