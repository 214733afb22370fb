"""Routines on the dashboard (upcoming fires; skipped or failing routines) and in /metrics
(reeve_routine_fires_total, reeve_routine_skips_total{reason})."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from pulses.routines import changes, firing
from pulses.routines.models import Routine, RunResult
from pulses.web import metrics
from tests.web.test_metrics import samples, value

pytestmark = pytest.mark.django_db


def test_the_dashboard_lists_the_next_fires_in_each_routines_zone(admin_client):
    # A daily hour in Tokyo 2-3 hours ahead: a fixed 08:00 JST (23:00 UTC) tied with the half-hourly
    # routine's next fire from 22:30 to 23:00 UTC each day.
    hour = (timezone.now().astimezone(ZoneInfo("Asia/Tokyo")) + timedelta(hours=3)).hour
    changes.create(name="briefing", schedule=f"0 {hour} * * *", prompt="Brief me", timezone="Asia/Tokyo")
    changes.create(name="build", schedule="every 30 minutes", prompt="Check CI")
    paused = changes.create(name="quiet", schedule="@daily", prompt="x")
    changes.pause(paused)
    page = admin_client.get("/dashboard/").content.decode()
    table = re.search(r'<table id="routine-fires">(.*?)</table>', page, re.S).group(1)
    assert table.index(">build<") < table.index(">briefing<")  # every 30 minutes fires first
    assert f"{hour:02d}:00 JST" in table and "(Asia/Tokyo)" in table and "every 30 minutes" in table
    assert "quiet" not in table
    assert f"/admin/pulses/routine/{Routine.objects.get(name='build').pk}/change/" in table


def test_the_dashboard_lists_routines_skipped_or_failing_with_why(admin_client):
    failing = changes.create(name="flaky", schedule="@hourly", prompt="x")
    skipped = changes.create(name="checked", schedule="@hourly", prompt="x", check_command="exit 1")
    changes.create(name="fine", schedule="@hourly", prompt="x")
    now = timezone.now()
    Routine.objects.filter(pk=failing.pk).update(
        last_result=RunResult.FAILED,
        failure_streak=5,
        enabled=False,
        paused_reason="paused after 5 failed runs in a row",
        last_fire_at=now,
    )
    Routine.objects.filter(pk=skipped.pk).update(
        last_result=RunResult.SKIPPED, check_skip_count=3, last_fire_at=now - timedelta(hours=1)
    )
    page = admin_client.get("/dashboard/").content.decode()
    table = re.search(r'<table id="routine-troubles">(.*?)</table>', page, re.S).group(1)
    assert table.index(">flaky<") < table.index(">checked<") and "fine" not in table
    assert "paused after 5 failed runs in a row; 5 failed in a row" in table
    assert 'data-result="failed">failed<' in table and 'data-result="skipped">skipped<' in table
    assert "3 skipped by its wake check" in table


def test_metrics_count_routine_fires_and_skips_by_reason(client):
    before = samples(client.get("/metrics").content.decode())
    # Five and a half minutes past an hour: `late`'s newest fire (on the hour) is outside its
    # one-minute catch-up window whatever the clock says when the test runs.
    now = (timezone.now() - timedelta(hours=1)).replace(minute=5, second=30, microsecond=0)
    due = changes.create(name="due", schedule="every 1 minute", prompt="x", now=now - timedelta(minutes=1))
    late = changes.create(name="late", schedule="every 10 minutes", prompt="x", now=now - timedelta(hours=2))
    Routine.objects.filter(pk=late.pk).update(catch_up_window=timedelta(minutes=1))
    assert Routine.objects.get(pk=due.pk).next_fire_at <= now
    firing.fire_due(now=now)
    metrics.record_routine_skip(reason="check")
    after = samples(client.get("/metrics").content.decode())

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("reeve_routine_fires_total") == 1  # `due`; `late` missed its fires
    assert grew("reeve_routine_skips_total", reason="missed") >= 11  # two hours of 10-minute fires
    assert grew("reeve_routine_skips_total", reason="check") == 1
