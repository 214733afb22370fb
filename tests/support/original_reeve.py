"""The original Reeve's database, built as its Alembic revision 07ce7ae63b4a ("Create pulses table")
builds it, with rows stored the way its SQLAlchemy models store them: enum names in upper case,
naive UTC times, JSON as text (a Python None becomes JSON `null`), a retry as a new row.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REVISION = "07ce7ae63b4a"

# The same in both dialects: the revision's five indexes and Alembic's own table.
INDEXES_AND_VERSION = """
CREATE INDEX idx_pulse_execution ON pulses (status, scheduled_at, priority);
CREATE INDEX idx_pulse_upcoming ON pulses (scheduled_at, status);
CREATE INDEX ix_pulses_priority ON pulses (priority);
CREATE INDEX ix_pulses_scheduled_at ON pulses (scheduled_at);
CREATE INDEX ix_pulses_status ON pulses (status);
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
"""

SQLITE_DDL = (
    """
CREATE TABLE pulses (
	id INTEGER NOT NULL,
	scheduled_at DATETIME NOT NULL,
	prompt TEXT NOT NULL,
	priority VARCHAR(8) NOT NULL,
	session_id VARCHAR(500),
	sticky_notes JSON,
	status VARCHAR(10) NOT NULL,
	executed_at DATETIME,
	execution_duration_ms INTEGER,
	error_message TEXT,
	retry_count INTEGER NOT NULL,
	max_retries INTEGER NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	created_by VARCHAR(100) NOT NULL,
	tags JSON,
	PRIMARY KEY (id)
);
"""
    + INDEXES_AND_VERSION
)

POSTGRES_DDL = (
    """
CREATE TYPE pulsepriority AS ENUM ('CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'DEFERRED');
CREATE TYPE pulsestatus AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED');
CREATE TABLE pulses (
	id SERIAL NOT NULL,
	scheduled_at TIMESTAMP WITH TIME ZONE NOT NULL,
	prompt TEXT NOT NULL,
	priority pulsepriority NOT NULL,
	session_id VARCHAR(500),
	sticky_notes JSON,
	status pulsestatus NOT NULL,
	executed_at TIMESTAMP WITH TIME ZONE,
	execution_duration_ms INTEGER,
	error_message TEXT,
	retry_count INTEGER NOT NULL,
	max_retries INTEGER NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	created_by VARCHAR(100) NOT NULL,
	tags JSON,
	PRIMARY KEY (id)
);
"""
    + INDEXES_AND_VERSION
)


@dataclass
class OriginalPulse:
    id: int
    prompt: str
    scheduled_at: datetime  # aware; stored as naive UTC
    status: str = "PENDING"
    priority: str = "NORMAL"
    session_id: str | None = None
    sticky_notes: list[str] | None = None
    tags: list[str] | None = None
    executed_at: datetime | None = None
    execution_duration_ms: int | None = None
    error_message: str | None = None
    retry_count: int = 0
    max_retries: int = 3
    created_at: datetime = field(default_factory=lambda: datetime(2026, 11, 30, 8, 0, tzinfo=UTC))
    created_by: str = "telegram"


def _naive(value: datetime | None) -> str | None:
    # SQLAlchemy's DateTime on SQLite: "YYYY-MM-DD HH:MM:SS.ffffff", here in UTC without an offset.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds") if value else None


def _row(pulse: OriginalPulse) -> tuple:
    return (
        pulse.id,
        _naive(pulse.scheduled_at),
        pulse.prompt,
        pulse.priority,
        pulse.session_id,
        json.dumps(pulse.sticky_notes),
        pulse.status,
        _naive(pulse.executed_at),
        pulse.execution_duration_ms,
        pulse.error_message,
        pulse.retry_count,
        pulse.max_retries,
        _naive(pulse.created_at),
        pulse.created_by,
        json.dumps(pulse.tags),
    )


INSERT = (
    "INSERT INTO pulses (id, scheduled_at, prompt, priority, session_id, sticky_notes, status, executed_at, "
    "execution_duration_ms, error_message, retry_count, max_retries, created_at, created_by, tags) "
    "VALUES ({})"
)


def create_sqlite(path: Path, pulses: list[OriginalPulse]) -> None:
    """An SQLite file as `alembic upgrade head` leaves it, holding `pulses`."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SQLITE_DDL)
        conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (REVISION,))
        conn.executemany(INSERT.format(", ".join("?" * 15)), [_row(p) for p in pulses])
        conn.commit()
    finally:
        conn.close()


def create_postgres(url: str, pulses: list[OriginalPulse]) -> None:
    """The same on PostgreSQL (native enum types; the times go in as naive UTC, as the original sent them)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(POSTGRES_DDL)
        conn.execute("INSERT INTO alembic_version (version_num) VALUES (%s)", (REVISION,))
        with conn.cursor() as cursor:
            cursor.executemany(INSERT.format(", ".join(["%s"] * 15)), [_row(p) for p in pulses])
        conn.execute("SELECT setval('pulses_id_seq', (SELECT max(id) FROM pulses))")


def sample(now: datetime) -> list[OriginalPulse]:
    """A queue as a user leaves it: history, a retry chain, a pending reminder with sticky notes."""
    hour = timedelta(hours=1)
    return [
        OriginalPulse(
            1,
            "Morning briefing",
            now - 5 * hour,
            status="COMPLETED",
            priority="NORMAL",
            created_by="heartbeat",
            executed_at=now - 5 * hour + timedelta(seconds=40),
            execution_duration_ms=40_000,
            session_id="7f0c1d2e-0000-4000-8000-000000000001",
            tags=["hourly_check"],
        ),
        # A failed run, its retry (a new row, created_by "retry_..."), which failed for good.
        OriginalPulse(
            2,
            "Check flight status",
            now - 4 * hour,
            status="FAILED",
            priority="HIGH",
            created_by="agent",
            executed_at=now - 4 * hour + timedelta(seconds=5),
            execution_duration_ms=None,
            error_message="hapi exited 1: network down",
            max_retries=1,
        ),
        OriginalPulse(
            3,
            "Check flight status",
            now - 4 * hour + timedelta(minutes=1),
            status="FAILED",
            priority="HIGH",
            created_by="retry_agent",
            retry_count=1,
            executed_at=now - 4 * hour + timedelta(minutes=1, seconds=5),
            error_message="hapi exited 1: still down",
            max_retries=1,
        ),
        OriginalPulse(
            4,
            "Remind me to call the dentist",
            now - timedelta(minutes=5),
            status="PENDING",
            priority="HIGH",
            created_by="telegram",
            sticky_notes=["Dentist: +1 555 0100", "Ask about Friday"],
            tags=["telegram", "user_message"],
            session_id="7f0c1d2e-0000-4000-8000-000000000004",
        ),
        OriginalPulse(
            5,
            "Weekly review",
            now + 48 * hour,
            status="PENDING",
            priority="LOW",
            created_by="user_cli",
            sticky_notes=None,
            tags=None,
        ),
        OriginalPulse(
            6, "Old idea", now - 30 * hour, status="CANCELLED", priority="DEFERRED", created_by="agent"
        ),
    ]
