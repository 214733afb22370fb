"""One API write at a time on SQLite, queued by the kernel instead of SQLite's busy handler.

SQLite allows one writer; a writer that finds the lock taken sleeps in SQLite's busy handler in
growing steps (1, 2, 5 … 100 ms) and retries, which makes the slowest 1 % of concurrent API writes
tens of milliseconds slower than they need to be. Taking a thread lock and then an flock on a file
beside the database before writing makes the other gunicorn threads and workers wait in line and wake
the moment the writer is done. Other processes (the worker) are unaffected: they still meet SQLite's
own lock. On PostgreSQL this is a no-op.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

_THREAD_GATE = threading.Lock()


@contextmanager
def write_gate() -> Iterator[None]:
    """Hold the gate for one short write transaction."""
    if connection.vendor != "sqlite":
        yield
        return
    path = f"{settings.DATABASES['default']['NAME']}.write-gate"
    with _THREAD_GATE, open(path, "a") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
