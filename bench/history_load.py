"""A year (or any span) of finished pulses with their attempts, written straight into the tables with
bulk SQL: `executemany` in large transactions on SQLite, COPY on PostgreSQL. Used by
bench/bench_history.py and by the retention tests; the rows look like a busy assistant's history.

Mix: 93 % completed (one attempt in ten needed a retry), 5 % failed (four attempts, an error and a
stderr tail), 2 % cancelled (no attempt). Sources and tags as Reeve writes them, one prompt in
twenty mentions "history", stdout tails of 0.25 to 2 KB of stream-json (the executor keeps up to 16 KB).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple


class PulseRow(NamedTuple):
    """A row of the pulses table, its fields named as its columns."""

    id: int
    prompt: str
    scheduled_at: datetime
    priority: str
    status: str
    session_id: str
    sticky_notes: str
    tags: str
    source: str
    parent_id: int | None
    created_at: datetime
    executed_at: datetime | None
    finished_at: datetime
    execution_duration_ms: int | None
    error_message: str
    attempt_count: int
    max_retries: int
    lease_owner: str
    lease_expires_at: datetime | None
    idempotency_key: str | None


class AttemptRow(NamedTuple):
    """A row of the pulse_attempts table."""

    pulse_id: int
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    exit_code: int
    succeeded: bool
    session_id: str
    result_text: str
    cost_usd: float
    num_turns: int
    error: str
    stdout_tail: str
    stderr_tail: str


PULSE_COLUMNS = PulseRow._fields
ATTEMPT_COLUMNS = AttemptRow._fields
SOURCES = [("heartbeat", 60), ("telegram", 15), ("api", 10), ("routine", 8), ("manual", 4), ("admin", 3)]
PROMPTS = [
    "Hourly heartbeat: check the calendar, the task list and unread messages; act on what is due.",
    "Reply to the Telegram message from Anna about the {topic} and note what was agreed.",
    "Summarise the {topic} notes from this week into the Desk journal.",
    "Review the history of the {topic} decisions and write down what changed since last month.",
    "Draft tomorrow's plan: meetings, the {topic} deadline, and one hour for deep work.",
    "Look up the train times to Utrecht and add the best one to the calendar.",
    "Triage the inbox: archive newsletters, flag anything about the {topic}.",
]
TOPICS = ["budget", "garden", "invoice", "conference", "kitchen", "quarterly report", "dentist", "holiday"]
BATCH = 20_000
PER_DAY = 2_740  # a million pulses in a year: a busy assistant (about two a minute)


def _tail(rng: random.Random, size: int) -> str:
    lines = []
    total = 0
    while total < size:
        text = " ".join(rng.choice(TOPICS) for _ in range(12))
        line = json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}})
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[-size:]


def rows(
    count: int, *, days: float | None, end: datetime, seed: int = 21
) -> Iterator[tuple[PulseRow, list[AttemptRow]]]:
    """(pulse row, its attempt rows) for `count` finished pulses spread evenly over `days` days up
    to `end` (by default at PER_DAY a day), oldest first, ids 1..count."""
    rng = random.Random(seed)
    days = days or count / PER_DAY
    tails = [_tail(rng, rng.randint(256, 2048)) for _ in range(64)]
    stderr = "Traceback (most recent call last):\n  ...\nTimeoutError: the agent did not answer in time\n"
    names, weights = zip(*SOURCES, strict=True)
    step = timedelta(days=days) / max(count, 1)
    start = end - timedelta(days=days)
    for n in range(1, count + 1):
        scheduled = start + step * n
        source = rng.choices(names, weights)[0]
        roll = rng.random()
        status = "completed" if roll < 0.93 else "failed" if roll < 0.98 else "cancelled"
        template = PROMPTS[0] if source == "heartbeat" else rng.choice(PROMPTS[1:])
        prompt = template.format(topic=rng.choice(TOPICS)) + f" (#{n})"
        runs = 0 if status == "cancelled" else 4 if status == "failed" else 2 if rng.random() < 0.1 else 1
        attempts = []
        moment = scheduled + timedelta(seconds=rng.randint(0, 5))
        for number in range(1, runs + 1):
            duration = rng.randint(4_000, 180_000)
            finished = moment + timedelta(milliseconds=duration)
            ok = status == "completed" and number == runs
            attempts.append(
                AttemptRow(
                    pulse_id=n,
                    number=number,
                    worker="host:1234",
                    started_at=moment,
                    finished_at=finished,
                    duration_ms=duration,
                    exit_code=0 if ok else 1,
                    succeeded=ok,
                    session_id=f"session-{n}",
                    result_text="Done." if ok else "",
                    cost_usd=round(rng.uniform(0.01, 0.4), 4),
                    num_turns=rng.randint(1, 30),
                    error="" if ok else "agent exited with status 1",
                    stdout_tail=tails[(n + number) % len(tails)],
                    stderr_tail="" if ok else stderr,
                )
            )
            moment = finished + timedelta(minutes=2**number)
        pulse = PulseRow(
            id=n,
            prompt=prompt,
            scheduled_at=scheduled,
            priority="high" if source == "telegram" else "normal",
            status=status,
            session_id=f"session-{n}" if runs else "",
            sticky_notes="[]",
            tags=json.dumps([source] if source != "manual" else []),
            source=source,
            parent_id=None,
            created_at=scheduled - timedelta(minutes=1),
            executed_at=attempts[0].started_at if attempts else None,
            finished_at=attempts[-1].finished_at if attempts else scheduled,
            execution_duration_ms=attempts[-1].duration_ms if attempts else None,
            error_message="agent exited with status 1" if status == "failed" else "",
            attempt_count=runs,
            max_retries=3,
            lease_owner="",
            lease_expires_at=None,
            idempotency_key=None,
        )
        yield pulse, attempts


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):  # Django's SQLite format: naive UTC text
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    return value


def load_sqlite(path: str, count: int, *, days: float | None = None, end: datetime | None = None) -> None:
    """Append `count` finished pulses (ids 1..count: load into an empty, migrated database)."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=60)
    # A bulk load into a fresh file: no rollback journal or WAL to write twice (put back afterwards).
    conn.execute("PRAGMA synchronous=OFF")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.execute("PRAGMA journal_mode=OFF")
    pulse_sql = (
        f"INSERT INTO pulses ({', '.join(PULSE_COLUMNS)}) VALUES ({', '.join('?' * len(PULSE_COLUMNS))})"
    )
    attempt_sql = (
        f"INSERT INTO pulse_attempts ({', '.join(ATTEMPT_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})"
    )
    pulses: list[tuple] = []
    attempts: list[tuple] = []

    def flush() -> None:
        with conn:
            conn.executemany(pulse_sql, pulses)
            conn.executemany(attempt_sql, attempts)
        pulses.clear()
        attempts.clear()

    for pulse, runs in rows(count, days=days, end=end or datetime.now(UTC) - timedelta(hours=2)):
        pulses.append(tuple(map(_sqlite_value, pulse)))
        attempts.extend(tuple(map(_sqlite_value, run)) for run in runs)
        if len(pulses) >= BATCH:
            flush()
    flush()
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.close()


def load_postgres(url: str, count: int, *, days: float | None = None, end: datetime | None = None) -> None:
    """The same rows through COPY, then the id sequences moved past them."""
    import psycopg

    def copy(cursor, table: str, columns: tuple[str, ...], chunk: list[tuple]) -> None:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as into:
            for row in chunk:
                into.write_row(row)

    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        pulses: list[tuple] = []
        attempts: list[tuple] = []
        for pulse, runs in rows(count, days=days, end=end or datetime.now(UTC) - timedelta(hours=2)):
            pulses.append(pulse)
            attempts.extend(runs)
            if len(pulses) >= BATCH:
                copy(cursor, "pulses", PULSE_COLUMNS, pulses)
                copy(cursor, "pulse_attempts", ATTEMPT_COLUMNS, attempts)
                pulses.clear()
                attempts.clear()
        copy(cursor, "pulses", PULSE_COLUMNS, pulses)
        copy(cursor, "pulse_attempts", ATTEMPT_COLUMNS, attempts)
        for table in ("pulses", "pulse_attempts"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )


def load_here(count: int) -> None:
    """Load `count` rows into Django's default database (PostgreSQL's named by DATABASE_URL, analysed
    afterwards as autovacuum would; SQLite's file by its settings)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        load_postgres(os.environ["DATABASE_URL"], count)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    else:
        load_sqlite(str(connection.settings_dict["NAME"]), count)
