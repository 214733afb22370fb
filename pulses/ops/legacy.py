"""The original Reeve's queue: recognised wherever the database is opened, never run or changed.

The original Reeve (SQLAlchemy + Alembic, revision 07ce7ae63b4a) keeps its queue in a table also
called `pulses`, in the same default file, but with another shape: upper-case enum names, a
`retry_count`, `created_by`, and an `alembic_version` table. Reeve cannot use it as it is, and must
not half-migrate it: every command but the few that report, copy or carry it over stops with one
paragraph saying what it found and the command that carries it over (`import_legacy`).

SQLite files are inspected through a read-only connection of their own, because Django's connection
would switch the file to WAL mode on opening: "nothing was changed" is then literally true.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.db import DatabaseError, connection

ORIGINAL, REEVE, EMPTY, OTHER = "original", "reeve", "empty", "other"
ORIGINAL_REVISION = "07ce7ae63b4a"
IMPORT_COMMAND = "./reeve import_legacy (or: uv run python manage.py import_legacy)"
# Commands that may meet the original's schema: they report it, carry it over, copy it, or never
# open the database. Everything else stops with the explanation before it runs (mcp_config too:
# --write makes the Desk's API token in Reeve's tables).
ACCEPTING_COMMANDS = frozenset(
    {"import_legacy", "doctor", "backup_db", "restore_db", "dbshell"}
    | {"mcp_server", "notify"}  # no database: the MCP server talks to the API, notify to Telegram
    | {"makemigrations", "check", "help", "version", "--help", "-h", "--version"}
)
# Tables an unmigrated or half-migrated database may hold besides the queue (Django's own).
_FRAMEWORK_TABLE_PREFIXES = ("django_", "auth_", "sqlite_")


class LegacyError(Exception):
    """The database cannot be inspected or carried over; the message says why and what to do."""


@dataclass(frozen=True)
class Schema:
    kind: str  # ORIGINAL, REEVE, EMPTY (no queue table yet) or OTHER (something else entirely)
    revision: str = ""  # the original's Alembic revision
    pending: int = 0
    total: int = 0

    @property
    def is_original(self) -> bool:
        return self.kind == ORIGINAL


def _tables(cursor: Any, vendor: str) -> set[str]:
    if vendor == "sqlite":
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return {row[0] for row in cursor.fetchall()}


def _queue_columns(cursor: Any, vendor: str) -> set[str]:
    if vendor == "sqlite":
        cursor.execute("PRAGMA table_info(pulses)")
        return {row[1] for row in cursor.fetchall()}
    cursor.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'pulses'"
    )
    return {row[0] for row in cursor.fetchall()}


def inspect_cursor(cursor: Any, vendor: str) -> Schema:
    """Which schema the database behind `cursor` holds (`vendor`: "sqlite" or "postgresql")."""
    tables = _tables(cursor, vendor)
    if "pulses" not in tables:
        ours = all(name.startswith(_FRAMEWORK_TABLE_PREFIXES) for name in tables)
        return Schema(EMPTY if ours else OTHER)
    columns = _queue_columns(cursor, vendor)
    # Reeve's own table, before or after `attempts` became `attempt_count` (pulses 0010).
    # (SQLite's table_info omits generated columns.)
    if "lease_owner" in columns and columns & {"attempt_count", "attempts"}:
        return Schema(REEVE)
    if not {"retry_count", "created_by", "status", "scheduled_at"} <= columns:
        return Schema(OTHER)
    revision = ""
    if "alembic_version" in tables:
        cursor.execute("SELECT version_num FROM alembic_version")
        revision = ", ".join(str(row[0]) for row in cursor.fetchall())
    cursor.execute(
        "SELECT COUNT(*), "
        "COALESCE(SUM(CASE WHEN UPPER(CAST(status AS TEXT)) = 'PENDING' THEN 1 ELSE 0 END), 0) FROM pulses"
    )
    total, pending = cursor.fetchone()
    return Schema(ORIGINAL, revision=revision or "none recorded", pending=int(pending), total=int(total))


def inspect_sqlite_file(path: Path) -> Schema:
    """The schema in the SQLite file at `path`, read without changing a byte of it."""
    if not path.is_file():
        raise LegacyError(f"there is no database file at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise LegacyError(f"{path} cannot be opened: {exc}") from None
    try:
        return inspect_cursor(conn.cursor(), "sqlite")
    except sqlite3.DatabaseError as exc:
        raise LegacyError(f"{path} is not an SQLite database ({exc})") from None
    finally:
        conn.close()


def describe(db: dict[str, Any]) -> str:
    """A database's settings as a person recognises it: its file, or its host and name."""
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {db['NAME']}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"PostgreSQL {db.get('HOST') or 'localhost'}{port}/{db['NAME']}"


def configured_schema() -> Schema | None:
    """The configured database's schema; None when it cannot be told (no file yet, unreachable)."""
    db = settings.DATABASES["default"]
    try:
        if db["ENGINE"].endswith("sqlite3"):
            return inspect_sqlite_file(Path(db["NAME"]))
        with connection.cursor() as cursor:
            return inspect_cursor(cursor, connection.vendor)
    except (LegacyError, DatabaseError):
        return None


def explanation(schema: Schema, *, where: str) -> str:
    """The one paragraph every command prints when it meets the original's queue."""
    return (
        f"This database ({where}) holds the original Reeve's queue (Alembic revision {schema.revision}; "
        f"{schema.pending} pending pulse(s) of {schema.total}). Reeve keeps its queue in another shape and "
        "cannot run it as it is, so nothing was run and nothing was changed. To carry every pulse over "
        f"(a copy of the original is kept first), stop the original Reeve and run: {IMPORT_COMMAND}"
    )


def refusal(argv: list[str]) -> str | None:
    """The explanation when the command in `argv` (manage.py's arguments) would open the original's
    queue; None when it can run."""
    if not argv or argv[0] in ACCEPTING_COMMANDS or "--help" in argv or "-h" in argv:
        return None
    schema = configured_schema()
    if schema is None or not schema.is_original:
        return None
    return f"Error: {explanation(schema, where=describe(settings.DATABASES['default']))}"


def pulse_db_url_note(stream: TextIO) -> None:
    """Say once (per value) that the database came from the original's PULSE_DB_URL."""
    note = settings.PULSE_DB_URL_NOTE
    if not note:
        return
    marker = Path(settings.REEVE_HOME) / ".pulse_db_url_noted"
    try:
        if marker.read_text() == note:
            return
    except OSError:
        pass
    stream.write(note + "\n")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(note)
    except OSError:  # a read-only home: the note shows again next time, which is harmless
        pass
