"""A routine's schedule: a 5-field cron expression (or an `@hourly`-style macro) or an interval
(`every 30 minutes`), and the fire times it gives in an IANA zone.

Cron expressions are evaluated by cronsim in the routine's zone, which matches Debian's cron across
DST changes: a wall-clock time skipped by a spring-forward change fires once at the next valid
instant (02:30 -> 03:00), one repeated by a fall-back change fires once (its first occurrence), and
an hourly expression fires 23 or 25 times on those days because it follows elapsed hours. Intervals
are elapsed time, counted from the Unix epoch so every process computes the same instants (`every 30
minutes` fires at :00 and :30 UTC), and are untouched by DST.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
INTERVAL = re.compile(
    r"^every\s+(?:(?P<count>\d+)\s*)?(?P<unit>second|minute|hour|day|week|sec|min|hr|h|m|s|d|w)s?$",
    re.IGNORECASE,
)
SHORT_UNITS = {"sec": "second", "s": "second", "min": "minute", "m": "minute", "hr": "hour", "h": "hour"}
SHORT_UNITS |= {"d": "day", "w": "week"}
MIN_INTERVAL = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CATCH_UP_CAP = timedelta(hours=24)
# A fire time searched past this far ahead means the expression never fires (`0 0 30 2 *`).
SEARCH_LIMIT = 10_000


class ScheduleError(ValueError):
    """An expression, interval, zone or window that cannot be used; the message names the problem."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; `fires_after` yields its fire times in a zone."""

    text: str
    cron: str = ""  # the 5-field expression (macros expanded), or "" for an interval
    interval: timedelta | None = None

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """The first fire strictly after `moment` (aware), in UTC."""
        return next(self.fires_after(moment, zone))

    def fires_after(self, moment: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """Fire times strictly after `moment`, ascending, each once, in UTC.

        In UTC because Python compares and subtracts two datetimes of one zone by their wall-clock
        times, blind to which pass of a repeated hour each is."""
        if self.interval is not None:
            step = self.interval
            count = (moment - EPOCH) // step + 1
            while True:
                yield EPOCH + count * step
                count += 1
        last = moment.astimezone(UTC)
        # cronsim walks naive wall-clock time for expressions at fixed times; from a moment in the
        # second pass of a repeated hour it can answer the first pass, which is earlier: such a
        # time is skipped, so a repeated wall-clock time never fires twice.
        for local in CronSim(self.cron, moment.astimezone(zone)):
            fire = local.astimezone(UTC)
            if fire > last:
                last = fire
                yield fire

    def period(self, around: datetime, zone: ZoneInfo) -> timedelta:
        """The gap between two fires from `around` (the default catch-up window, before its cap)."""
        if self.interval is not None:
            return self.interval
        fires = self.fires_after(around, zone)
        first = next(fires)
        return next(fires) - first

    def catch_up_window(self, around: datetime, zone: ZoneInfo) -> timedelta:
        return min(self.period(around, zone), CATCH_UP_CAP)

    def describe(self) -> str:
        """The schedule in words, for listings ("every 30 minutes", "At 08:00 on Monday through Friday")."""
        if self.interval is not None:
            return describe_interval(self.interval)
        try:
            return CronSim(self.cron, datetime.now(UTC)).explain()
        except Exception:  # explain() covers most, not all, of cronsim's syntax
            return self.cron


def describe_interval(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in reversed(UNITS.items()):
        if seconds % size == 0:
            count = seconds // size
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    return f"every {seconds} seconds"  # pragma: no cover - seconds always divide


def parse(text: str) -> Schedule:
    """Parse a schedule; ScheduleError (field `schedule`) names what is wrong with it."""
    text = " ".join((text or "").split())
    if not text:
        raise ScheduleError("schedule", "the schedule is empty: give a cron expression or 'every N minutes'")
    match = INTERVAL.match(text)
    if match:
        unit = SHORT_UNITS.get(match["unit"].lower(), match["unit"].lower())
        interval = timedelta(seconds=int(match["count"] or 1) * UNITS[unit])
        if interval < MIN_INTERVAL:
            raise ScheduleError(
                "schedule", f"'{text}' is under one minute; the shortest interval is 1 minute"
            )
        return Schedule(text=text, interval=interval)
    if text.lower().startswith("every"):
        raise ScheduleError(
            "schedule",
            f"'{text}' is not an interval Reeve reads: write e.g. 'every 30 minutes' or 'every 2 hours'",
        )
    cron = MACROS.get(text.lower(), text)
    if cron.startswith("@"):
        raise ScheduleError("schedule", f"unknown macro '{text}'; use one of {', '.join(MACROS)}")
    if len(cron.split()) != 5:
        raise ScheduleError(
            "schedule", f"'{text}' is not a 5-field cron expression (minute hour day month weekday)"
        )
    try:
        first = next(CronSim(cron, datetime.now(UTC)), None)
    except CronSimError as exc:
        raise ScheduleError("schedule", f"'{text}' is not a valid cron expression: {exc}") from None
    if first is None:
        raise ScheduleError("schedule", f"'{text}' never fires")
    return Schedule(text=text, cron=cron)


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ScheduleError (field `timezone`) when there is none by that name."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "timezone", f"unknown time zone '{name}'; use an IANA name like Europe/Berlin"
        ) from None


def check_window(start: time | None, end: time | None) -> None:
    """An active window is both ends or neither, and not empty."""
    if (start is None) != (end is None):
        raise ScheduleError("active_from", "an active window needs both ends (active_from and active_until)")
    if start is not None and start == end:
        raise ScheduleError("active_until", f"the active window {start:%H:%M}-{end:%H:%M} is empty")


def in_window(moment: datetime, start: time | None, end: time | None) -> bool:
    """Whether a local `moment` falls in [start, end); a window may wrap midnight (22:00-06:00)."""
    if start is None or end is None:
        return True
    wall = moment.time().replace(tzinfo=None)
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end
