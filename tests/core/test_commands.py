"""trigger_pulse and pulse_queue as a person runs them: clear output, clear errors, no tracebacks."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pulses.management.commands.trigger_pulse import Command
from pulses.models import Delivery, Pulse
from tests.support.factories import PulseAttemptFactory, PulseFactory

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_trigger_pulse_schedules_with_every_option():
    out = run(
        "trigger_pulse",
        "Check mail",
        "--at",
        "in 2 hours",
        "--priority",
        "high",
        "--source",
        "cron",
        "--tag",
        "a",
        "--tag",
        "b",
        "--session",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "--sticky",
        "call mom",
    )
    pulse = Pulse.objects.get()
    assert out.startswith(f"Scheduled pulse #{pulse.pk} (high)")
    assert (pulse.source, pulse.tags, pulse.session_id, pulse.sticky_notes) == (
        "cron",
        ["a", "b"],
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        ["call mom"],
    )
    assert timedelta(minutes=119) < pulse.scheduled_at - timezone.now() <= timedelta(hours=2)


def test_trigger_pulse_sets_the_runs_model_timeout_and_turn_limit():
    out = run("trigger_pulse", "Research", "--model", "opus", "--timeout-seconds", "7200", "--max-turns", "9")
    pulse = Pulse.objects.get()
    assert out.startswith(f"Scheduled pulse #{pulse.pk}")
    assert (pulse.model, pulse.timeout_seconds, pulse.max_turns) == ("opus", 7200, 9)
    shown = run("pulse_queue", str(pulse.pk))
    assert "model: opus" in shown and "timeout: 7200 s" in shown and "max turns: 9" in shown
    plain = PulseFactory()
    assert "model:" not in run("pulse_queue", str(plain.pk))


def test_an_unreadable_time_is_a_clear_error():
    with pytest.raises(CommandError, match="cannot read 'whenever' as a time"):
        run("trigger_pulse", "x", "--at", "whenever")
    assert not Pulse.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["x" * 50_001], "'prompt' is 50001 characters; at most 50000 are accepted"),
        (["x", "--max-retries", "101"], "'max_retries' must be a whole number from 0 to 100"),
        (["x", "--max-retries", "-1"], "'max_retries' must be a whole number from 0 to 100"),
        (["x", *[f"--tag=t{n}" for n in range(21)]], "'tags' has 21 items; at most 20 are accepted"),
        (
            ["x", "--model=--dangerously-skip-permissions"],
            "'model' '--dangerously-skip-permissions' is not a",
        ),
        (["x", "--model=-x"], "'model' '-x' is not a model name"),
        (["x", "--timeout-seconds", "9"], "'timeout_seconds' must be a whole number of seconds from 10"),
        (["x", "--max-turns", "1001"], "'max_turns' must be a whole number from 1 to 1000"),
    ],
)
def test_a_pulse_the_api_would_refuse_is_refused_by_the_command_too(arguments, words):
    with pytest.raises(CommandError, match=re.escape(words)):
        run("trigger_pulse", *arguments)
    assert not Pulse.objects.exists()


def test_a_missing_prompt_is_a_clear_error():
    with pytest.raises(CommandError, match="PROMPT is required"):
        run("trigger_pulse")


def test_heartbeat_uses_the_time_of_day_prompt_once_an_hour():
    first = run("trigger_pulse", "--heartbeat")
    second = run("trigger_pulse", "--heartbeat")
    pulse = Pulse.objects.get()
    assert pulse.source == "heartbeat" and "heartbeat" in pulse.tags
    assert pulse.prompt.startswith("Hourly heartbeat (")
    assert first.startswith("Scheduled") and second.startswith("Already scheduled")


def test_pulse_queue_prints_a_table_and_counts():
    PulseFactory(prompt="soon", priority="critical")
    PulseFactory(failed=True, prompt="broken")
    table = run("pulse_queue")
    assert "pending=1" in table and "failed=1" in table
    assert table.splitlines()[1] == "spend today=$0.00 month=$0.00 (no cap)"
    assert table.splitlines()[2] == "worker: none running"
    header, row = table.splitlines()[3:5]
    assert header.split() == ["ID", "STATUS", "PRIORITY", "SCHEDULED", "TRIES", "SOURCE", "PROMPT"]
    assert "critical" in row and "soon" in row
    assert "broken" in run("pulse_queue", "failed")
    assert "No completed pulses." in run("pulse_queue", "completed")


def test_pulse_queue_shows_one_pulse_and_rejects_unknown_views():
    pulse = PulseFactory(prompt="look at me")
    assert "prompt: look at me" in run("pulse_queue", str(pulse.pk))
    with pytest.raises(CommandError, match="no pulse with id 999999"):
        run("pulse_queue", "999999")
    with pytest.raises(CommandError, match="unknown view 'bogus'"):
        run("pulse_queue", "bogus")


def test_trigger_pulse_quiet_prints_the_id_alone_and_its_help_says_so():
    out = run("trigger_pulse", "-q", "hello")
    assert out == f"{Pulse.objects.get().pk}\n"
    assert run("trigger_pulse", "--quiet", "again").strip() == str(Pulse.objects.latest("id").pk)
    helped = Command().create_parser("manage.py", "trigger_pulse").format_help()
    assert "-q, --quiet" in helped and "id alone" in helped
    assert "--wait" in helped and "--timeout S" in helped


def test_trigger_pulse_defaults_to_the_priority_the_api_defaults_to():
    from pulses.api.serializers import TriggerSerializer

    run("trigger_pulse", "hello")
    assert Pulse.objects.get().priority == TriggerSerializer().fields["priority"].default == "normal"


def test_trigger_pulse_wait_gives_up_after_its_timeout_with_exit_2_and_says_the_pulse_stays_queued():
    gave_up = r"has not finished after 0 s \(it is pending\); it stays queued"
    with pytest.raises(CommandError, match=gave_up) as e:
        run("trigger_pulse", "--wait", "--timeout", "0", "hello")
    assert e.value.returncode == 2
    assert Pulse.objects.get().status == "pending"
    with pytest.raises(CommandError, match="--timeout takes 0 or more seconds, and goes with --wait"):
        run("trigger_pulse", "--timeout", "5", "no wait")
    assert Pulse.objects.count() == 1  # refused before anything was scheduled


def test_pulse_queue_last_shows_the_pulse_scheduled_most_recently():
    with pytest.raises(CommandError, match="no pulse yet"):
        run("pulse_queue", "last")
    PulseFactory(prompt="older")
    newest = PulseFactory(prompt="the newest", scheduled_at=timezone.now() - timedelta(days=1))
    out = run("pulse_queue", "last")
    assert f"id: {newest.pk}" in out and "prompt: the newest" in out


def test_a_command_on_an_unmigrated_database_says_to_migrate_instead_of_a_traceback(tmp_path):
    from tests.support.reeve_processes import ReeveHome

    home = ReeveHome(tmp_path)  # not migrated
    try:
        proc = home.manage("trigger_pulse", "hello", check=False)
    finally:
        home.stop_all()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "the database has no Reeve tables yet" in proc.stderr and "./reeve migrate" in proc.stderr


def test_pulse_queue_id_prints_what_the_agent_answered_and_where_the_reply_went():
    pulse = PulseFactory(completed=True, prompt="weather?")
    PulseAttemptFactory(pulse=pulse, number=1, succeeded=False, result_text="", error="overloaded")
    PulseAttemptFactory(pulse=pulse, number=2, result_text="Sunny all day.\nTake a hat.")
    Delivery.objects.create(pulse=pulse, state="sent", parts_sent=1)

    out = run("pulse_queue", str(pulse.pk))

    assert "answer: Sunny all day.\nTake a hat." in out
    assert "telegram: sent, 1 message(s)" in out
    assert "attempt 1" in out and ": overloaded" in out
    assert "attempt 2" in out and ": ok: Sunny all day." in out


def test_run_pulse_worker_refuses_a_priority_it_cannot_preempt(settings):
    settings.PULSE_PREEMPT = ["low", "critical"]
    with pytest.raises(CommandError, match="PULSE_PREEMPT: critical cannot be preempted"):
        run("run_pulse_worker", "--once", "--dry-run")


def test_run_pulse_worker_refuses_a_negative_reservation(settings):
    settings.PULSE_CRITICAL_RESERVED = -1
    with pytest.raises(CommandError, match="PULSE_CRITICAL_RESERVED must be 0"):
        run("run_pulse_worker", "--once", "--dry-run")


def test_stop_pulse_asks_to_stop_a_running_pulse_and_refuses_others_in_one_line():
    running = PulseFactory(processing=True)
    assert "Stopping pulse" in run("stop_pulse", str(running.pk))
    running.refresh_from_db()
    assert (running.stop_requested_by, running.stop_retry) == ("command", False)
    assert "stopping: asked by command; then cancelled" in run("pulse_queue", str(running.pk))
    assert "returns to pending" in run("stop_pulse", str(running.pk), "--retry")
    assert Pulse.objects.get(pk=running.pk).stop_retry
    pending = PulseFactory()
    with pytest.raises(
        CommandError, match=f"pulse {pending.pk} is pending; only a running pulse can be stopped"
    ):
        run("stop_pulse", str(pending.pk))
    with pytest.raises(CommandError, match="no pulse with id 999999"):
        run("stop_pulse", "999999")
