"""Wake idle workers the moment the queue changes, without a polling interval.

`announce()` is called inside the transaction that changes the queue. `Waiter.wait()` returns as soon
as another connection may have committed such a change, or a local event (a run finished) was poked.

SQLite: `PRAGMA data_version` changes whenever another connection commits to the file; reading it is a
few microseconds and touches no table, so the waiter checks it every few milliseconds.

PostgreSQL: `NOTIFY reeve_pulses` is sent inside the changing transaction, so it is delivered only
if and when it commits; the waiter LISTENs on its own connection and sleeps in select() on that
socket and a self-pipe (for local pokes): no polling at all between changes.
"""

from __future__ import annotations

import logging
import os
import select
import sqlite3
import threading
import time

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

CHANNEL = "reeve_pulses"
SQLITE_CHECK_SECONDS = 0.004


def announce() -> None:
    """Tell idle workers the queue changed (delivered when the current transaction commits)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")


class Waiter:
    """Blocks until the queue may have changed, a local poke, or a timeout."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def poke(self) -> None:
        """Wake the waiting thread from inside this process."""
        self._event.set()

    def wait(self, timeout: float, *, local_only: bool = False) -> None:
        """Return on a poke, on a change committed elsewhere (unless `local_only`), or after `timeout`."""
        self._event.wait(timeout)
        self._event.clear()

    def close(self) -> None:
        """Release whatever the waiter holds."""


class SqliteWaiter(Waiter):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._conn = sqlite3.connect(
            path, timeout=settings.SQLITE_BUSY_TIMEOUT_SECONDS, check_same_thread=False
        )
        self._version = self._data_version()

    def _data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def wait(self, timeout: float, *, local_only: bool = False) -> None:
        if local_only:
            super().wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._event.wait(min(SQLITE_CHECK_SECONDS, remaining)):
                self._event.clear()
                return
            version = self._data_version()
            if version != self._version:
                self._version = version
                return

    def close(self) -> None:
        self._conn.close()


class PostgresWaiter(Waiter):
    def __init__(self, db: dict) -> None:
        super().__init__()
        import psycopg

        params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
        }
        params.update({k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str | int)})
        self._conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def poke(self) -> None:
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:  # the pipe is full of pokes already: the waiter will wake
            pass

    def wait(self, timeout: float, *, local_only: bool = False) -> None:
        watched = [self._read_fd] if local_only else [self._read_fd, self._conn.fileno()]
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._read_fd in readable:
            while True:
                try:
                    if not os.read(self._read_fd, 4096):
                        break
                except BlockingIOError:
                    break
        if self._conn.fileno() in readable:
            pgconn = self._conn.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                pass

    def close(self) -> None:
        self._conn.close()
        os.close(self._read_fd)
        os.close(self._write_fd)


def make_waiter() -> Waiter:
    """The fastest waiter the configured database offers."""
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return SqliteWaiter(str(db["NAME"]))
    if connection.vendor == "postgresql":
        return PostgresWaiter(db)
    return Waiter()
