"""The hourly heartbeat as a routine: made by a data migration, paused until the owner resumes it,
and sharing each hour's key with `trigger_pulse --heartbeat`, so the two never double a heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from pulses.models import Pulse
from pulses.ops.hourly_prompt import PROMPTS, hour_key, schedule_hourly_prompt
from pulses.routines import changes, firing
from pulses.routines.models import Routine

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def hourly(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    return Routine.objects.get(name="hourly-prompt")


def test_the_migration_made_the_hourly_prompt_routine_paused(hourly):
    assert (hourly.schedule, hourly.kind, hourly.enabled) == ("@hourly", "hourly_prompt", False)
    assert "trigger_pulse --heartbeat" in hourly.paused_reason


def test_the_cron_line_first_then_the_routine_make_one_heartbeat(hourly):
    changes.resume(hourly, now=datetime(2026, 6, 1, 9, 59, tzinfo=BERLIN))
    cron = schedule_hourly_prompt(now=datetime(2026, 6, 1, 10, 0, 0, 300, tzinfo=BERLIN))

    firing.fire_due(datetime(2026, 6, 1, 10, 0, 1, tzinfo=BERLIN))

    assert list(Pulse.objects.values_list("pk", flat=True)) == [cron.pulse.pk]
    assert Routine.objects.get(pk=hourly.pk).last_pulse_id == cron.pulse.pk


def test_the_routine_first_then_the_cron_line_make_one_heartbeat_with_the_time_of_day_prompt(hourly):
    changes.resume(hourly, now=datetime(2026, 6, 1, 18, 30, tzinfo=BERLIN))
    firing.fire_due(datetime(2026, 6, 1, 19, 0, tzinfo=BERLIN))

    call_command("trigger_pulse", "--heartbeat")  # the cron line, late in the same hour (real clock)
    again = schedule_hourly_prompt(now=datetime(2026, 6, 1, 19, 0, 5, tzinfo=BERLIN))

    assert not again.created
    pulse = Pulse.objects.get(routine=hourly)
    assert again.pulse.pk == pulse.pk
    assert (pulse.prompt, pulse.source) == (PROMPTS["evening"], "routine")
    assert set(pulse.tags) == {"heartbeat", "evening"}


def test_both_passes_of_a_repeated_hour_get_their_own_heartbeat(hourly):
    first = datetime(2026, 10, 25, 0, 30, tzinfo=ZoneInfo("UTC"))  # 02:30 +02:00
    second = first + timedelta(hours=1)  # 02:30 +01:00
    assert hour_key(first) != hour_key(second)
    changes.resume(hourly, now=first - timedelta(hours=3))

    now = first - timedelta(hours=3)
    while now < second + timedelta(hours=2):
        firing.fire_due(now)
        schedule_hourly_prompt(now=now)
        now += timedelta(minutes=15)

    keys = list(Pulse.objects.order_by("scheduled_at").values_list("idempotency_key", flat=True))
    # 23:30 made the 23 o'clock heartbeat through the cron line; the routine's fires joined the rest.
    hours = ["2026-10-24T23+0200", *(f"2026-10-25T{h}" for h in ("00+0200", "01+0200", "02+0200", "02+0100"))]
    assert keys == [f"heartbeat:{hour}" for hour in [*hours, "2026-10-25T03+0100", "2026-10-25T04+0100"]]
