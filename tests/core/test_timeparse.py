from datetime import UTC, datetime, timedelta

import pytest

from pulses.timeparse import TimeParseError, parse_when

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)


def test_now_is_now():
    assert parse_when("now", now=NOW) == NOW
    assert parse_when(None, now=NOW) == NOW


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("in 5 minutes", timedelta(minutes=5)),
        ("in 2 hours", timedelta(hours=2)),
        ("in 3 days", timedelta(days=3)),
        ("in 1 minute", timedelta(minutes=1)),
        ("IN 10 MIN", timedelta(minutes=10)),
    ],
)
def test_relative_times(text, delta):
    assert parse_when(text, now=NOW) == NOW + delta


def test_iso_with_offset_and_naive_in_the_configured_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert parse_when("2026-12-01T09:00:00+00:00") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert parse_when("2026-12-01T09:00:00") == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_natural_phrases_are_read_in_the_configured_zone(settings):
    settings.TIME_ZONE = "UTC"
    assert parse_when("tomorrow at 9am", now=NOW) == datetime(2026, 11, 27, 9, tzinfo=UTC)
    assert parse_when("tonight", now=NOW).date() == NOW.date()


def test_unreadable_text_quotes_it_and_lists_the_forms():
    with pytest.raises(TimeParseError) as err:
        parse_when("when pigs fly", now=NOW)
    assert "'when pigs fly'" in str(err.value) and "in N minutes" in str(err.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1", "a bare number"),  # dateparser: next January
        ("5", "a bare number"),  # next May
        ("2027", "a bare number"),
        ("12/25", "a bare number"),
        ("march", "without its day"),  # March, on today's day of the month
        ("june 2027", "without its day"),
        ("the 5th", "without its day"),
    ],
)
def test_a_bare_number_or_a_lone_month_is_refused_never_a_date_months_away(text, reason):
    with pytest.raises(TimeParseError) as err:
        parse_when(text, now=NOW)
    assert reason in str(err.value) and "'tomorrow at 9am'" in str(err.value) and "ISO 8601" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("march 3", datetime(2027, 3, 3, tzinfo=UTC)),
        ("friday 9am", datetime(2026, 11, 27, 9, tzinfo=UTC)),
        ("10:30", datetime(2026, 11, 27, 10, 30, tzinfo=UTC)),
        ("2026-12-25", datetime(2026, 12, 25, tzinfo=UTC)),
        ("next month", NOW + timedelta(days=30)),
    ],
)
def test_a_phrase_that_names_its_day_or_a_relative_moment_still_reads(settings, text, expected):
    settings.TIME_ZONE = "UTC"
    assert parse_when(text, now=NOW) == expected
