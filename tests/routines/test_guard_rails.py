"""Guard rails on what the agent schedules itself: a minimum interval and a cap for its routines,
an hourly cap on its one-off pulses; the owner's own are not limited."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from pulses.models import Pulse
from pulses.routines import changes
from pulses.routines.guard_rails import LimitReached
from pulses.routines.models import Routine, RoutineInvalid
from pulses.tools import agent_tools
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db


def agent_routine(name: str, schedule: str = "0 * * * *", **fields) -> Routine:
    return changes.create(source="agent", name=name, prompt="p", schedule=schedule, timezone="UTC", **fields)


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "every 10 minutes", "0-59/5 9 * * *", "0,10 8 * * 1"])
def test_an_agent_routine_firing_more_often_than_the_minimum_is_refused_naming_the_setting(schedule):
    with pytest.raises(LimitReached) as refused:
        agent_routine("fast", schedule)

    assert "at most every 15 minutes" in str(refused.value)
    assert "AGENT_ROUTINE_MIN_INTERVAL_MINUTES" in str(refused.value)
    assert isinstance(refused.value, RoutineInvalid) and refused.value.field == "limit"
    assert not Routine.objects.filter(name="fast").exists()


@pytest.mark.parametrize("schedule", ["*/15 * * * *", "every 15 minutes", "@daily", "30 8 * * 1-5"])
def test_an_agent_routine_at_the_minimum_interval_or_slower_is_accepted(schedule):
    assert agent_routine("fine", schedule).source == "agent"


def test_an_agent_routine_may_shorten_its_runs_but_not_lengthen_them_past_the_owners_limit(settings):
    settings.PULSE_TIMEOUT_SECONDS = 3600
    routine = agent_routine("quick", timeout_seconds=300, model="haiku", max_turns=5)
    assert (routine.model, routine.timeout_seconds, routine.max_turns) == ("haiku", 300, 5)
    with pytest.raises(RoutineInvalid) as refused:
        agent_routine("long", timeout_seconds=3601)
    assert refused.value.field == "timeout_seconds"
    assert "PULSE_TIMEOUT_SECONDS" in refused.value.message
    assert not Routine.objects.filter(name="long").exists()
    owners = changes.create(name="owners", prompt="p", schedule="@weekly", timeout_seconds=7200)
    assert owners.timeout_seconds == 7200  # the owner's own are not limited


def test_the_owners_own_routines_are_not_limited(settings):
    settings.AGENT_MAX_ACTIVE_ROUTINES = 1
    for n in range(3):
        changes.create(name=f"owner-{n}", prompt="p", schedule="every 1 minutes")
    assert agent_routine("agent-1").enabled  # the owner's three do not count against the agent's cap


def test_the_agent_may_keep_only_so_many_routines_active(settings):
    settings.AGENT_MAX_ACTIVE_ROUTINES = 2
    first = agent_routine("one")
    agent_routine("two")

    with pytest.raises(
        LimitReached, match="at most 2 of your routines may be active.*AGENT_MAX_ACTIVE_ROUTINES"
    ):
        agent_routine("three")

    changes.pause(first)  # a paused routine does not count
    assert agent_routine("three").enabled
    assert Routine.objects.filter(source="agent").count() == 3


def test_the_agent_may_create_only_so_many_pulses_an_hour(settings):
    settings.AGENT_PULSES_PER_HOUR = 3
    old = PulseFactory(source="agent")
    Pulse.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    PulseFactory(source="manual")  # the owner's pulses do not count
    for n in range(3):
        agent_tools.schedule_pulse(prompt=f"follow up {n}", when="in 1 hour")

    with pytest.raises(agent_tools.AgentToolError, match="at most 3 pulses an hour.*AGENT_PULSES_PER_HOUR"):
        agent_tools.schedule_pulse(prompt="one too many", when="in 1 hour")

    assert Pulse.objects.filter(source="agent").count() == 4


def _at_once(count: int, call) -> list[BaseException | None]:
    """`call(n)` in `count` threads released together, each with its own database connection;
    what each raised (None when it returned)."""
    start = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def run(n: int) -> None:
        try:
            start.wait()
            call(n)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcomes[n] = exc
        finally:  # left open, PostgreSQL keeps the test database in use
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_the_hourly_cap_holds_when_the_agent_schedules_many_pulses_at_once(settings):
    """200 parallel schedules on PostgreSQL made 75 pulses against a cap of 60: each counted before
    any had inserted. The count and the insert are one step now, on both databases."""
    settings.AGENT_PULSES_PER_HOUR = 20
    outcomes = _at_once(60, lambda n: agent_tools.schedule_pulse(prompt=f"parallel {n}", when="in 1 hour"))

    refused = [o for o in outcomes if o is not None]
    assert all(isinstance(o, agent_tools.AgentToolError) for o in refused), refused[:3]
    assert Pulse.objects.filter(source="agent").count() == 20
    assert len(refused) == 40


@pytest.mark.django_db(transaction=True)
def test_the_routine_cap_holds_when_the_agent_creates_many_routines_at_once(settings):
    """21 routines of a cap of 20 on PostgreSQL: the count and the insert are one step now."""
    settings.AGENT_MAX_ACTIVE_ROUTINES = 10
    outcomes = _at_once(40, lambda n: agent_routine(f"parallel-{n}"))

    refused = [o for o in outcomes if o is not None]
    assert all(isinstance(o, LimitReached) for o in refused), refused[:3]
    assert Routine.objects.active_agent_routines().count() == 10
    assert len(refused) == 30
