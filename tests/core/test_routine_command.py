"""`manage.py routine …` as a person runs it: readable tables, clear errors naming the field, nothing
stored on bad input, and --help for each action."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pulses.routines.models import Routine, RoutineSource
from tests.support.reeve_processes import ROOT

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("routine", *args, stdout=out)
    return out.getvalue()


def mine() -> list[str]:
    """Routines other than the hourly prompt the migration makes."""
    return list(Routine.objects.exclude(kind="hourly_prompt").values_list("name", flat=True))


def test_add_stores_a_routine_in_its_zone_and_says_when_it_fires_next():
    out = run(
        "add", "briefing", "0 8 * * 1-5", "Brief me on today", "--tz", "Europe/Berlin", "--tag", "daily"
    )
    routine = Routine.objects.get(name="briefing")
    assert (routine.schedule, routine.timezone, routine.prompt, routine.tags) == (
        "0 8 * * 1-5",
        "Europe/Berlin",
        "Brief me on today",
        ["daily"],
    )
    assert routine.source == RoutineSource.OWNER and routine.enabled
    local = routine.next_fire_at.astimezone(routine.zone)
    assert (local.hour, local.minute) == (8, 0) and local.isoweekday() <= 5
    assert "Added routine 'briefing': At 08:00 on Monday through Friday (Europe/Berlin)" in out
    assert local.strftime("%Y-%m-%d 08:00 %Z") in out


def test_add_takes_an_interval_a_window_a_session_policy_and_a_check():
    run(
        "add", "build", "every 30 minutes", "Check the build", "--window", "08:00-22:00",
        "--session", "continue", "--check", "test -e /tmp/flag", "--pause-after", "3",
    )  # fmt: skip
    routine = Routine.objects.get(name="build")
    assert (f"{routine.active_from:%H:%M}", f"{routine.active_until:%H:%M}") == ("08:00", "22:00")
    assert (routine.session_policy, routine.check_command, routine.pause_after_failures) == (
        "continue",
        "test -e /tmp/flag",
        3,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("61 * * * *", "x"), "schedule: '61 * * * *' is not a valid cron expression"),
        (("0 8 * * *", "x", "--tz", "Mars/Olympus"), "timezone (--tz): unknown time zone 'Mars/Olympus'"),
        (("every 30 seconds", "x"), "schedule: 'every 30 seconds' is under one minute"),
        (("0 8 * * *", "   "), "prompt: the prompt is empty"),
        (
            ("0 8 * * *", "x", "--window", "08:00-08:00"),
            "active_until (--window): the active window 08:00-08:00 is empty",
        ),
        (("0 8 * * *", "x", "--window", "8 to 10"), "active_window (--window): '8 to 10' is not a window"),
        (("0 8 * * *", "x", "--session", "nope"), "session_id (--session)"),
    ],
)
def test_bad_input_is_an_error_naming_the_field_and_nothing_is_stored(args, message):
    before = mine()
    with pytest.raises(CommandError) as caught:
        run("add", "bad", *args)
    assert message in str(caught.value) and "nothing was stored" in str(caught.value)
    assert mine() == before


def test_a_second_routine_of_the_same_name_is_refused():
    run("add", "twice", "@daily", "x")
    with pytest.raises(CommandError, match="name: a routine named .twice. exists already"):
        run("add", "twice", "@hourly", "y")
    assert Routine.objects.get(name="twice").schedule == "@daily"


def test_list_is_a_table_with_the_schedule_in_words_zone_next_fire_last_result_and_state():
    run("add", "briefing", "0 8 * * 1-5", "Brief me", "--tz", "Europe/Berlin")
    run("add", "build", "every 2 hours", "Check the build")
    run("pause", "build")
    lines = run("list").splitlines()
    assert lines[0].split("  ")[0] == "NAME"
    assert [c.strip() for c in lines[0].split("  ") if c.strip()] == [
        "NAME", "SCHEDULE", "ZONE", "NEXT FIRE", "LAST RESULT", "ENABLED",
    ]  # fmt: skip
    briefing = next(line for line in lines if line.startswith("briefing"))
    build = next(line for line in lines if line.startswith("build"))
    assert "At 08:00 on Monday through Friday" in briefing and "Europe/Berlin" in briefing
    assert "never run" in briefing and briefing.rstrip().endswith("yes")
    assert "every 2 hours" in build and "paused (paused by hand)" in build
    # The columns line up: each starts at the same offset on every line.
    assert lines[0].index("ZONE") == briefing.index("Europe/Berlin")


def test_show_prints_the_fields_and_the_next_five_fires():
    run("add", "weekly", "0 18 * * 0", "Plan my week", "--tz", "America/New_York")
    out = run("show", "weekly")
    assert "schedule: 0 18 * * 0  (At 18:00 on Sunday)" in out
    assert "zone: America/New_York" in out and "prompt: Plan my week" in out
    fires = [line for line in out.splitlines() if line.startswith("  Sun ")]
    assert len(fires) == 5 and all("18:00 E" in line for line in fires)


def test_pause_resume_and_remove():
    run("add", "nightly", "@daily", "Tidy up")
    assert "Paused routine 'nightly'" in run("pause", "nightly")
    routine = Routine.objects.get(name="nightly")
    assert not routine.enabled and routine.next_fire_at is None
    assert "Resumed routine 'nightly'; next fire" in run("resume", "nightly")
    assert Routine.objects.get(name="nightly").next_fire_at is not None
    assert "Removed routine 'nightly'" in run("remove", "nightly")
    assert "nightly" not in mine()
    with pytest.raises(CommandError, match="there is no routine 'nightly'; `manage.py routine list`"):
        run("pause", "nightly")


def test_next_shows_fire_times_of_an_expression_in_a_zone_or_of_a_routine():
    out = run("next", "30 2 * * *", "--tz", "Europe/Berlin", "-n", "3")
    assert out.splitlines()[0] == "Next 3 fires of '30 2 * * *' (At 02:30 every day) in Europe/Berlin:"
    assert len(out.splitlines()) == 4 and all("02:30 CE" in line for line in out.splitlines()[1:])
    run("add", "half", "every 30 minutes", "x")
    assert "Next 5 fires of 'every 30 minutes'" in run("next", "half")
    with pytest.raises(CommandError, match="schedule: '61 \\* \\* \\* \\*' is not a valid cron expression"):
        run("next", "61 * * * *")


def test_help_describes_every_action_and_each_action_has_its_own():
    top = subprocess.run(
        [sys.executable, "manage.py", "routine", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for action in ("add", "list", "show", "pause", "resume", "remove", "next"):
        assert f"    {action} " in top
    assert 'routine add briefing "0 8 * * 1-5"' in " ".join(top.split())
    add = subprocess.run(
        [sys.executable, "manage.py", "routine", "add", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--tz" in add and "--window" in add and "every 30 minutes" in add


def test_add_may_send_each_runs_answer_to_telegram():
    run("add", "briefing", "0 8 * * 1-5", "Brief me", "--deliver", "telegram")
    assert Routine.objects.get(name="briefing").deliver == "telegram"
    with pytest.raises(CommandError, match="invalid choice: 'email'"):
        run("add", "other", "@daily", "Brief me", "--deliver", "email")
