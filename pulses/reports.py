"""Read-only views of the queue for people and dashboards: depth, listings, activity, workers.

Everything that changes the queue lives in `pulses.queue`; this module only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Count
from django.utils import timezone

from pulses import history
from pulses.models import FINISHED, Priority, Pulse, PulseAttempt, Status, WorkerRecord, alive_within
from pulses.worker.slots import Run, layout


@dataclass(frozen=True)
class QueueStats:
    by_status: dict[str, int]
    pending_by_priority: dict[str, int]
    overdue: int
    workers: list[dict] = field(default_factory=list)


def stats() -> QueueStats:
    """Queue depth by status, pending depth by priority, and overdue count.

    Pending and processing pulses are counted (they are few); finished ones come from the daily
    rollup (`pulses.history`), so the cost does not grow with the history."""
    by_status = {s.value: 0 for s in Status}
    live = Pulse.objects.filter(status__in=[Status.PENDING, Status.PROCESSING])
    for row in live.order_by().values("status").annotate(n=Count("id")):
        by_status[row["status"]] = row["n"]
    by_status.update(history.finished_counts())
    by_priority = {p.value: 0 for p in Priority}
    for row in Pulse.objects.pending().order_by().values("priority").annotate(n=Count("id")):
        by_priority[row["priority"]] = row["n"]
    overdue = Pulse.objects.due().count()
    return QueueStats(by_status=by_status, pending_by_priority=by_priority, overdue=overdue)


LISTINGS = ("pending", "overdue", "failed", "completed", "cancelled", "processing", "all")
LAST = "last"  # `pulse_queue last`: the pulse scheduled most recently


def last_pulse_id() -> int | None:
    """The id of the pulse created most recently (ids only grow), None when the queue is empty."""
    return Pulse.objects.order_by("-id").values_list("id", flat=True).first()


def listing(view: str, *, limit: int = 50) -> list[Pulse]:
    """Pulses for a named view (`pending`, `overdue`, `failed`, ... `all`), most relevant first."""
    if view not in LISTINGS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(LISTINGS)}, {LAST} or a pulse id")
    pulses = Pulse.objects.all()
    if view == "overdue":
        pulses = pulses.due()
    elif view in ("pending", "processing"):
        pulses = pulses.filter(status=view).soonest_first()
    elif view != "all":
        pulses = pulses.filter(status=view).order_by("-finished_at", "-id")
    return list(pulses[:limit])


@dataclass(frozen=True)
class HourActivity:
    hour: datetime
    executed: int
    failed: int


@dataclass(frozen=True)
class Activity:
    """What the workers did in the last `window_hours`: runs (attempts) per hour, failures, durations."""

    window_hours: int
    per_hour: list[HourActivity]
    executed: int
    failed: int
    average_duration_ms: float | None
    p95_duration_ms: float | None

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.executed if self.executed else None

    @property
    def success_rate(self) -> float | None:
        return 1 - self.failed / self.executed if self.executed else None


def activity(*, hours: int = 24, now: datetime | None = None) -> Activity:
    """Attempts finished per clock hour over the last `hours` (oldest first), with failure count and
    the average and 95th-percentile duration."""
    now = (now or timezone.now()).astimezone(UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    executed = dict.fromkeys(starts, 0)
    failed = dict.fromkeys(starts, 0)
    durations: list[int] = []
    rows = PulseAttempt.objects.filter(finished_at__gte=starts[0], finished_at__lte=now).values_list(
        "finished_at", "succeeded", "duration_ms"
    )
    for finished_at, succeeded, duration_ms in rows.iterator(chunk_size=2000):
        hour = finished_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if hour not in executed:
            continue
        executed[hour] += 1
        if not succeeded:
            failed[hour] += 1
        if duration_ms is not None:
            durations.append(duration_ms)
    durations.sort()
    p95 = durations[max(0, -(-len(durations) * 95 // 100) - 1)] if durations else None
    return Activity(
        window_hours=hours,
        per_hour=[HourActivity(hour=h, executed=executed[h], failed=failed[h]) for h in starts],
        executed=sum(executed.values()),
        failed=sum(failed.values()),
        average_duration_ms=sum(durations) / len(durations) if durations else None,
        p95_duration_ms=float(p95) if p95 is not None else None,
    )


@dataclass(frozen=True)
class Page:
    count: int
    pulses: list[Pulse]


def search(
    *,
    status: str | None = None,
    priority: str | None = None,
    source: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Filtered pulses, newest first; pending and overdue ones soonest first. `status` may be `overdue`."""
    pulses = Pulse.objects.all()
    if status == "overdue":
        pulses = pulses.due()
    elif status:
        pulses = pulses.filter(status=status)
    if status in ("pending", "overdue"):
        pulses = pulses.soonest_first()
    if priority:
        pulses = pulses.filter(priority=priority)
    if source:
        pulses = pulses.filter(source=source)
    if tag:
        pulses = pulses.with_tag(tag)
    if status in FINISHED and not (priority or source or tag):
        # History's share of the table: counted from its daily rollup, not by reading every row.
        count = history.finished_counts()[status]
    else:
        count = pulses.count()
    return Page(count=count, pulses=list(pulses[offset : offset + limit]))


def recent_workers() -> list[WorkerRecord]:
    """The workers alive now (`WorkerRecordQuerySet.alive`), most recent first."""
    return list(WorkerRecord.objects.alive())


@dataclass(frozen=True)
class BusySlot:
    """One slot of a worker (`ordinary`, or `critical`: reserved for critical pulses) and the pulse
    it runs, if any."""

    kind: str
    pulse: Pulse | None


def worker_slots(workers: list[WorkerRecord]) -> dict[str, list[BusySlot]]:
    """Each worker's slots with what runs in them, from the pulses it holds now (not its last
    heartbeat), laid out as the worker counts them: critical runs in the reserved slots first."""
    running: dict[str, list[Pulse]] = {worker.name: [] for worker in workers}
    held = Pulse.objects.filter(status=Status.PROCESSING, lease_owner__in=list(running))
    for pulse in held.order_by("executed_at", "id").only(
        "id", "priority", "prompt", "executed_at", "lease_owner", "session_id", "source"
    ):
        running[pulse.lease_owner].append(pulse)
    result = {}
    for worker in workers:
        pulses = {pulse.pk: pulse for pulse in running[worker.name]}
        runs = [Run(pulse.pk, pulse.priority) for pulse in pulses.values()]
        result[worker.name] = [
            BusySlot(slot.kind, pulses[slot.run.pulse_id] if slot.run else None)
            for slot in layout(runs, ordinary=worker.concurrency, reserved=worker.critical_reserved)
        ]
    return result


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    running: int
    last_seen: datetime
    stopped: bool
    slots: list[BusySlot] = field(default_factory=list)  # what runs in each of its slots


def workers_seen(*, within: timedelta = timedelta(hours=1), now: datetime | None = None) -> list[WorkerSeen]:
    """Workers that reported within `within`, most recent first, each marked `stopped` once it said
    so (a clean stop) or missed three reports (`alive_within`): killed, or its loop hung, where a busy
    worker still reports. The same rule as `WorkerRecordQuerySet.alive` and the watchdog."""
    now = now or timezone.now()
    silent = now - alive_within()
    rows = list(WorkerRecord.objects.filter(last_seen__gte=now - within).order_by("-last_seen"))
    slots = worker_slots(rows)
    return [
        WorkerSeen(
            w.name, w.running, w.last_seen, w.stopped_at is not None or w.last_seen < silent, slots[w.name]
        )
        for w in rows
    ]


_SOURCES_SQL = """
WITH RECURSIVE found(source) AS (
    SELECT MIN(source) FROM pulses
    UNION ALL
    SELECT (SELECT MIN(source) FROM pulses WHERE source > found.source) FROM found
    WHERE found.source IS NOT NULL
)
SELECT source FROM found WHERE source IS NOT NULL LIMIT %s
"""


def sources(*, limit: int = 50) -> list[str]:
    """The distinct sources, alphabetically, at most `limit`: each one a hop along the (source, id)
    index (a loose index scan), so the cost follows the number of sources, not of pulses."""
    with connection.cursor() as cursor:
        cursor.execute(_SOURCES_SQL, [limit])
        return [row[0] for row in cursor.fetchall()]


_RECENT_TAGS_SQL = (
    "SELECT DISTINCT recent.tags FROM (SELECT tags FROM pulses ORDER BY id DESC LIMIT %s) recent"
)


def recent_tags(*, scan: int = 2000) -> list[str]:
    """The tags of the `scan` most recent pulses, sorted. Most pulses repeat a few tag lists, so
    only the distinct lists are decoded."""
    tags: set[str] = set()
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_TAGS_SQL, [scan])
        for (value,) in cursor.fetchall():
            decoded = json.loads(value) if isinstance(value, str) else value  # psycopg decodes jsonb
            if isinstance(decoded, list):
                tags.update(tag for tag in decoded if isinstance(tag, str))
    return sorted(tags)
