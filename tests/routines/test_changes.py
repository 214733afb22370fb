"""Creating and changing routines: bad input names its field and stores nothing; the preview."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from pulses.routines import changes
from pulses.routines.models import Routine, RoutineInvalid
from pulses.routines.schedule import parse
from tests.routines.refusals import REFUSED_EVERYWHERE

pytestmark = pytest.mark.django_db


def attempt(**fields):
    values = {
        "name": "briefing",
        "prompt": "Brief me",
        "schedule": "0 8 * * 1-5",
        "timezone": "Europe/Berlin",
    }
    return changes.create(**(values | fields))


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        *REFUSED_EVERYWHERE,
        ({"schedule": "0 8 * *"}, "schedule", "5-field"),
        ({"schedule": "@fortnightly"}, "schedule", "unknown macro"),
        ({"schedule": "0 0 30 2 *"}, "schedule", "'0 0 30 2 *'"),
        ({"schedule": "every blue moon"}, "schedule", "every 30 minutes"),
        ({"prompt": "   "}, "prompt", "the prompt is empty"),
        ({"active_from": time(8), "active_until": time(8)}, "active_until", "08:00-08:00 is empty"),
        ({"active_from": time(8)}, "active_from", "both ends"),
        ({"priority": "urgent"}, "priority", "unknown priority"),
        ({"session_policy": "fixed"}, "session_id", "UUID"),
        ({"name": ""}, "name", "a routine needs a name"),
        ({"deliver": "email"}, "deliver", "unknown delivery 'email'"),
    ],
)
def test_bad_input_names_the_field_and_nothing_is_stored(fields, field, words):
    with pytest.raises(RoutineInvalid) as refused:
        attempt(**fields)

    assert refused.value.field == field
    assert words in refused.value.message
    assert not Routine.objects.filter(name="briefing").exists()


def test_a_second_routine_of_the_same_name_is_refused():
    attempt()
    with pytest.raises(RoutineInvalid, match="name: a routine named 'briefing' exists already"):
        attempt(schedule="@daily")


def test_the_preview_shows_the_next_five_fires_in_the_routines_zone():
    fires = changes.preview("0 8 * * 1-5", "Europe/Berlin", after=datetime(2026, 3, 26, 12, tzinfo=UTC))

    assert [f.isoformat() for f in fires] == [
        "2026-03-27T08:00:00+01:00",
        "2026-03-30T08:00:00+02:00",  # after the change to summer time, still 08:00 there
        "2026-03-31T08:00:00+02:00",
        "2026-04-01T08:00:00+02:00",
        "2026-04-02T08:00:00+02:00",
    ]


def test_a_schedule_says_itself_in_words():
    assert parse("every 30 minutes").describe() == "every 30 minutes"
    assert parse("every 1 hours").describe() == "every hour"
    assert "08:00" in parse("0 8 * * 1-5").describe()


def test_pause_and_resume_forget_the_missed_fires_and_start_from_the_next_one():
    routine = attempt(now=datetime(2026, 6, 1, 5, tzinfo=UTC))
    changes.pause(routine)
    assert (routine.enabled, routine.next_fire_at, routine.paused_reason) == (False, None, "paused by hand")

    changes.resume(routine, now=datetime(2026, 6, 10, 9, tzinfo=UTC))  # a Wednesday, after 08:00 there

    assert routine.next_fire_at == datetime(2026, 6, 11, 8, tzinfo=ZoneInfo("Europe/Berlin"))


def test_an_update_with_a_bad_field_changes_nothing():
    routine = attempt()
    with pytest.raises(RoutineInvalid):
        changes.update(routine, {"schedule": "61 * * * *", "prompt": "new"})

    assert Routine.objects.get(pk=routine.pk).prompt == "Brief me"


def test_run_now_of_a_delivering_routine_writes_the_outbox_row_with_its_pulse():
    from pulses.models import Delivery

    made = attempt(deliver="telegram")
    pulse = changes.run_now(made)

    assert Delivery.objects.filter(pulse=pulse, state="waiting").exists()
