"""Spend and its caps: what the agent's runs cost today and this month, and whether the queue waits.

The spend of a period is the sum of the attempts' `cost_usd` (the agent's own figure) finished since
the period began; days and months are the user's (TIME_ZONE). Once a cap
(`PULSE_DAILY_BUDGET_USD`, `PULSE_MONTHLY_BUDGET_USD`) is reached, only critical pulses are claimed
(none with `PULSE_BUDGET_HOLDS_CRITICAL`) until the period ends. A cap is checked before a run, and a
run's cost is known only once it ends, so the runs in flight when it is reached may pass it a little.

The worker asks `Gate.hold()` before each claim, and the sums are not read at every claim: after one
of its runs ended, only the attempts newer than the last one counted are added (a range of the
primary key: a few rows); the whole month is summed again when a period ends and every
RECHECK_SECONDS (an attempt another worker committed out of id order on PostgreSQL). On a year of a
busy assistant's history (bench/bench_budget.py) the month's sum takes 5-12 ms a week into the month
(~40 ms at its end) from its covering index, the newer attempts' about 1 ms (docs/performance.md).
"""

from __future__ import annotations

import enum
import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from pulses.db.write_gate import gated
from pulses.models import BudgetCapReached, Pulse, PulseAttempt, Routine

logger = logging.getLogger(__name__)

# How often a worker under its caps reads the spend again to see other workers' runs.
RECHECK_SECONDS = 15.0

DAY, MONTH = "day", "month"


@dataclass(frozen=True)
class Period:
    name: str  # DAY or MONTH
    starts_at: datetime
    ends_at: datetime


def periods(now: datetime | None = None) -> tuple[Period, Period]:
    """Today and this month around `now`, in TIME_ZONE (a day across a DST change lasts 23 or 25 h)."""
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local = (now or timezone.now()).astimezone(zone)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = (day_start + timedelta(days=1, hours=12)).replace(hour=0)
    month_start = day_start.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    # Arithmetic on a zoned datetime is wall-clock time, and zoneinfo gives each midnight its own offset.
    return Period(DAY, day_start, next_day), Period(MONTH, month_start, next_month)


def caps() -> dict[str, Decimal | None]:
    """The caps by period name (None: no cap)."""
    return {DAY: settings.PULSE_DAILY_BUDGET_USD, MONTH: settings.PULSE_MONTHLY_BUDGET_USD}


@dataclass(frozen=True)
class Status:
    """The spend of today and this month against the caps at `at`."""

    at: datetime
    day: Period
    month: Period
    today_usd: float
    month_usd: float
    daily_cap_usd: Decimal | None
    monthly_cap_usd: Decimal | None
    last_attempt_id: int = 0  # the newest attempt counted: newer ones are added by `with_newer`

    @property
    def reached(self) -> list[Period]:
        """The periods whose cap is reached."""
        spent = {DAY: self.today_usd, MONTH: self.month_usd}
        cap_of = {DAY: self.daily_cap_usd, MONTH: self.monthly_cap_usd}
        return [
            p
            for p in (self.day, self.month)
            if cap_of[p.name] is not None and spent[p.name] >= cap_of[p.name]
        ]

    @property
    def resumes_at(self) -> datetime | None:
        """When the pulses that wait run again (the end of the last period whose cap is reached)."""
        reached = self.reached
        return max(p.ends_at for p in reached) if reached else None


def _sums(attempts: QuerySet[PulseAttempt], day: Period, month: Period) -> dict:
    """The attempts' spend this month and today, and the newest one's id."""
    in_month = Q(finished_at__gte=month.starts_at, finished_at__lt=month.ends_at)
    today = Q(finished_at__gte=day.starts_at, finished_at__lt=day.ends_at)
    return attempts.aggregate(
        month=Sum("cost_usd", filter=in_month), today=Sum("cost_usd", filter=today), last=Max("id")
    )


def status(now: datetime | None = None) -> Status:
    """Today's and this month's spend and the caps: one query, a range of the covering index
    attempts_finished_cost_idx."""
    now = now or timezone.now()
    day, month = periods(now)
    sums = _sums(
        PulseAttempt.objects.filter(finished_at__gte=month.starts_at, finished_at__lt=month.ends_at),
        day,
        month,
    )
    limits = caps()
    return Status(
        at=now,
        day=day,
        month=month,
        today_usd=float(sums["today"] or 0.0),
        month_usd=float(sums["month"] or 0.0),
        daily_cap_usd=limits[DAY],
        monthly_cap_usd=limits[MONTH],
        last_attempt_id=sums["last"] or 0,
    )


def with_newer(st: Status, now: datetime) -> Status:
    """`st` plus the attempts recorded since (ids above its last one), within the same day."""
    sums = _sums(PulseAttempt.objects.filter(pk__gt=st.last_attempt_id), st.day, st.month)
    if sums["last"] is None:
        return replace(st, at=now)
    return replace(
        st,
        at=now,
        today_usd=st.today_usd + float(sums["today"] or 0.0),
        month_usd=st.month_usd + float(sums["month"] or 0.0),
        last_attempt_id=sums["last"],
    )


@dataclass(frozen=True)
class SpendLine:
    """One source's or one routine's spend (`key`: the source, or the routine's id)."""

    key: str | int
    name: str
    today_usd: float
    month_usd: float


@dataclass(frozen=True)
class Spend:
    """What the dashboard, /api/stats and pulse_queue show of the spend."""

    status: Status
    critical_waits: bool
    by_source: list[SpendLine] = field(default_factory=list)
    by_routine: list[SpendLine] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        """Whether pulses wait for the next period (a cap is reached)."""
        return bool(self.status.reached)

    @property
    def caps_reached(self) -> list[str]:
        """The names of the periods whose cap is reached ("day", "month")."""
        return [period.name for period in self.status.reached]

    def as_dict(self) -> dict:
        st = self.status
        return {
            "today_usd": round(st.today_usd, 6),
            "month_usd": round(st.month_usd, 6),
            "daily_cap_usd": None if st.daily_cap_usd is None else float(st.daily_cap_usd),
            "monthly_cap_usd": None if st.monthly_cap_usd is None else float(st.monthly_cap_usd),
            "waiting": self.waiting,
            "caps_reached": self.caps_reached,
            "resumes_at": st.resumes_at,
            "critical_waits": self.critical_waits,
            "by_source": [_line(line, "source") for line in self.by_source],
            "by_routine": [_line(line, "routine_id") | {"name": line.name} for line in self.by_routine],
        }


def _line(line: SpendLine, key: str) -> dict:
    return {key: line.key, "today_usd": round(line.today_usd, 6), "month_usd": round(line.month_usd, 6)}


def spend(now: datetime | None = None) -> Spend:
    """The spend today and this month, in all and per source and per routine (this month's runs):
    one pass over the month's attempts grouped by their pulses' (source, routine), then the routines'
    names."""
    now = now or timezone.now()
    day, month = periods(now)
    in_month = {
        "attempt_set__finished_at__gte": month.starts_at,
        "attempt_set__finished_at__lt": month.ends_at,
        "attempt_set__cost_usd__isnull": False,
    }
    # The month's pulses begin at the oldest one a month's attempt belongs to (read from the covering
    # index): PostgreSQL otherwise hashed the whole pulses table for the join (415 ms on a year). The
    # Sum beside the Min keeps PostgreSQL from answering a lone MIN by walking the pulse_id index
    # from its start, past a year of attempts (1.7 s).
    oldest = PulseAttempt.objects.filter(
        finished_at__gte=month.starts_at, finished_at__lt=month.ends_at, cost_usd__isnull=False
    ).aggregate(first=Min("pulse_id"), spent=Sum("cost_usd"))["first"]
    today = Q(attempt_set__finished_at__gte=day.starts_at, attempt_set__finished_at__lt=day.ends_at)
    rows = (
        []
        if oldest is None
        else Pulse.objects.filter(pk__gte=oldest, **in_month)
        .values_list("source", "routine_id")
        .annotate(month=Sum("attempt_set__cost_usd"), today=Sum("attempt_set__cost_usd", filter=today))
        .order_by()
    )
    by_source: dict[str, list[float]] = {}
    by_routine: dict[int, list[float]] = {}
    for source, routine_id, month_usd, today_usd in rows:
        for totals, key in ((by_source, source), (by_routine, routine_id)):
            if key is not None:
                line = totals.setdefault(key, [0.0, 0.0])
                line[0] += today_usd or 0.0
                line[1] += month_usd or 0.0
    names = dict(Routine.objects.filter(pk__in=by_routine).values_list("pk", "name"))
    limits = caps()
    st = Status(
        at=now,
        day=day,
        month=month,
        today_usd=sum(today for today, _ in by_source.values()),
        month_usd=sum(month_usd for _, month_usd in by_source.values()),
        daily_cap_usd=limits[DAY],
        monthly_cap_usd=limits[MONTH],
    )
    return Spend(
        status=st,
        critical_waits=settings.PULSE_BUDGET_HOLDS_CRITICAL,
        by_source=_lines({key: (key, *sums) for key, sums in by_source.items()}),
        by_routine=_lines({key: (names.get(key, f"#{key}"), *sums) for key, sums in by_routine.items()}),
    )


def _lines(totals: dict) -> list[SpendLine]:
    """SpendLines, the biggest spender this month first."""
    lines = [SpendLine(key, name, today, month) for key, (name, today, month) in totals.items()]
    return sorted(lines, key=lambda line: (-line.month_usd, str(line.name)))


@gated
def record_reached(st: Status, period: Period) -> int | None:
    """Store that `period`'s cap was reached; its row's id for the one that stored it (which sends the
    alert), None when another worker did first."""
    cap = caps()[period.name]
    spent = st.today_usd if period.name == DAY else st.month_usd
    try:
        with transaction.atomic():
            row = BudgetCapReached.objects.create(
                period=period.name, starts_at=period.starts_at, cap_usd=cap, spent_usd=spent, reached_at=st.at
            )
    except IntegrityError:
        return None
    return row.pk


class Hold(enum.Enum):
    NONE = "none"  # under the caps: every due pulse may be claimed
    CRITICAL_ONLY = "critical_only"  # a cap reached: only critical pulses
    ALL = "all"  # a cap reached, and PULSE_BUDGET_HOLDS_CRITICAL


class Gate:
    """A worker's view of the caps, read again only when it may have changed (see the module)."""

    def __init__(
        self,
        *,
        worker: str = "",
        on_reached: Callable[[int], None] | None = None,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.worker = worker
        self.clock = clock  # tests move time by giving their own
        self._on_reached = on_reached  # called with a BudgetCapReached id this worker stored
        self._status: Status | None = None
        self._sum_again_at = 0.0  # time.monotonic() when the month is summed again
        self._newer = False  # a run of this worker ended: add the attempts recorded since
        self._recorded: set[tuple[str, datetime]] = set()

    def spent(self) -> None:
        """One of this worker's runs ended: add the newer attempts before the next claim."""
        self._newer = True

    def hold(self) -> Hold:
        """What the caps let this worker claim now."""
        if not any(value is not None for value in caps().values()):
            self._status = None
            return Hold.NONE
        st = self.current()
        if st is None or not st.reached:
            return Hold.NONE
        return Hold.ALL if settings.PULSE_BUDGET_HOLDS_CRITICAL else Hold.CRITICAL_ONLY

    def current(self) -> Status | None:
        """The cached status, read again when stale; None without caps."""
        if not any(value is not None for value in caps().values()):
            return None
        now = self.clock()
        before = self._status
        if before is None or now >= before.day.ends_at or time.monotonic() >= self._sum_again_at:
            st = status(now)
        elif self._newer:
            st = with_newer(before, now)
        else:
            return before
        self._status, self._newer = st, False
        # Over a cap the spend can only grow until the period ends: its whole sum can wait till then.
        self._sum_again_at = float("inf") if st.reached else time.monotonic() + RECHECK_SECONDS
        self._tell(st, was_waiting=bool(before and before.reached))
        return st

    def seconds_until_resume(self) -> float:
        """Seconds until the pulses that wait run again (inf when none wait)."""
        st = self._status
        if st is None or not st.reached:
            return float("inf")
        return max((st.resumes_at - self.clock()).total_seconds(), 0.0)

    def _tell(self, st: Status, *, was_waiting: bool) -> None:
        reached = st.reached
        if not reached:
            if was_waiting:
                logger.warning("budget_resumed worker=%s: claiming every due pulse again", self.worker)
            return
        if not was_waiting:
            logger.warning(
                "budget_waiting worker=%s caps_reached=%s today_usd=%.4f month_usd=%.4f resumes_at=%s "
                "critical_runs=%s",
                self.worker,
                ",".join(p.name for p in reached),
                st.today_usd,
                st.month_usd,
                st.resumes_at.isoformat(),
                not settings.PULSE_BUDGET_HOLDS_CRITICAL,
            )
        for period in reached:
            key = (period.name, period.starts_at)
            if key in self._recorded:
                continue
            self._recorded.add(key)
            reached_id = record_reached(st, period)
            if reached_id is not None:
                logger.warning(
                    "budget_cap_reached period=%s id=%s worker=%s", period.name, reached_id, self.worker
                )
                if self._on_reached:
                    self._on_reached(reached_id)
