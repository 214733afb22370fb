"""How much history the queue holds, counted without reading it all.

Finished pulses are counted from `FinishedDay`, one small row per UTC day, for the days that ended
more than SEAL_DELAY ago (the delay leaves room for a run recorded just after midnight, or by a host
whose clock is a little behind), plus a range of the (status, finished_at) index for the rest. The
days that passed since the last count are sealed by whoever counts next: usually one day, one index
range. What changes a sealed day afterwards keeps it right: a requeue takes its pulse out of its day
(`forget`, in the requeue's transaction), and retention and the admin's delete rebuild the days
(`rebuild`). Retention runs daily, so a day that drifted anyway (rows imported by hand) heals then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Sum
from django.utils import timezone

from pulses.db import is_postgres
from pulses.db.write_gate import write_gate
from pulses.models import FINISHED, FinishedDay, Pulse, PulseAttempt, Status

SEAL_DELAY = timedelta(hours=1)
GAP_DAYS = 31  # an empty stretch of more days than this is stepped over, not counted day by day


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def oldest_finished_at(since: datetime | None = None) -> datetime | None:
    """When the oldest finished pulse (finished at `since` or later) finished: one probe of the
    index per final status."""
    bound = {"finished_at__gte": since} if since is not None else {"finished_at__isnull": False}
    moments = [
        Pulse.objects.filter(status=status, **bound)
        .order_by("finished_at")
        .values_list("finished_at", flat=True)
        .first()
        for status in FINISHED
    ]
    return min((m for m in moments if m is not None), default=None)


def _count_days(first: date, end: date) -> list[FinishedDay]:
    """One FinishedDay per day in [first, end), zeros included, each from one index range; except
    that an empty stretch longer than GAP_DAYS is stepped over with one probe (its days get no row,
    the last day before `end` always does): a pulse stored as finished in 1970, or in year 1, is not
    followed by a count of every day since."""
    days = []
    day = first
    while day < end:
        row = FinishedDay(day=day)
        counts = (
            Pulse.objects.filter(status__in=FINISHED, finished_at__gte=_start(day))
            .filter(finished_at__lt=_start(day + timedelta(days=1)))
            .order_by()
            .values("status")
            .annotate(n=Count("id"))
        )
        for entry in counts:
            setattr(row, entry["status"], entry["n"])
        days.append(row)
        day += timedelta(days=1)
        if not counts and day < end:
            following = oldest_finished_at(since=_start(day))
            resume = _utc_day(following) if following is not None else end
            if (resume - day).days > GAP_DAYS:
                day = min(resume, end - timedelta(days=1))
    return days


def _sealable_end(now: datetime) -> date:
    """The first day that cannot be sealed yet (days before it ended more than SEAL_DELAY ago)."""
    return _utc_day(now - SEAL_DELAY)


def _seal(now: datetime) -> datetime:
    """Seal the days that ended since the last call; returns where the unsealed (live) range starts."""
    end = _sealable_end(now)
    last = FinishedDay.objects.aggregate(last=Max("day"))["last"]
    if last is not None:
        first = last + timedelta(days=1)
    else:
        oldest = oldest_finished_at()
        if oldest is None:
            return _start(end)
        first = _utc_day(oldest)
    if first >= end:
        return _start(first)
    days = _count_days(first, end)
    with write_gate(), transaction.atomic():
        FinishedDay.objects.bulk_create(days, ignore_conflicts=True)  # another process may seal too
    return _start(end)


def finished_counts(now: datetime | None = None) -> dict[str, int]:
    """Finished pulses by final status: the sealed days' sums plus the live range's counts."""
    since = _seal(now or timezone.now())
    sums = FinishedDay.objects.aggregate(**{status: Sum(status) for status in FINISHED})
    counts = {status: sums[status] or 0 for status in FINISHED}
    live = (
        Pulse.objects.filter(status__in=FINISHED, finished_at__gte=since)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
    )
    undated = (
        Pulse.objects.filter(status__in=FINISHED, finished_at__isnull=True)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
    )
    for entry in [*live, *undated]:
        counts[entry["status"]] += entry["n"]
    return counts


def forget(status: str, finished_at: datetime | None) -> None:
    """A finished pulse left its final status (requeued): take it out of its sealed day, if sealed.
    Call inside the transaction that moves it."""
    if status in FINISHED and finished_at is not None:
        FinishedDay.objects.filter(day=_utc_day(finished_at)).update(**{status: F(status) - 1})


def rebuild(now: datetime | None = None) -> int:
    """Count every sealed day again from the pulses (after deletions); returns the number of days."""
    end = _sealable_end(now or timezone.now())
    oldest = oldest_finished_at()
    days = _count_days(_utc_day(oldest), end) if oldest is not None else []
    with write_gate(), transaction.atomic():
        FinishedDay.objects.all().delete()
        FinishedDay.objects.bulk_create(days)
    return len(days)


def size_text(size: int | None) -> str:
    """Bytes as a person reads them: 812 KB, 41.3 MB, 2.1 GB."""
    if size is None:
        return "–"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if unit != "KB" else f"{size // scale} KB"
    return f"{size} bytes"


@dataclass(frozen=True)
class DatabaseFacts:
    """What doctor and the dashboard show about the history's weight."""

    size_bytes: int | None
    reclaimable_bytes: int | None  # SQLite: free pages the next incremental vacuum gives back
    pulses: int
    attempts: int
    attempts_estimated: bool
    oldest_finished_at: datetime | None


def database_size() -> tuple[int | None, int | None]:
    """The database's size on disk, and (SQLite) how much of it is free pages."""
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0]), None
        cursor.execute("PRAGMA page_size")
        page_size = cursor.fetchone()[0]
        cursor.execute("PRAGMA freelist_count")
        free = cursor.fetchone()[0] * page_size
    path = str(connection.settings_dict["NAME"])
    size = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    return size, free


def estimated_attempts() -> int:
    """The number of attempts without counting them: PostgreSQL's planner estimate, or on SQLite the
    span of their ids (an upper bound: ids are never reused, pruned ones leave holes)."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", ["pulse_attempts"])
            row = cursor.fetchone()
        if row and row[0] >= 0:
            return int(row[0])
    # Two aggregates, not one: SQLite answers MIN() and MAX() together with a full scan.
    first = PulseAttempt.objects.aggregate(first=Min("id"))["first"]
    last = PulseAttempt.objects.aggregate(last=Max("id"))["last"]
    return last - first + 1 if last is not None and first is not None else 0


def database_facts(*, exact: bool = False) -> DatabaseFacts:
    """Size, rows and the oldest finished pulse; `exact` counts the attempts (doctor) instead of
    estimating them (the dashboard)."""
    size, reclaimable = database_size()
    live = Pulse.objects.filter(status__in=[Status.PENDING, Status.PROCESSING]).count()
    return DatabaseFacts(
        size_bytes=size,
        reclaimable_bytes=reclaimable,
        pulses=live + sum(finished_counts().values()),
        attempts=PulseAttempt.objects.count() if exact else estimated_attempts(),
        attempts_estimated=not exact,
        oldest_finished_at=oldest_finished_at(),
    )
