"""Wake idle workers the moment the queue changes, without a polling interval.

`announce()` is called inside the transaction that changes the queue. `Waiter.wait()` sleeps in one
`select()` and returns as soon as another process may have committed such a change, a local event
was poked (a run finished, a signal arrived: both write a byte to the waiter's self-pipe), a watched
file descriptor became readable (a companion process exited), or its timeout passed.

SQLite: every commit, from any process (the API, a command, the listener, the MCP server, a plain
`sqlite3` shell), writes the database's WAL file; the kernel reports that write through inotify on
the database's folder, so an idle worker sleeps without a single wake-up until something is written.
Where inotify is missing (not Linux) the waiter falls back to reading `PRAGMA data_version` every few
milliseconds. The worker's slow safety poll (PULSE_POLL_SECONDS) covers anything else.

PostgreSQL: `NOTIFY reeve_pulses` is sent inside the changing transaction, so it is delivered only
if and when it commits; the waiter LISTENs on its own connection and sleeps on that socket.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import sqlite3
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import OperationalError, connection

from pulses.db import is_postgres

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

CHANNEL = "reeve_pulses"
SQLITE_CHECK_SECONDS = 0.004  # the fallback without inotify

IN_MODIFY = 0x002
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


def announce() -> None:
    """Tell idle workers the queue changed (delivered when the current transaction commits)."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")


class Waiter:
    """Blocks until the queue may have changed, a local poke, a watched fd, or a timeout."""

    poll_seconds: float | None = None  # a waiter without a kernel notification checks this often

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._watched: list[int] = []

    @property
    def wakeup_fd(self) -> int:
        """The self-pipe's writing end: for `signal.set_wakeup_fd`."""
        return self._write_fd

    def watch(self, fd: int) -> None:
        """Also return when `fd` becomes readable (a pidfd: a child process exited), even when busy."""
        self._watched.append(fd)

    def poke(self) -> None:
        """Wake the waiting thread from inside this process (any thread; takes no lock)."""
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:  # the pipe is full of pokes already: the waiter will wake
            pass

    def wait(self, timeout: float, *, local_only: bool = False) -> bool:
        """Return on a poke, on a change committed elsewhere (unless `local_only`), or after `timeout`;
        True when only such a change woke it (no poke, no watched fd, not the timeout)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            fds = [self._read_fd, *self._watched]
            step = deadline - time.monotonic()
            if not local_only:
                fds += self._change_fds()
                if self.poll_seconds is not None:
                    step = min(step, self.poll_seconds)
            readable, _, _ = select.select(fds, [], [], max(step, 0.0))
            local = self._read_fd in readable
            if local:
                _drain(self._read_fd)
            changed = self._consume(
                [fd for fd in readable if fd != self._read_fd and fd not in self._watched]
            )
            if local or any(fd in self._watched for fd in readable):
                return False
            if changed:
                return True
            if not local_only and self.poll_seconds is not None and self._changed_since_last_poll():
                return True
            if time.monotonic() >= deadline:
                return False

    def forget_changes(self) -> None:
        """Drop the change notifications received so far, without waiting: the caller is about to
        read the queue itself (a claim sees every commit made before it), so they need not wake the
        next wait; the worker's own writes (its heartbeat) would otherwise wake it straight away."""
        if fds := self._change_fds():
            readable, _, _ = select.select(fds, [], [], 0)
            self._consume(readable)
        if self.poll_seconds is not None:
            self._changed_since_last_poll()

    def _change_fds(self) -> list[int]:
        """File descriptors that become readable when another process commits a change."""
        return []

    def _consume(self, readable: list[int]) -> bool:
        """Read what made the change fds readable, so the next wait sleeps again; True if it was a
        change to the queue's database."""
        return False

    def _changed_since_last_poll(self) -> bool:
        return False

    def reconnect(self) -> None:
        """Open the waiter's own database connection again (after the database went away)."""

    def close(self) -> None:
        """Release whatever the waiter holds."""
        os.close(self._read_fd)
        os.close(self._write_fd)


def _drain(fd: int) -> None:
    """Read a non-blocking fd until it is empty."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return


class SqliteWaiter(Waiter):
    """inotify on the database's folder: a write to the database or its WAL wakes the waiter."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = Path(path)
        # Its own connection keeps the WAL file in place (SQLite deletes it when the last one closes).
        self._conn = sqlite3.connect(
            path, timeout=settings.SQLITE_BUSY_TIMEOUT_SECONDS, check_same_thread=False
        )
        self._version = self._data_version()
        self._names = {self._path.name.encode(), f"{self._path.name}-wal".encode()}
        self._inotify = _inotify_watch(self._path.parent)
        if self._inotify is None:
            self.poll_seconds = SQLITE_CHECK_SECONDS
            logger.warning("waiter_polling reason=no_inotify interval_s=%s", SQLITE_CHECK_SECONDS)

    def _data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _changed_since_last_poll(self) -> bool:
        version = self._data_version()
        changed, self._version = version != self._version, version
        return changed

    def _change_fds(self) -> list[int]:
        return [] if self._inotify is None else [self._inotify]

    def _consume(self, readable: list[int]) -> bool:
        """Read every pending inotify event; True if one was a write to the database or its WAL."""
        if not readable:
            return False
        relevant = False
        while True:
            try:
                data = os.read(self._inotify, 65536)
            except BlockingIOError:
                return relevant
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0")
                relevant = relevant or name in self._names
                offset += _EVENT.size + size

    def close(self) -> None:
        self._conn.close()
        if self._inotify is not None:
            os.close(self._inotify)
        super().close()


def _inotify_watch(folder: Path) -> int | None:
    """An inotify fd reporting writes to files in `folder`; None where the kernel has no inotify.

    The folder, not the WAL file: a WAL that is deleted and made again (the last connection closed,
    `restore_db`) is still seen; events for the folder's other files are read and ignored."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter is linked with
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError, TypeError):
        return None
    fd = init(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        logger.warning("inotify_unavailable error=%s", errno.errorcode.get(ctypes.get_errno(), "?"))
        return None
    if add(fd, os.fsencode(folder), IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0:
        logger.warning("inotify_watch_failed folder=%s error=%s", folder, os.strerror(ctypes.get_errno()))
        os.close(fd)
        return None
    return fd


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

    def _listen(self) -> psycopg.Connection:
        import psycopg  # only PostgreSQL deployments pay for it

        with _as_django_error():
            conn = psycopg.connect(**self._params, autocommit=True)
            conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def reconnect(self) -> None:
        self._conn.close()
        self._conn = self._listen()

    def _change_fds(self) -> list[int]:
        with _as_django_error():
            return [self._conn.fileno()]

    def _consume(self, readable: list[int]) -> bool:
        if not readable:
            return False
        with _as_django_error():  # the connection's socket: a NOTIFY, or a loss that raises here
            pgconn = self._conn.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                pass
        return True

    def close(self) -> None:
        self._conn.close()
        super().close()


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
    return PostgresWaiter(db) if is_postgres() else SqliteWaiter(str(db["NAME"]))
