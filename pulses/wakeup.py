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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import OperationalError, connection

if TYPE_CHECKING:
    import psycopg

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

    def reconnect(self) -> None:
        """Open the waiter's own database connection again (after the database went away)."""

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
        params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
        }
        params.update({k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str | int)})
        self._params = {k: v for k, v in params.items() if v is not None}
        self._conn = self._listen()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def poke(self) -> None:
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:  # the pipe is full of pokes already: the waiter will wake
            pass

    def _listen(self) -> psycopg.Connection:
        import psycopg  # only PostgreSQL deployments pay for it

        with _as_django_error():
            conn = psycopg.connect(**self._params, autocommit=True)
            conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def reconnect(self) -> None:
        self._conn.close()
        self._conn = self._listen()

    def wait(self, timeout: float, *, local_only: bool = False) -> None:
        if local_only:
            watched = [self._read_fd]
        else:
            with _as_django_error():
                watched = [self._read_fd, self._conn.fileno()]
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._read_fd in readable:
            while True:
                try:
                    if not os.read(self._read_fd, 4096):
                        break
                except BlockingIOError:
                    break
        if any(fd != self._read_fd for fd in readable):  # the connection's socket: a NOTIFY or a loss
            with _as_django_error():
                pgconn = self._conn.pgconn
                pgconn.consume_input()
                while pgconn.notifies() is not None:
                    pass

    def close(self) -> None:
        self._conn.close()
        os.close(self._read_fd)
        os.close(self._write_fd)


@contextmanager
def _as_django_error() -> Iterator[None]:
    """The LISTEN connection is psycopg's own: its failures are raised as Django's OperationalError,
    which is what the worker waits out (a database restart, a failover)."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise OperationalError(str(exc)) from exc


def make_waiter() -> Waiter:
    """The fastest waiter the configured database offers."""
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return SqliteWaiter(str(db["NAME"]))
    if connection.vendor == "postgresql":
        return PostgresWaiter(db)
    return Waiter()
