"""Carry the original Reeve's queue over into Reeve's schema (`manage.py import_legacy`).

Order, and why: the original is copied first (a file beside it, or a dump for PostgreSQL); then one
transaction reads every row, drops the original's tables, applies Reeve's migrations and writes the
pulses back. SQLite and PostgreSQL both roll DDL back, so a failure anywhere leaves the original
exactly as it was. What each row becomes (a chain of retries folded into one pulse with its
attempts) is pulses/ops/legacy_rows.py's.
"""

from __future__ import annotations

import io
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import environ
from django.conf import settings
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Case, DateTimeField, Value, When

from pulses.models import Pulse, PulseAttempt
from pulses.ops import backup, legacy
from pulses.ops.legacy_rows import ImportResult, OriginalRow, check_rows, plan
from reeve_site import original_db_url

ALIAS = "original_reeve"
COLUMNS = (
    "id, {scheduled_at}, prompt, CAST(priority AS TEXT), session_id, CAST(sticky_notes AS TEXT), "
    "CAST(status AS TEXT), {executed_at}, execution_duration_ms, error_message, retry_count, max_retries, "
    "{created_at}, created_by, CAST(tags AS TEXT)"
)


def _columns(vendor: str) -> str:
    """The SELECT list of the original's rows. SQLite stores anything in a DATETIME column, and
    Django's converter for it decodes the bytes as UTF-8 (a BLOB ended in a traceback): there, a
    time is read as the text it is, or as a marker `check_rows` reports."""
    if vendor != "sqlite":
        return COLUMNS.format(scheduled_at="scheduled_at", executed_at="executed_at", created_at="created_at")
    return COLUMNS.format(
        **{
            column: f"CASE WHEN typeof({column}) IN ('text', 'null') THEN {column} "
            f"ELSE '(stored as ' || typeof({column}) || ')' END"
            for column in ("scheduled_at", "executed_at", "created_at")
        }
    )


@dataclass(frozen=True)
class _Target:
    alias: str
    db: dict[str, Any]

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.db["NAME"]) if self.db["ENGINE"].endswith("sqlite3") else None

    def release(self) -> None:
        if self.alias != DEFAULT_DB_ALIAS:
            connections[self.alias].close()
            del connections[self.alias]
            del connections.settings[self.alias]


def _target(value: str | None) -> tuple[_Target, str]:
    """The database to convert (`value`: a file, the original's URL, or None for the configured one),
    and, when that is not the configured database, the setting that would make it so."""
    default = connections.settings[DEFAULT_DB_ALIAS]
    if not value:
        return _Target(DEFAULT_DB_ALIAS, default), ""
    try:
        if "://" in value:
            original = original_db_url.parse(value, base_dir=Path(settings.BASE_DIR))
        else:
            original = original_db_url.OriginalDatabase(sqlite_path=Path(value).expanduser().absolute())
    except original_db_url.OriginalUrlError as exc:
        raise legacy.LegacyError(str(exc)) from None
    on_sqlite = default["ENGINE"].endswith("sqlite3")
    if original.sqlite_path:
        if on_sqlite and Path(default["NAME"]).resolve() == original.sqlite_path.resolve():
            return _Target(DEFAULT_DB_ALIAS, default), ""
        config = {**default} if on_sqlite else {"ENGINE": "django.db.backends.sqlite3"}
        config["NAME"] = original.sqlite_path
        hint = f"PULSE_DB_PATH={original.sqlite_path}"
    else:
        config = environ.Env.db_url_config(original.database_url)
        if all(config.get(k) == default.get(k) for k in ("ENGINE", "HOST", "PORT", "NAME")):
            return _Target(DEFAULT_DB_ALIAS, default), ""
        hint = f"DATABASE_URL={original.describe()}"
    configured = connections.configure_settings({DEFAULT_DB_ALIAS: default, ALIAS: config})
    connections.settings[ALIAS] = configured[ALIAS]
    return _Target(ALIAS, connections.settings[ALIAS]), hint


def import_original(value: str | None = None) -> ImportResult:
    """Convert the database (`value`, default the configured one) from the original's schema to
    Reeve's; a database already in Reeve's schema is left as it is. Raises LegacyError otherwise."""
    target, hint = _target(value)
    try:
        result = _import(target)
    finally:
        target.release()
    result.other_database = hint
    return result


def _import(target: _Target) -> ImportResult:
    where = legacy.describe(target.db)
    conn = connections[target.alias]
    if target.sqlite_path:
        # Read-only first: a file that is not an SQLite database, or not a queue, is left untouched.
        schema = legacy.inspect_sqlite_file(target.sqlite_path)
    else:
        try:
            with conn.cursor() as cursor:
                schema = legacy.inspect_cursor(cursor, conn.vendor)
        except DatabaseError as exc:
            raise legacy.LegacyError(f"{where} cannot be opened: {exc}") from None
    if schema.kind == legacy.REEVE:
        return ImportResult(database=where, already_reeve=True, by_status=_by_status(target.alias))
    if not schema.is_original:
        raise legacy.LegacyError(
            f"{where} holds neither the original Reeve's queue nor Reeve's: nothing was imported or changed"
        )
    if target.sqlite_path and (held := backup.holders(target.sqlite_path)):
        users = ", ".join(f"{name} (pid {pid})" for pid, name in held)
        raise legacy.LegacyError(
            f"{where} is open in {users}: stop the original Reeve first; nothing was changed"
        )
    copy = _keep_copy(target)
    conn.ensure_connection()
    if target.sqlite_path:
        # SQLite ignores this pragma inside a transaction, and its schema editor needs it off.
        conn.disable_constraint_checking()
    try:
        with transaction.atomic(using=target.alias):
            with conn.cursor() as cursor:
                columns = _columns(conn.vendor)
                cursor.execute(f"SELECT {columns} FROM pulses ORDER BY id")  # noqa: S608 - constants only
                rows = [OriginalRow(*row) for row in cursor.fetchall()]
                check_rows(rows)  # before anything is dropped
                cursor.execute("DROP TABLE pulses")
                cursor.execute("DROP TABLE IF EXISTS alembic_version")
                if conn.vendor == "postgresql":
                    cursor.execute("DROP TYPE IF EXISTS pulsepriority, pulsestatus")
            call_command(
                "migrate", database=target.alias, interactive=False, verbosity=0, stdout=io.StringIO()
            )
            result = _write(target.alias, rows)
    finally:
        if target.sqlite_path:
            conn.enable_constraint_checking()
    result.database, result.backup = where, str(copy)
    result.by_status = _by_status(target.alias)
    return result


def _keep_copy(target: _Target) -> Path:
    """A copy of the original, made before anything changes: beside the file, or a pg_dump."""
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    if not target.sqlite_path:
        path = backup.default_directory() / f"original_reeve_{stamp}.sql.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            backup.dump_postgres(path, target.db)
        except backup.BackupError as exc:
            path.unlink(missing_ok=True)
            raise legacy.LegacyError(
                f"no copy of the original could be made, nothing was changed: {exc}"
            ) from None
        return path
    original = target.sqlite_path
    path = original.with_name(f"{original.stem}.original-{stamp}{original.suffix}")
    source = sqlite3.connect(f"{original.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(path)
    try:
        source.backup(copy, pages=-1)  # one step: one consistent snapshot
        (ok,) = copy.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.Error as exc:
        ok = str(exc)
    finally:
        copy.close()
        source.close()
    if ok != "ok":
        path.unlink(missing_ok=True)
        raise legacy.LegacyError(f"no copy of {original} could be made ({ok}), so nothing was changed")
    return path


def _by_status(alias: str) -> dict[str, int]:
    return dict(Counter(Pulse.objects.using(alias).values_list("status", flat=True)))


def _write(alias: str, rows: list[OriginalRow]) -> ImportResult:
    carried, result = plan(rows)
    Pulse.objects.using(alias).bulk_create([pulse for pulse, _, _ in carried], batch_size=500)
    PulseAttempt.objects.using(alias).bulk_create(
        [attempt for _, attempts, _ in carried for attempt in attempts], batch_size=500
    )
    # created_at is auto_now_add, which an insert always sets to now: put the original's back.
    for start in range(0, len(carried), 500):
        batch = carried[start : start + 500]
        Pulse.objects.using(alias).filter(pk__in=[pulse.pk for pulse, _, _ in batch]).update(
            created_at=Case(
                *(When(pk=pulse.pk, then=Value(created)) for pulse, _, created in batch),
                output_field=DateTimeField(),
            )
        )
    conn = connections[alias]
    with conn.cursor() as cursor:  # the original's ids are kept: new pulses number on after them
        for sql in conn.ops.sequence_reset_sql(no_style(), [Pulse, PulseAttempt]):
            cursor.execute(sql)
    return result
