"""History that does not slow anything down: the daily rollup behind the queue counts, full-text
search, index-probed filter choices and dates, the admin's capped count, the database facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from pulses import history, queue, reports
from pulses.admin import CappedPaginator
from pulses.db import search
from pulses.models import FinishedDay, Pulse, Status
from tests.support.factories import PulseAttemptFactory, PulseFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/pulses/pulse/"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def finished(status: str, at: datetime, **fields) -> Pulse:
    return PulseFactory(status=status, finished_at=at, **fields)


def full_count() -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for row in Pulse.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def test_finished_counts_add_the_sealed_days_to_the_live_range():
    finished(Status.COMPLETED, NOW - timedelta(days=3))
    finished(Status.COMPLETED, NOW - timedelta(days=3, hours=2))
    finished(Status.FAILED, NOW - timedelta(days=1))
    finished(Status.CANCELLED, NOW - timedelta(minutes=30))
    assert history.finished_counts(NOW) == {"completed": 2, "failed": 1, "cancelled": 1}
    days = {row.day: (row.completed, row.failed, row.cancelled) for row in FinishedDay.objects.all()}
    # Sealed: every day from the oldest up to yesterday, zeros included; today is counted live.
    assert days == {
        datetime(2026, 6, 12).date(): (2, 0, 0),
        datetime(2026, 6, 13).date(): (0, 0, 0),
        datetime(2026, 6, 14).date(): (0, 1, 0),
    }
    # A pulse finishing today changes the live range only; the sealed days are read, not counted.
    finished(Status.COMPLETED, NOW - timedelta(minutes=5))
    assert history.finished_counts(NOW)["completed"] == 3
    assert FinishedDay.objects.count() == 3


def test_a_day_is_sealed_only_an_hour_after_it_ended():
    just_before_midnight = datetime(2026, 6, 14, 23, 59, 59, tzinfo=UTC)
    finished(Status.COMPLETED, just_before_midnight)
    history.finished_counts(datetime(2026, 6, 15, 0, 30, tzinfo=UTC))
    assert not FinishedDay.objects.exists()
    # A run of the 14th recorded late (a worker clock behind) still counts.
    finished(Status.COMPLETED, just_before_midnight)
    assert history.finished_counts(datetime(2026, 6, 15, 1, 30, tzinfo=UTC))["completed"] == 2
    assert FinishedDay.objects.get().completed == 2


def test_stats_agree_with_a_full_count_after_requeue_and_rebuild():
    old = finished(Status.FAILED, NOW - timedelta(days=40))
    finished(Status.COMPLETED, NOW - timedelta(days=2))
    PulseFactory()
    PulseFactory(processing=True)
    history.finished_counts(NOW)  # seals the past days
    assert reports.stats().by_status == full_count()
    queue.requeue(old.pk)  # leaves its sealed day in the same transaction
    assert reports.stats().by_status == full_count() == {**full_count(), "failed": 0, "pending": 2}
    Pulse.objects.filter(status=Status.COMPLETED).delete()
    history.rebuild()
    assert reports.stats().by_status == full_count()


def test_stats_read_no_finished_row_once_the_days_are_sealed(django_assert_max_num_queries):
    for days in range(30):
        finished(Status.COMPLETED, NOW - timedelta(days=days + 1))
    history.finished_counts(NOW)
    with django_assert_max_num_queries(4):  # sealed-days check, sums, live range, undated
        assert history.finished_counts(NOW)["completed"] == 30


def test_search_finds_every_word_or_its_start_in_any_order():
    calendar = PulseFactory(prompt="Check the calendar for tomorrow's meetings")
    plants = PulseFactory(prompt="Water the plants, then check the mail")
    pulses = Pulse.objects.all()
    assert set(search.matching(pulses, "calend")) == {calendar}
    assert set(search.matching(pulses, "CHECK")) == {calendar, plants}
    assert set(search.matching(pulses, "mail check")) == {plants}
    assert set(search.matching(pulses, "check garden")) == set()
    assert set(search.matching(pulses, "'; DROP TABLE pulses; --")) == set()
    assert list(search.matching(pulses, "?!")) == []


def test_search_follows_deleted_pulses_through_the_index():
    gone = PulseFactory(prompt="history of the garden")
    kept = PulseFactory(prompt="history of the kitchen")
    gone.delete()
    assert list(search.matching(Pulse.objects.all(), "history")) == [kept]


def test_the_search_index_is_in_place_after_every_migration():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'pulses'")
            assert {row[0] for row in cursor.fetchall()} == {
                "pulse_search_insert",
                "pulse_search_delete",
                "pulse_search_update",
            }
        else:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'pulses_prompt_search_idx'")
            assert "to_tsvector('simple'" in cursor.fetchone()[0]


def test_admin_search_uses_the_index_and_skips_the_second_count(admin_client):
    match = PulseFactory(prompt="Review the history of the budget")
    PulseFactory(prompt="Water the plants")
    response = admin_client.get(CHANGELIST + "?q=hist")
    assert [p.pk for p in response.context["cl"].result_list] == [match.pk]
    assert response.context["cl"].full_result_count is None


def test_source_choices_are_each_source_once_in_order():
    for source in ("telegram", "heartbeat", "telegram", "api", "heartbeat"):
        PulseFactory(source=source)
    assert reports.sources() == ["api", "heartbeat", "telegram"]
    assert reports.sources(limit=2) == ["api", "heartbeat"]


def test_the_admin_count_stops_at_its_cap_and_says_so(admin_client, monkeypatch):
    monkeypatch.setattr(CappedPaginator, "cap", 3)
    for _ in range(5):
        PulseFactory()
    page = admin_client.get(CHANGELIST)
    assert page.context["cl"].result_count == 3
    text = page.content.decode()
    assert "More than 3 pulses match, so the count stops there" in text
    assert "the database holds about 5 pulses in all" in text
    few = admin_client.get(CHANGELIST + "?status__exact=failed")
    assert "count stops there" not in few.content.decode()


def test_date_navigation_lists_only_periods_that_have_pulses(admin_client):
    PulseFactory(scheduled_at=datetime(2024, 3, 5, 10, tzinfo=UTC))
    PulseFactory(scheduled_at=datetime(2026, 2, 7, 10, tzinfo=UTC))
    PulseFactory(scheduled_at=datetime(2026, 2, 9, 10, tzinfo=UTC))
    PulseFactory(scheduled_at=datetime(2026, 5, 1, 10, tzinfo=UTC))
    years = admin_client.get(CHANGELIST).content.decode()
    assert "?scheduled_at__year=2024" in years and "?scheduled_at__year=2026" in years
    assert "?scheduled_at__year=2025" not in years
    months = admin_client.get(CHANGELIST + "?scheduled_at__year=2026").content.decode()
    assert "scheduled_at__month=2" in months and "scheduled_at__month=5" in months
    assert "scheduled_at__month=3" not in months
    days = admin_client.get(CHANGELIST + "?scheduled_at__year=2026&scheduled_at__month=2")
    text = days.content.decode()
    assert "scheduled_at__day=7" in text and "scheduled_at__day=9" in text
    assert "scheduled_at__day=8" not in text
    listed = [p.scheduled_at.day for p in days.context["cl"].result_list]
    assert listed == [9, 7]  # within a period: newest scheduled first, along the index


def test_date_navigation_under_a_filter_offers_the_periods_of_all_pulses(admin_client):
    PulseFactory(scheduled_at=datetime(2024, 3, 5, 10, tzinfo=UTC), source="cron")
    PulseFactory(scheduled_at=datetime(2026, 2, 7, 10, tzinfo=UTC), source="telegram")
    page = admin_client.get(CHANGELIST + "?source__exact=telegram").content.decode()
    assert "scheduled_at__year=2024" in page and "scheduled_at__year=2026" in page


@pytest.mark.parametrize(
    ("when", "zone"),
    [
        (datetime(1, 1, 1, 0, 30, tzinfo=UTC), "America/New_York"),  # before year 1 there
        (datetime(1970, 1, 1, tzinfo=UTC), "UTC"),
        (datetime(9999, 12, 31, 23, tzinfo=UTC), "Asia/Tokyo"),  # after 9999 there
    ],
)
def test_a_pulse_stored_outside_the_accepted_years_does_not_break_the_admin_list(
    admin_client, settings, when, zone
):
    settings.TIME_ZONE = zone
    PulseFactory(scheduled_at=datetime(2026, 2, 7, 10, tzinfo=UTC))
    odd = PulseFactory()  # stored before pulses.limits bounded times (2000-9000)
    Pulse.objects.filter(pk=odd.pk).update(scheduled_at=when, status=Status.COMPLETED, finished_at=when)
    page = admin_client.get(CHANGELIST)
    assert odd.pk in [p.pk for p in page.context["cl"].result_list]
    text = page.content.decode()
    assert f"scheduled_at__year={when.year}" not in text  # no link to a year outside 2000-9000
    assert "?scheduled_at__day=7&amp;scheduled_at__month=2&amp;scheduled_at__year=2026" in text
    refused = admin_client.get(CHANGELIST + f"?scheduled_at__year={when.year}")
    assert refused.status_code == 302 and refused.url.endswith("?e=1")  # as any bad filter
    # The daily counts step over the empty centuries instead of counting each day since.
    assert reports.stats().by_status["completed"] == 1
    assert FinishedDay.objects.count() < 40


def test_dashboard_shows_the_database_size_rows_and_oldest_finished_pulse(admin_client):
    pulse = finished(Status.COMPLETED, datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    PulseAttemptFactory(pulse=pulse)
    page = admin_client.get("/dashboard/").content.decode()
    section = page.split('id="history"')[1]
    assert "Database " in section and ("KB" in section or "MB" in section)
    assert "1 pulses" in section and "1 attempts" in section
    assert "oldest finished pulse 2026-01-02 03:04" in section
    assert "finished pulses 180 days, failed ones 365 days, output tails 30 days" in section


def test_doctor_reports_the_history_and_warns_when_retention_falls_behind(settings):
    from pulses.ops.doctor import WARN, check_history

    settings.PULSE_HISTORY_DAYS, settings.PULSE_FAILED_HISTORY_DAYS = 180, 365
    pulse = finished(Status.COMPLETED, timezone.now() - timedelta(days=10))
    PulseAttemptFactory(pulse=pulse)
    check = check_history()
    assert check.level == "ok", check.message
    assert "1 pulses, 1 attempts, oldest finished pulse" in check.message and "database " in check.message
    finished(Status.COMPLETED, timezone.now() - timedelta(days=400))
    check = check_history()
    assert check.level == WARN and "older than the 365 days kept" in check.message
    settings.PULSE_HISTORY_DAYS = 0  # keeping everything: old history is expected
    assert check_history().level == "ok"
