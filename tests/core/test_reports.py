"""The read side of the queue (`pulses.reports`): depth, listings, activity, search, workers."""

from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pulses import reports
from pulses.models import WorkerRecord
from tests.support.factories import PulseAttemptFactory, PulseFactory

pytestmark = pytest.mark.django_db


def test_stats_count_by_status_and_pending_priority():
    PulseFactory(due=True, priority="critical")
    PulseFactory(priority="low")
    PulseFactory(failed=True)
    PulseFactory(completed=True)
    stats = reports.stats()
    assert stats.by_status["pending"] == 2 and stats.by_status["failed"] == 1
    assert stats.pending_by_priority["critical"] == 1 and stats.pending_by_priority["low"] == 1
    assert stats.overdue == 1


def test_each_listing_holds_its_own_pulses_most_relevant_first():
    now = timezone.now()
    later = PulseFactory(scheduled_at=now + timedelta(hours=2))
    sooner = PulseFactory(scheduled_at=now + timedelta(hours=1))
    overdue = PulseFactory(due=True)
    old_failure = PulseFactory(failed=True, finished_at=now - timedelta(hours=1))
    new_failure = PulseFactory(failed=True, finished_at=now)
    assert reports.listing("pending") == [overdue, sooner, later]
    assert reports.listing("overdue") == [overdue]
    assert reports.listing("failed") == [new_failure, old_failure]
    assert len(reports.listing("all", limit=3)) == 3


def test_an_unknown_listing_names_the_ones_there_are():
    with pytest.raises(ValueError, match="unknown view 'late'; choose one of pending, overdue"):
        reports.listing("late")


def test_search_filters_by_status_priority_source_and_tag_and_pages():
    PulseFactory(due=True, priority="high", source="telegram", tags=["home"])
    PulseFactory(due=True, priority="low", source="api", tags=["work"])
    PulseFactory(priority="high", source="telegram", tags=["home"])
    PulseFactory(completed=True, source="telegram")
    assert reports.search(status="overdue").count == 2
    assert reports.search(status="pending", priority="high").count == 2
    assert reports.search(source="telegram", tag="home").count == 2
    page = reports.search(limit=1, offset=1)
    assert (page.count, len(page.pulses)) == (4, 1)


def test_a_listing_of_one_final_status_counts_it_from_the_daily_rollup():
    """The count of all failed (or completed, cancelled) pulses is the rollup's, not a read of every
    one of them; with a further filter it is counted from the rows."""
    now = timezone.now()
    for days in (40, 3, 3, 0):
        PulseFactory(failed=True, source="cron" if days else "api", finished_at=now - timedelta(days=days))
    PulseFactory(completed=True, finished_at=now - timedelta(days=3))
    PulseFactory(due=True)
    reports.stats()  # seals the days before today, as the first count of the day does
    with CaptureQueriesContext(connection) as queries:
        page = reports.search(status="failed", limit=2)
    assert page.count == 4 and len(page.pulses) == 2
    assert not [q for q in queries.captured_queries if "COUNT(*)" in q["sql"] and "'failed'" in q["sql"]]
    assert reports.search(status="failed", source="cron").count == 3
    assert reports.search(status="completed").count == 1


def test_activity_counts_runs_per_hour_with_failures_and_durations():
    now = timezone.now().astimezone(UTC).replace(minute=30)
    for duration, ok in ((1000, True), (3000, True), (5000, False)):
        PulseAttemptFactory(finished_at=now, duration_ms=duration, succeeded=ok)
    PulseAttemptFactory(finished_at=now - timedelta(hours=30))  # outside the window
    activity = reports.activity(hours=24, now=now)
    assert (activity.executed, activity.failed) == (3, 1)
    assert activity.average_duration_ms == 3000 and activity.p95_duration_ms == 5000
    assert activity.failure_rate == pytest.approx(1 / 3)
    assert len(activity.per_hour) == 24 and activity.per_hour[-1].executed == 3


def test_an_empty_window_has_no_rates():
    activity = reports.activity(hours=2)
    assert (activity.executed, activity.failure_rate, activity.success_rate) == (0, None, None)


def test_recent_workers_are_the_alive_ones():
    now = timezone.now()
    WorkerRecord.objects.create(name="up:1", host="up", pid=1, started_at=now, last_seen=now)
    WorkerRecord.objects.create(
        name="gone:2", host="gone", pid=2, started_at=now, last_seen=now - timedelta(minutes=5)
    )
    assert [w.name for w in reports.recent_workers()] == ["up:1"]


def test_sources_and_recent_tags_are_distinct_and_sorted():
    PulseFactory(source="telegram", tags=["b", "a"])
    PulseFactory(source="api", tags=["a"])
    PulseFactory(source="telegram", tags=[])
    assert reports.sources() == ["api", "telegram"]
    assert reports.recent_tags() == ["a", "b"]
