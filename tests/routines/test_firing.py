"""Firing routines with an injected clock: DST changes, missed fires, zones, exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from pulses.models import Pulse
from pulses.routines import changes, firing
from pulses.routines.models import Routine

pytestmark = pytest.mark.django_db

STEP = timedelta(minutes=10)


def drive(start: datetime, end: datetime, step: timedelta = STEP) -> None:
    """Run the firing at every step of the clock, twice per step (a second worker at the same instant).

    The clock runs in UTC: adding to a zoned datetime adds wall-clock time, which skips a repeated hour."""
    now = start.astimezone(UTC)
    while now <= end:
        firing.fire_due(now)
        firing.fire_due(now)
        now += step


def fires_per_local_day(routine: Routine) -> Counter:
    zone = ZoneInfo(routine.timezone)
    return Counter(p.fire_at.astimezone(zone).date().isoformat() for p in routine.pulses.all())


def make_routine(name: str, schedule: str, *, now: datetime, **fields: object) -> Routine:
    """A routine stored as every surface stores one (`changes.create`), read in UTC and with a
    placeholder prompt unless the test gives its own."""
    return changes.create(
        name=name, schedule=schedule, now=now, **{"prompt": "p", "timezone": "UTC"} | fields
    )


@pytest.mark.parametrize(
    ("zone_name", "day", "hours"),
    [
        ("Europe/Berlin", "2026-03-29", 23),
        ("Europe/Berlin", "2026-10-25", 25),
        ("America/New_York", "2026-03-08", 23),
        ("America/New_York", "2026-11-01", 25),
    ],
)
def test_daily_0230_fires_once_a_day_and_hourly_fires_23_or_25_times_across_a_dst_change(
    zone_name, day, hours
):
    zone = ZoneInfo(zone_name)
    changed = datetime.fromisoformat(day).replace(tzinfo=zone)
    start = changed - timedelta(days=1, hours=12)
    daily = make_routine("daily", "30 2 * * *", now=start, prompt="Brief me", timezone=zone_name)
    hourly = make_routine("hourly", "@hourly", now=start, prompt="Check", timezone=zone_name)

    drive(start, changed + timedelta(days=2))

    per_day = fires_per_local_day(daily)
    assert set(per_day.values()) == {1}
    assert len(per_day) == 3
    assert fires_per_local_day(hourly)[day] == hours
    # Each fire is one pulse, and every fire landed: nothing skipped.
    assert Pulse.objects.filter(routine=hourly).count() == len(
        set(hourly.pulses.values_list("fire_at", flat=True))
    )
    assert Routine.objects.get(pk=hourly.pk).missed_count == 0
    on_the_day = [
        p.fire_at.astimezone(zone)
        for p in daily.pulses.all()
        if p.fire_at.astimezone(zone).date().isoformat() == day
    ]
    assert [f"{f:%H:%M}" for f in on_the_day] == ["03:00" if hours == 23 else "02:30"]


def test_a_time_skipped_by_spring_forward_fires_at_the_next_valid_instant():
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, tzinfo=zone)
    routine = make_routine("b", "30 2 * * *", now=start, timezone="Europe/Berlin")

    drive(start, datetime(2026, 3, 29, 12, tzinfo=zone))

    assert [p.fire_at.astimezone(zone).isoformat() for p in routine.pulses.all()] == [
        "2026-03-29T03:00:00+02:00"
    ]


def test_a_time_repeated_by_fall_back_fires_once_at_its_first_pass():
    zone = ZoneInfo("America/New_York")
    start = datetime(2026, 10, 31, 12, tzinfo=zone)
    routine = make_routine("ny", "30 1 * * *", now=start, timezone="America/New_York")

    drive(start, datetime(2026, 11, 1, 12, tzinfo=zone), step=timedelta(minutes=5))

    assert [p.fire_at.astimezone(zone).isoformat() for p in routine.pulses.all()] == [
        "2026-11-01T01:30:00-04:00"
    ]


def test_after_downtime_only_the_latest_missed_fire_runs_and_the_rest_are_logged_as_skipped(caplog):
    start = datetime(2026, 6, 1, 9, 30, tzinfo=ZoneInfo("UTC"))
    routine = make_routine("hourly-check", "@hourly", now=start)
    caplog.set_level(logging.WARNING, logger="pulses.routines.firing")

    fires = firing.fire_due(start + timedelta(hours=5, minutes=10))

    assert [f.fire_at for f in fires] == [datetime(2026, 6, 1, 14, tzinfo=ZoneInfo("UTC"))]
    assert routine.pulses.count() == 1
    assert "routine_fires_skipped name=hourly-check missed=4" in caplog.text
    routine.refresh_from_db()
    assert routine.missed_count == 4
    assert routine.next_fire_at == datetime(2026, 6, 1, 15, tzinfo=ZoneInfo("UTC"))


def test_a_missed_fire_beyond_its_catch_up_window_is_skipped_not_run():
    start = datetime(2026, 6, 1, 7, tzinfo=ZoneInfo("UTC"))
    routine = make_routine("briefing", "0 8 * * *", now=start, catch_up_window=timedelta(hours=1))

    assert firing.fire_due(datetime(2026, 6, 1, 10, tzinfo=ZoneInfo("UTC")))[0].pulse_id is None

    routine.refresh_from_db()
    assert routine.pulses.count() == 0
    assert routine.missed_count == 1
    assert routine.next_fire_at == datetime(2026, 6, 2, 8, tzinfo=ZoneInfo("UTC"))


def test_a_week_of_downtime_gives_one_catch_up_at_most_never_a_burst():
    start = datetime(2026, 6, 1, 7, tzinfo=ZoneInfo("UTC"))
    every = make_routine("often", "*/5 * * * *", now=start)
    interval = make_routine("interval", "every 30 minutes", now=start)

    firing.fire_due(start + timedelta(days=7, minutes=1))

    assert every.pulses.count() == 1
    assert interval.pulses.count() == 1
    assert Routine.objects.get(pk=interval.pk).missed_count == 7 * 48 - 1


def test_a_fire_outside_the_active_window_is_skipped():
    start = datetime(2026, 6, 1, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    routine = make_routine(
        "daytime", "@hourly", now=start, timezone="Europe/Berlin", active_from=time(8), active_until=time(22)
    )

    drive(start, start + timedelta(hours=23, minutes=50))

    hours = sorted(p.fire_at.astimezone(ZoneInfo("Europe/Berlin")).hour for p in routine.pulses.all())
    assert hours == list(range(8, 22))
    assert Routine.objects.get(pk=routine.pk).outside_window_count == 9  # 01:00-07:00, 22:00, 23:00


def test_changing_time_zone_recomputes_the_next_fire_and_nothing_fires_twice(settings):
    settings.TIME_ZONE = "UTC"
    start = datetime(2026, 6, 1, 7, tzinfo=ZoneInfo("UTC"))
    routine = changes.create(name="morning", prompt="p", schedule="0 8 * * *", now=start)
    drive(start, datetime(2026, 6, 1, 8, 30, tzinfo=ZoneInfo("UTC")))
    assert routine.pulses.count() == 1  # 08:00 UTC

    settings.TIME_ZONE = (
        "America/New_York"  # 08:00 there is 12:00 UTC: a new fire, not a second one today at 08:00 UTC
    )
    assert firing.recompute_zones(datetime(2026, 6, 1, 8, 30, tzinfo=ZoneInfo("UTC"))) == 1
    routine.refresh_from_db()
    assert routine.next_fire_at == datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("UTC"))

    settings.TIME_ZONE = "Asia/Tokyo"  # a change the worker did not see at start: the firing sees it
    drive(
        datetime(2026, 6, 1, 8, 40, tzinfo=ZoneInfo("UTC")),
        datetime(2026, 6, 1, 22, 50, tzinfo=ZoneInfo("UTC")),
    )
    routine.refresh_from_db()
    assert routine.pulses.count() == 1  # neither 12:00 UTC (New York's 08:00) nor 08:00 UTC again
    assert routine.next_fire_at == datetime(2026, 6, 1, 23, tzinfo=ZoneInfo("UTC"))  # 08:00 in Tokyo


def test_changing_a_routines_zone_moves_its_next_fire():
    start = datetime(2026, 6, 1, 5, tzinfo=ZoneInfo("UTC"))
    routine = make_routine("z", "0 8 * * *", now=start)

    changes.update(routine, {"timezone": "Europe/Berlin"}, now=start)

    assert routine.next_fire_at == datetime(2026, 6, 1, 6, tzinfo=ZoneInfo("UTC"))


def test_the_soonest_fire_is_what_the_worker_waits_for():
    start = datetime(2026, 6, 1, 5, tzinfo=ZoneInfo("UTC"))
    assert firing.next_fire_at() is None
    make_routine("late", "0 9 * * *", now=start)
    soon = make_routine("soon", "0 6 * * *", now=start)
    make_routine("off", "0 5 * * *", now=start, enabled=False)

    assert firing.next_fire_at() == soon.next_fire_at


def test_a_routines_pulse_carries_source_routine_its_link_its_tags_and_its_check():
    start = datetime(2026, 6, 1, 5, tzinfo=ZoneInfo("UTC"))
    routine = make_routine(
        "tagged",
        "0 6 * * *",
        now=start,
        prompt="Plan the week",
        tags=["weekly"],
        sticky_notes=["be brief"],
        priority="high",
        check_command="test -e flag",
        max_retries=1,
    )

    firing.fire_due(datetime(2026, 6, 1, 6, tzinfo=ZoneInfo("UTC")))

    pulse = Pulse.objects.get(routine=routine)
    assert (pulse.source, pulse.tags, pulse.sticky_notes, pulse.priority) == (
        "routine",
        ["weekly"],
        ["be brief"],
        "high",
    )
    assert (pulse.prompt, pulse.check_command, pulse.max_retries) == ("Plan the week", "test -e flag", 1)
    assert pulse.scheduled_at == pulse.fire_at == datetime(2026, 6, 1, 6, tzinfo=ZoneInfo("UTC"))


def test_a_routine_whose_fire_raises_is_paused_and_the_others_still_fire(caplog):
    start = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
    broken = make_routine("broken", "every 1h", now=start)
    healthy = make_routine("healthy", "every 1h", now=start)
    # A row edited by hand into something Reeve cannot read: tags that are not a list.
    Routine.objects.filter(pk=broken.pk).update(tags=5)

    firing.fire_due(start + timedelta(hours=1, minutes=1))

    broken.refresh_from_db()
    assert not broken.enabled
    assert broken.paused_reason.startswith("paused: firing failed (TypeError:")
    assert not broken.pulses.exists()
    assert healthy.pulses.count() == 1
    assert "routine_paused name=broken reason=firing_failed" in caplog.text


def test_a_routines_fires_carry_its_agent_options(settings):
    start = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
    routine = make_routine(
        "research", "0 8 * * *", now=start, model="opus", timeout_seconds=7200, max_turns=80
    )
    plain = make_routine("reminder", "0 8 * * *", now=start)
    firing.fire_due(start + timedelta(hours=1))
    fired = Pulse.objects.get(routine=routine)
    assert (fired.model, fired.timeout_seconds, fired.max_turns) == ("opus", 7200, 80)
    other = Pulse.objects.get(routine=plain)
    assert (other.model, other.timeout_seconds, other.max_turns) == ("", None, None)
