"""Online database backups and their restore.

SQLite is copied with its backup API in one step: the copy reads one consistent snapshot while the
worker, API and listener keep writing (WAL readers never block writers). PostgreSQL is dumped with
`pg_dump --clean --if-exists`, so the dump itself empties what it restores over. Either way the result
is gzip-compressed, named like the deployment guide's backups (`pulse_queue_YYYYmmdd_HHMMSS.db.gz`;
`.sql.gz` for a PostgreSQL dump), and backups older than the retention period are deleted.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import connections

from pulses.db import is_postgres
from pulses.ops import backup_checks

logger = logging.getLogger(__name__)

DEFAULT_KEEP_DAYS = 30
COPY_CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup or restore could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    removed: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreResult:
    database: str
    saved_previous: Path | None


def _database() -> dict:
    return settings.DATABASES["default"]


def is_sqlite() -> bool:
    return not is_postgres()


def default_directory() -> Path:
    """Backups live beside the data: `~/.reeve/backups` for the default setup."""
    return Path(settings.REEVE_HOME) / "backups"


def _stem() -> str:
    return Path(_database()["NAME"]).stem if is_sqlite() else "pulse_queue"


def _suffix() -> str:
    return ".db.gz" if is_sqlite() else ".sql.gz"


def backup(*, directory: Path | None = None, keep_days: int = DEFAULT_KEEP_DAYS) -> BackupResult:
    """Write a consistent, compressed copy of the database into `directory`; prune old copies.

    `keep_days` 0 keeps every backup.
    """
    directory = Path(directory or default_directory()).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    target = _free_name(directory, datetime.now().strftime("%Y%m%d_%H%M%S"))
    partial = target.with_name(f".{target.name}.partial")
    try:
        if is_sqlite():
            _sqlite_backup(partial)
        else:
            dump_postgres(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    removed = prune(directory, keep_days=keep_days, keep=target) if keep_days > 0 else []
    size = target.stat().st_size
    logger.info("backup_written path=%s bytes=%s pruned=%s", target, size, len(removed))
    return BackupResult(path=target, size=size, removed=removed)


def _free_name(directory: Path, stamp: str) -> Path:
    candidate = directory / f"{_stem()}_{stamp}{_suffix()}"
    n = 2
    while candidate.exists():
        candidate = directory / f"{_stem()}_{stamp}_{n}{_suffix()}"
        n += 1
    return candidate


def _sqlite_backup(gz_path: Path) -> None:
    source_path = Path(_database()["NAME"])
    if not source_path.is_file():
        raise BackupError(f"database file {source_path} does not exist: check PULSE_DB_PATH")
    with tempfile.TemporaryDirectory(dir=gz_path.parent, prefix=".backup-") as tmp:
        copy_path = Path(tmp) / "copy.db"
        source = sqlite3.connect(source_path, timeout=settings.SQLITE_BUSY_TIMEOUT_SECONDS)
        copy = sqlite3.connect(copy_path)
        try:
            # pages=-1: the whole database in one step, so the copy is one snapshot; a stepwise copy
            # would restart whenever another process writes.
            source.backup(copy, pages=-1)
            (ok,) = copy.execute("PRAGMA integrity_check").fetchone()
        except sqlite3.Error as exc:
            raise BackupError(f"could not copy {source_path}: {exc}") from exc
        finally:
            copy.close()
            source.close()
        if ok != "ok":
            raise BackupError(f"the copy of {source_path} failed its integrity check: {ok}")
        with open(copy_path, "rb") as raw, gzip.open(gz_path, "wb") as packed:
            shutil.copyfileobj(raw, packed, COPY_CHUNK)


def _pg_env_and_args(db: dict | None = None) -> tuple[dict[str, str], list[str]]:
    db = db or _database()
    env = {**os.environ}
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    args = []
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if db.get(key):
            args += [flag, str(db[key])]
    return env, [*args, "--dbname", str(db["NAME"])]


def dump_postgres(gz_path: Path, db: dict | None = None) -> None:
    """`pg_dump` the database `db` (default: the configured one), gzip-compressed, into `gz_path`."""
    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump not found: install the PostgreSQL client (postgresql-client)")
    env, args = _pg_env_and_args(db)
    # stderr goes to a file, not a pipe: nobody reads it while the dump streams.
    with gzip.open(gz_path, "wb") as packed, tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            ["pg_dump", "--clean", "--if-exists", "--no-owner", *args],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert proc.stdout is not None
        shutil.copyfileobj(proc.stdout, packed, COPY_CHUNK)
        proc.stdout.close()
        _wait_for(proc, errors, failure="pg_dump failed")


def _wait_for(proc: subprocess.Popen, errors: IO[bytes], *, failure: str) -> None:
    """Wait for a PostgreSQL client; when it failed, raise BackupError: `failure` and its stderr."""
    proc.wait()
    if proc.returncode != 0:
        errors.seek(0)
        raise BackupError(f"{failure}: {errors.read().decode(errors='replace').strip()}")


def prune(directory: Path, *, keep_days: int, keep: Path | None = None) -> list[Path]:
    """Delete this database's backups in `directory` older than `keep_days` days."""
    cutoff = (datetime.now() - timedelta(days=keep_days)).timestamp()
    removed = []
    for path in sorted(directory.glob(f"{_stem()}_*{_suffix()}")):
        if path != keep and path.stat().st_mtime < cutoff:
            path.unlink()
            removed.append(path)
    return removed


def restore(backup_file: Path) -> RestoreResult:
    """Replace the database with a backup. The services must be stopped (no process may hold it open)."""
    backup_file = Path(backup_file).expanduser()
    if not backup_file.is_file():
        raise BackupError(f"no backup file {backup_file}")
    connections.close_all()
    if is_sqlite():
        return _sqlite_restore(backup_file)
    return _pg_restore(backup_file)


def _open_backup(path: Path):
    with open(path, "rb") as probe:
        packed = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if packed else open(path, "rb")  # noqa: SIM115


def holders(db_path: Path) -> list[tuple[int, str]]:
    """Other processes with the SQLite file (or its WAL) open, as (pid, command) pairs (Linux /proc)."""
    wanted = {str(db_path.resolve()), f"{db_path.resolve()}-wal"}
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            targets = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            if targets & wanted:
                found.append((int(proc.name), (proc / "comm").read_text().strip()))
        except OSError:  # gone, or another user's process
            continue
    return found


def _sqlite_restore(backup_file: Path) -> RestoreResult:
    db_path = Path(_database()["NAME"])
    if busy := holders(db_path):
        names = ", ".join(f"{pid} ({comm})" for pid, comm in busy)
        raise BackupError(
            f"{db_path} is open in process {names}: stop the services first "
            "(sudo systemctl stop reeve-telegram reeve-daemon)"
        )
    db_path.parent.mkdir(parents=True, exist_ok=True)
    incoming = db_path.with_name(f".{db_path.name}.restoring")
    try:
        with _open_backup(backup_file) as src, open(incoming, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        try:
            check = sqlite3.connect(incoming)
            try:
                (ok,) = check.execute("PRAGMA integrity_check").fetchone()
                tables, migrations = backup_checks.sqlite_tables(check)
            finally:
                check.close()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{backup_file} is not a SQLite backup: {exc}") from exc
        if ok != "ok":
            raise BackupError(f"{backup_file} failed its integrity check: {ok}")
        _check_reeve_schema(backup_file, tables=tables, migrations=migrations)
        saved = None
        if db_path.exists():
            saved = db_path.with_name(f"{db_path.name}.before-restore-{datetime.now():%Y%m%d_%H%M%S}")
            os.replace(db_path, saved)
        # A WAL left by the old database must never be replayed into the restored one: it goes
        # with the old file.
        for suffix in ("-wal", "-shm"):
            side = db_path.with_name(db_path.name + suffix)
            if side.exists():
                if saved is not None and suffix == "-wal":
                    os.replace(side, saved.with_name(saved.name + suffix))
                else:
                    side.unlink()
        os.replace(incoming, db_path)
    finally:
        incoming.unlink(missing_ok=True)
    logger.info("backup_restored from=%s to=%s previous=%s", backup_file, db_path, saved)
    return RestoreResult(database=str(db_path), saved_previous=saved)


def _check_reeve_schema(
    backup_file: Path, *, tables: dict[str, set[str]], migrations: set[tuple[str, str]]
) -> None:
    """Refuse a sound database that is not Reeve's (an empty file, another application's, a stub with
    tables named like Reeve's): swapping it in would lose the queue."""
    try:
        backup_checks.check_schema(tables=tables, migrations=migrations)
    except backup_checks.NotReeveBackup as exc:
        raise BackupError(
            f"{backup_file} is not a Reeve database ({exc}): restore a file made by backup_db; "
            "nothing was changed"
        ) from None


PG_DUMP_HEADER = b"-- PostgreSQL database dump"


def pg_sessions() -> list[tuple[int, str]]:
    """Other client sessions on the PostgreSQL database, as (server pid, application or address)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pid, COALESCE(NULLIF(application_name, ''), host(client_addr), 'local socket') "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' ORDER BY pid"
        )
        found = [(int(pid), str(who)) for pid, who in cursor.fetchall()]
    connections.close_all()
    return found


def _pg_restore(backup_file: Path) -> RestoreResult:
    if shutil.which("psql") is None:
        raise BackupError("psql not found: install the PostgreSQL client (postgresql-client)")
    try:
        with _open_backup(backup_file) as src:
            head = src.read(4096)
    except (OSError, EOFError) as exc:
        raise BackupError(f"{backup_file} is not a PostgreSQL backup: {exc}") from exc
    if PG_DUMP_HEADER not in head:
        raise BackupError(f"{backup_file} is not a PostgreSQL backup (pg_dump output from backup_db)")
    psql_version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout
    if not backup_checks.psql_restricts(psql_version):
        raise BackupError(
            f"{psql_version.strip() or 'psql'} cannot run a dump with its commands restricted (\\restrict): "
            "install a PostgreSQL client of release 13.22, 14.19, 15.14, 16.10, 17.6 or later; nothing "
            "was changed"
        )
    try:
        with _open_backup(backup_file) as src:
            reading = backup_checks.read_dump(src)
    except backup_checks.NotReeveBackup as exc:
        raise BackupError(
            f"{backup_file} is not a Reeve database ({exc}): restore a file made by backup_db"
        ) from None
    _check_reeve_schema(backup_file, tables=reading.tables, migrations=reading.migrations)
    # The dump drops and recreates every table: a worker or API still connected would block it
    # (or lose its rows mid-run), so refuse like the SQLite restore does.
    if busy := pg_sessions():
        names = ", ".join(f"{pid} ({who})" for pid, who in busy)
        raise BackupError(
            f"database {_database()['NAME']} is in use by server process {names}: stop the services "
            "first (sudo systemctl stop reeve-telegram reeve-daemon)"
        )
    env, args = _pg_env_and_args()
    with _open_backup(backup_file) as src, tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            ["psql", "--quiet", "--single-transaction", "-v", "ON_ERROR_STOP=1", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env,
        )
        assert proc.stdin is not None
        try:
            # psql gets Reeve's own `\restrict` first: any meta-command in the file is then refused.
            for line in backup_checks.restricted(src, skip=reading.restrict_lines):
                proc.stdin.write(line)
        except BrokenPipeError:  # psql stopped early; its stderr says why
            pass
        finally:
            try:
                proc.stdin.close()  # flushes what is buffered: psql may have stopped by then too
            except BrokenPipeError:
                pass
        _wait_for(proc, errors, failure=f"psql could not restore {backup_file}")
    logger.info("backup_restored from=%s to=postgresql:%s", backup_file, _database()["NAME"])
    return RestoreResult(database=f"postgresql:{_database()['NAME']}", saved_previous=None)
