"""`manage.py routine …` as a person runs it: readable tables, clear errors naming the field, nothing
stored on bad input, and --help for each action."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pulses.models import Pulse
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
    for action in ("add", "edit", "list", "show", "run", "pause", "resume", "remove", "next"):
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
    for option in ("--model", "--timeout-seconds", "--max-turns"):
        assert option in add


def test_add_may_send_each_runs_answer_to_telegram():
    run("add", "briefing", "0 8 * * 1-5", "Brief me", "--deliver", "telegram")
    assert Routine.objects.get(name="briefing").deliver == "telegram"
    with pytest.raises(CommandError, match="invalid choice: 'email'"):
        run("add", "other", "@daily", "Brief me", "--deliver", "email")


def test_add_sets_the_agent_options_its_pulses_carry_and_show_lists_them():
    run("add", "research", "@weekly", "Research the week", "--model", "opus", "--timeout-seconds", "7200")
    routine = Routine.objects.get(name="research")
    assert (routine.model, routine.timeout_seconds, routine.max_turns) == ("opus", 7200, None)
    shown = run("show", "research")
    assert "model: opus" in shown and "timeout: 7200 s" in shown and "max turns: the agent's own" in shown


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--model=--dangerously-skip-permissions"],
            "model (--model): 'model' '--dangerously-skip-permissions' is",
        ),
        (["--model=-x"], "is not a model name"),
        (["--timeout-seconds", "5"], "timeout_seconds (--timeout-seconds): 'timeout_seconds' must be"),
        (["--max-turns", "0"], "max_turns (--max-turns)"),
    ],
)
def test_an_agent_option_outside_its_allow_list_is_refused_and_nothing_is_stored(args, words):
    with pytest.raises(CommandError, match="nothing was stored") as refused:
        run("add", "research", "@weekly", "Research", *args)
    assert words in str(refused.value)
    assert mine() == []
    run("add", "research", "@weekly", "Research")
    with pytest.raises(CommandError, match="nothing was stored") as refused:
        run("edit", "research", *args)
    assert words in str(refused.value)
    assert Routine.objects.get(name="research").model == ""


def test_edit_changes_only_the_options_given_and_a_new_schedule_moves_the_next_fire():
    run("add", "briefing", "0 8 * * *", "Brief me", "--tz", "Europe/Berlin", "--tag", "daily")
    before = Routine.objects.get(name="briefing")
    out = run("edit", "briefing", "--schedule", "30 6 * * *", "--model", "sonnet", "--max-turns", "20")
    assert "Changed routine 'briefing' (max_turns, model, schedule): At 06:30 every day" in out
    routine = Routine.objects.get(name="briefing")
    local = routine.next_fire_at.astimezone(routine.zone)
    assert (local.hour, local.minute) == (6, 30)
    assert (routine.model, routine.max_turns, routine.timeout_seconds) == ("sonnet", 20, None)
    assert (routine.prompt, routine.tags, routine.timezone, routine.priority) == (
        "Brief me", ["daily"], "Europe/Berlin", before.priority,
    )  # fmt: skip
    run("edit", "briefing", "--name", "morning", "--prompt", "Brief me at dawn", "--no-tags")
    run("edit", "morning", "--model", "", "--max-turns", "default", "--timeout-seconds", "600")
    routine = Routine.objects.get(pk=routine.pk)
    assert (routine.name, routine.prompt, routine.tags) == ("morning", "Brief me at dawn", [])
    assert (routine.model, routine.max_turns, routine.timeout_seconds) == ("", None, 600)
    with pytest.raises(CommandError, match="nothing to change"):
        run("edit", "morning")
    with pytest.raises(CommandError, match="there is no routine 'nope'"):
        run("edit", "nope", "--model", "opus")


def test_run_makes_a_pulse_of_the_routine_due_now_carrying_its_options():
    run("add", "research", "@weekly", "Research the week", "--model", "opus", "--max-turns", "50")
    next_fire = Routine.objects.get(name="research").next_fire_at
    out = run("run", "research")
    pulse = Pulse.objects.get(routine__name="research")
    assert f"Ran routine 'research': pulse #{pulse.pk} (normal) is due now" in out
    assert (pulse.prompt, pulse.source, pulse.status) == ("Research the week", "routine", "pending")
    assert (pulse.model, pulse.max_turns) == ("opus", 50)
    assert Routine.objects.get(name="research").next_fire_at == next_fire  # its schedule is unchanged
    with pytest.raises(CommandError, match="there is no routine 'nope'"):
        run("run", "nope")
