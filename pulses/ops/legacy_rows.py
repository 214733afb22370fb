"""The original Reeve's rows checked and turned into Reeve's pulses and attempts (unsaved), for
pulses/ops/legacy_import.py. No database access here: what a row becomes is decided from its values.

A retry in the original is a new row (`retry_count` + 1, `created_by` "retry_<who>"); such a chain
becomes one pulse with one attempt per run, as Reeve keeps it. Every row is checked before anything is
written (`check_rows`); a row Reeve cannot hold is named, with why, and nothing is changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pulses import limits
from pulses.limits import MAX_YEAR, MIN_YEAR, is_session_id, time_in_range
from pulses.models import Priority, Pulse, PulseAttempt, Status
from pulses.ops import legacy

ORIGINAL_WORKER = "original Reeve"
INTERRUPTED = "the original Reeve was running this pulse when it stopped; imported as pending, it runs again"
STATUS = {
    "PENDING": Status.PENDING,
    "PROCESSING": Status.PENDING,  # interrupted: Reeve runs it again, as after a lost lease
    "COMPLETED": Status.COMPLETED,
    "FAILED": Status.FAILED,  # the last row of its chain: retries exhausted
    "CANCELLED": Status.CANCELLED,
}
PRIORITY = {p.name: p.value for p in Priority}
RAN = ("COMPLETED", "FAILED")
ENDED_BY_A_RUN = (Status.COMPLETED, Status.FAILED)


@dataclass(frozen=True)
class OriginalRow:
    id: int
    scheduled_at: Any
    prompt: str
    priority: str
    session_id: str | None
    sticky_notes: Any
    status: str
    executed_at: Any
    execution_duration_ms: int | None
    error_message: str | None
    retry_count: int
    max_retries: int
    created_at: Any
    created_by: str
    tags: Any


@dataclass
class ImportResult:
    database: str
    already_reeve: bool = False
    backup: str = ""
    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    retries_folded: int = 0
    interrupted: int = 0
    session_ids_dropped: int = 0
    times_moved: int = 0
    limits_applied: int = 0  # retry limits brought into Reeve's range, durations beyond it dropped
    other_database: str = ""  # set when the database converted is not the configured one: how to use it


def _chains(rows: list[OriginalRow]) -> list[list[OriginalRow]]:
    """Rows grouped into logical pulses: a retry row continues the latest failed row it copies."""
    chains: list[list[OriginalRow]] = []
    failed: dict[tuple, list[list[OriginalRow]]] = {}  # what a retry of them looks like -> chains
    for row in rows:  # by id: a retry row is always created after the row it retries
        waiting = failed.get((row.prompt, row.session_id, row.created_by, row.retry_count))
        if row.retry_count > 0 and waiting:
            chain = waiting.pop()
        else:
            chain = []
            chains.append(chain)
        chain.append(row)
        if row.status.upper() == "FAILED":
            retry = (row.prompt, row.session_id, f"retry_{row.created_by}", row.retry_count + 1)
            failed.setdefault(retry, []).append(chain)
    return chains


# A day inside Reeve's years, so that the time keeps its year in any TIME_ZONE.
EARLIEST = datetime(MIN_YEAR, 1, 2, tzinfo=UTC)
LATEST = datetime(MAX_YEAR, 12, 30, tzinfo=UTC)


# Every row is checked before anything is written (`check_rows`); a row Reeve cannot hold is named,
# with why, and nothing is changed. What can be carried within Reeve's limits is, and counted.
MAX_ID = 2**63 - 1  # a pulse's id (a 64-bit integer on both databases)
MAX_DURATION_MS = 2**31 - 1  # the duration columns (32-bit integers): about 24.8 days
REPORTED_ROWS = 10  # the refusal names this many rows, then counts the rest


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _time(value: Any) -> bool:
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            return not value.strip()
        return True
    return value is None or isinstance(value, datetime)


def row_problems(row: OriginalRow) -> list[str]:
    """Why Reeve cannot carry `row` over (empty when it can): ids, counts, texts and their limits."""
    problems = []
    if not _whole(row.id) or not 1 <= row.id <= MAX_ID:
        problems.append(f"id {row.id!r:.40} is not a positive whole number up to {MAX_ID}")
    if not _whole(row.retry_count) or not 0 <= row.retry_count <= limits.MAX_RETRIES:
        problems.append(
            f"retry_count {row.retry_count!r:.40} is not a whole number from 0 to {limits.MAX_RETRIES}"
        )
    if row.max_retries is not None and not _whole(row.max_retries):
        problems.append(f"max_retries {row.max_retries!r:.40} is not a whole number")
    for column in ("prompt", "session_id", "error_message", "created_by"):
        if not _text(getattr(row, column)):
            problems.append(f"{column} is not text ({type(getattr(row, column)).__name__})")
    for column in ("scheduled_at", "executed_at", "created_at"):
        value = getattr(row, column)
        if not _time(value):
            problems.append(f"{column} {value!r:.40} is not a time")
    if isinstance(row.prompt, str):
        if len(row.prompt) > limits.MAX_PROMPT_CHARS:
            problems.append(f"'prompt' is {len(row.prompt)} characters; at most {limits.MAX_PROMPT_CHARS}")
        else:
            try:
                limits.check_prompt_bytes(row.prompt, _strings(row.sticky_notes))
            except limits.InvalidPulse as exc:
                problems.append(str(exc))
    for name, values, most, chars in (
        ("sticky_notes", _strings(row.sticky_notes), limits.MAX_NOTES, limits.MAX_NOTE_CHARS),
        ("tags", _strings(row.tags), limits.MAX_TAGS, limits.MAX_TAG_CHARS),
    ):
        if len(values) > most or any(len(value) > chars for value in values):
            problems.append(f"'{name}' holds more than {most} items or one longer than {chars} characters")
    return problems


def check_rows(rows: list[OriginalRow]) -> None:
    """LegacyError naming the rows Reeve cannot hold (ids, counts, texts, the limits of a pulse);
    nothing is changed, and the owner fixes or deletes them in the original and runs it again."""
    refused = [(row, problems) for row in rows if (problems := row_problems(row))]
    if not refused:
        return
    named = "; ".join(
        f"pulse {row.id!r:.40}: {', '.join(problems)}" for row, problems in refused[:REPORTED_ROWS]
    )
    more = f" (and {len(refused) - REPORTED_ROWS} more)" if len(refused) > REPORTED_ROWS else ""
    raise legacy.LegacyError(
        f"{len(refused)} row(s) of the original cannot be carried over, so nothing was changed: "
        f"{named}{more}. Fix or delete them in the original (a copy is kept), then run import_legacy again."
    )


def _utc(value: Any, row: OriginalRow, column: str, result: ImportResult) -> datetime | None:
    """The original stored naive UTC (a timestamptz on PostgreSQL comes back aware). A time outside
    the years Reeve accepts (year 1 or 9999, say, as a "never") moves to the nearest of them and is
    counted: shown in a time zone it would leave the range of a datetime and break the pages."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise legacy.LegacyError(f"pulse {row.id}: {column} {value!r:.60} is not a time") from None
    if not isinstance(value, datetime):  # a number or a BLOB, which SQLite stores in any column
        raise legacy.LegacyError(f"pulse {row.id}: {column} {value!r:.60} is not a time")
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if time_in_range(moment):
        return moment
    result.times_moved += 1
    return min(max(moment, EARLIEST), LATEST)


def _strings(value: Any) -> list[str]:
    """A JSON list of strings as the original stored it (SQL NULL and JSON null are both empty)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
            return [value]
    if value is None:
        return []
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item) for item in value if item is not None]
    return [value if isinstance(value, str) else json.dumps(value)]


def _choice(mapping: dict[str, str], value: str, row: OriginalRow, column: str) -> str:
    try:
        return mapping[str(value).upper()]
    except KeyError:
        raise legacy.LegacyError(f"pulse {row.id}: unknown {column} {value!r}; nothing was changed") from None


def _source(chain: list[OriginalRow]) -> str:
    """Who created the pulse: the first row's `created_by`, without the "retry_" its retries add."""
    source, first = chain[0].created_by or "", chain[0]
    for _ in range(min(first.retry_count, len(source))):  # bounded by the text, whatever the count
        source = source.removeprefix("retry_")
    return source or "original"


def _duration(row: OriginalRow, result: ImportResult, *, count: bool = True) -> int | None:
    """The run's duration when the duration columns can hold it; else none (counted)."""
    value = row.execution_duration_ms
    if value is None or (_whole(value) and 0 <= value <= MAX_DURATION_MS):
        return value
    result.limits_applied += count
    return None


def _max_retries(row: OriginalRow, result: ImportResult) -> int:
    """The original's retry limit within Reeve's (0 to MAX_RETRIES); a change is counted."""
    value = row.max_retries or 0
    kept = min(max(value, 0), limits.MAX_RETRIES)
    result.limits_applied += kept != value
    return kept


def _carry(chain: list[OriginalRow], result: ImportResult) -> tuple[Pulse, list[PulseAttempt], datetime]:
    first, last = chain[0], chain[-1]
    status = _choice(STATUS, last.status, last, "status")
    attempts = []
    for row in chain:
        if row.status.upper() not in RAN:
            continue
        ended = _utc(row.executed_at, row, "executed_at", result)  # the original set it when the run ended
        duration = _duration(row, result)
        started = ended - timedelta(milliseconds=duration or 0) if ended else None
        attempts.append(
            PulseAttempt(
                pulse_id=last.id,
                number=first.retry_count + len(attempts) + 1,
                worker=ORIGINAL_WORKER,
                started_at=started or _utc(row.scheduled_at, row, "scheduled_at", result),
                finished_at=ended,
                duration_ms=duration,
                succeeded=row.status.upper() == "COMPLETED",
                session_id=row.session_id if is_session_id(row.session_id) else "",
                error=row.error_message or "",
            )
        )
    # A session id enters the agent's argv (--resume=ID): only what Reeve accepts anywhere else.
    session_id = last.session_id if is_session_id(last.session_id) else ""
    result.session_ids_dropped += bool(last.session_id) and not session_id
    interrupted = last.status.upper() == "PROCESSING"
    result.interrupted += interrupted
    error = INTERRUPTED if interrupted else last.error_message or (attempts[-1].error if attempts else "")
    pulse = Pulse(
        id=last.id,
        prompt=last.prompt or "",
        scheduled_at=_utc(last.scheduled_at, last, "scheduled_at", result),
        priority=_choice(PRIORITY, last.priority, last, "priority"),
        status=status,
        session_id=session_id,
        sticky_notes=_strings(last.sticky_notes),
        tags=_strings(last.tags),
        source=_source(chain)[:100],
        executed_at=attempts[-1].started_at if attempts else None,
        finished_at=attempts[-1].finished_at if attempts and status in ENDED_BY_A_RUN else None,
        execution_duration_ms=_duration(last, result, count=False),
        error_message=error or "",
        attempt_count=first.retry_count + len(attempts),
        max_retries=_max_retries(last, result),
    )
    if pulse.scheduled_at is None:
        raise legacy.LegacyError(f"pulse {last.id} has no scheduled_at; nothing was changed")
    created = _utc(first.created_at, first, "created_at", result) or pulse.scheduled_at
    return pulse, attempts, created


def plan(rows: list[OriginalRow]) -> tuple[list[tuple[Pulse, list[PulseAttempt], datetime]], ImportResult]:
    """Reeve's pulses (unsaved, each with its attempts and creation time) for the original's rows."""
    check_rows(rows)
    result = ImportResult(database="", rows=len(rows))
    carried = [_carry(chain, result) for chain in _chains(rows)]
    result.retries_folded = len(rows) - len(carried)
    return carried, result
