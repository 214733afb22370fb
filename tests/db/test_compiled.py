"""The worker loop's reads kept as SQL (`pulses.db.compiled`): the same answers as the ORM's."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pulses.claiming import next_due_at
from pulses.db.compiled import FirstValue
from pulses.models import Pulse
from pulses.routines import firing
from pulses.routines.models import Routine
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db


def soonest_pending():
    return Pulse.objects.pending().order_by("scheduled_at").values_list("scheduled_at", flat=True)


def test_the_first_value_is_the_orms_an_aware_time_and_none_when_nothing_matches():
    read = FirstValue(soonest_pending)
    assert read() is None
    later = timezone.now() + timedelta(hours=2)
    soon = PulseFactory(scheduled_at=timezone.now() + timedelta(minutes=5)).scheduled_at
    PulseFactory(scheduled_at=later)
    PulseFactory(scheduled_at=soon - timedelta(minutes=1), status="completed")
    assert read() == soonest_pending().first() == soon
    assert timezone.is_aware(read())


def test_it_is_compiled_once_and_then_sees_every_change():
    read = FirstValue(soonest_pending)
    read()
    first = PulseFactory(scheduled_at=timezone.now() + timedelta(minutes=5))
    with CaptureQueriesContext(connection) as queries:
        assert read() == first.scheduled_at
        Pulse.objects.filter(pk=first.pk).update(status="cancelled")
        assert read() is None
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 2 and selects[0] == selects[1]


def test_the_worker_loop_reads_answer_as_their_querysets_do():
    now = timezone.now()
    PulseFactory(scheduled_at=now + timedelta(minutes=3))
    assert next_due_at() == Pulse.objects.pending().order_by("scheduled_at").first().scheduled_at
    Routine.objects.update(enabled=False)
    assert firing.next_fire_at() is None
    fires_at = now + timedelta(minutes=7)
    Routine.objects.create(name="every hour", schedule="@hourly", prompt="look", next_fire_at=fires_at)
    assert firing.next_fire_at() == Routine.objects.upcoming().first().next_fire_at == fires_at
