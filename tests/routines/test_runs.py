"""A routine's runs through the real worker and the fake agent: wake checks, the failure streak that
pauses a routine with one Telegram alert, and the worker firing a due routine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pulses.models import Delivery, Pulse, PulseAttempt
from pulses.routines import changes
from pulses.routines.models import Routine
from pulses.worker.loop import Worker, WorkerOptions
from tests.support.factories import PulseFactory
from tests.support.reeve_processes import agent_starts

pytestmark = pytest.mark.django_db(transaction=True)


def drain():
    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)


def routine(**fields):
    values = {"name": "r", "prompt": "Check the build mode=noop", "schedule": "@daily", "timezone": "UTC"}
    return changes.create(**(values | fields))


def test_a_check_exiting_0_wakes_the_agent_with_its_output_appended(agent_log):
    pulse = changes.run_now(routine(check_command="echo 'build 42 is red'; exit 0"))

    drain()

    pulse.refresh_from_db()
    assert (pulse.status, pulse.skipped) == ("completed", False)
    [start] = agent_starts(agent_log)
    assert start["prompt"].startswith("Check the build mode=noop\n\nWake check output:\nbuild 42 is red")


def test_a_check_exiting_1_skips_the_run_and_no_agent_starts(agent_log):
    made = routine(check_command="echo 'all green'; exit 1")
    pulse = changes.run_now(made)

    drain()

    pulse.refresh_from_db()
    assert (pulse.status, pulse.skipped) == ("completed", True)
    assert agent_starts(agent_log) == []
    attempt = PulseAttempt.objects.get(pulse=pulse)
    assert (attempt.succeeded, attempt.exit_code) == (True, 1)
    assert "nothing to do" in attempt.result_text and "all green" in attempt.result_text
    made.refresh_from_db()
    assert (made.last_result, made.check_skip_count, made.failure_streak) == ("skipped", 1, 0)


def test_a_check_exiting_otherwise_is_a_failed_attempt_with_its_output_and_no_agent(agent_log):
    pulse = changes.run_now(routine(check_command="echo 'cannot reach CI' >&2; exit 3", max_retries=0))

    drain()

    pulse.refresh_from_db()
    assert pulse.status == "failed"
    assert pulse.error_message == "wake check exited 3: cannot reach CI"
    assert agent_starts(agent_log) == []


def test_a_check_that_outlives_its_timeout_fails_the_attempt(agent_log, settings):
    settings.PULSE_CHECK_TIMEOUT_SECONDS = 0.5
    pulse = PulseFactory(due=True, prompt="mode=noop", check_command="sleep 30", max_retries=0)

    drain()

    pulse.refresh_from_db()
    assert pulse.status == "failed" and "timed out after 0.5 s" in pulse.error_message
    assert agent_starts(agent_log) == []


def test_a_one_off_pulse_may_carry_a_check_too(agent_log, fake_agent):
    (fake_agent / "desk" / "inbox.txt").write_text("2 new mails\n")
    pulse = PulseFactory(due=True, prompt="Read mail mode=noop", check_command="cat inbox.txt")

    drain()

    assert Pulse.objects.get(pk=pulse.pk).status == "completed"
    assert agent_starts(agent_log)[0]["prompt"].endswith("Wake check output:\n2 new mails")


def test_a_routine_failing_n_runs_in_a_row_pauses_itself_with_one_telegram_alert(
    agent_log, telegram_settings
):
    failing = routine(
        name="nightly-report", prompt="mode=exit_nonzero", max_retries=0, pause_after_failures=3
    )

    for _ in range(4):
        changes.run_now(failing)
        drain()

    failing.refresh_from_db()
    assert not failing.enabled
    assert failing.paused_reason == "paused after 3 failed runs in a row"
    assert failing.next_fire_at is None
    # Each failed pulse has its own alert too; the routine's pause is alerted once.
    [alert] = [text for text in telegram_settings.sent_texts if text.startswith("⏸️ Routine")]
    assert "Routine 'nightly-report' paused itself: paused after 3 failed runs in a row" in alert
    assert "routine resume nightly-report" in alert

    changes.resume(failing)
    assert (failing.enabled, failing.failure_streak) == (True, 0)


def test_a_success_resets_the_failure_streak(agent_log):
    made = routine(prompt="mode=exit_nonzero", max_retries=0, pause_after_failures=3)
    for _ in range(2):
        changes.run_now(made)
        drain()
    assert Routine.objects.get(pk=made.pk).failure_streak == 2

    changes.update(made, {"prompt": "mode=noop"})
    changes.run_now(made)
    drain()

    made.refresh_from_db()
    assert (made.failure_streak, made.last_result, made.enabled) == (0, "completed", True)


def test_the_worker_fires_a_due_routine_and_runs_its_pulse_at_once(agent_log):
    made = routine(prompt="Morning brief mode=noop", schedule="every 1 minutes")
    Routine.objects.filter(pk=made.pk).update(next_fire_at=timezone.now() - timedelta(seconds=5))

    drain()

    pulse = Pulse.objects.get(routine=made)
    assert (pulse.status, pulse.source) == ("completed", "routine")
    assert [int(s["pulse_id"]) for s in agent_starts(agent_log)] == [pulse.pk]
    made.refresh_from_db()
    assert made.next_fire_at > timezone.now() - timedelta(seconds=1)
    assert (made.last_pulse_id, made.fire_count) == (pulse.pk, 1)


def test_a_continue_routine_resumes_its_previous_runs_session(agent_log):
    made = routine(prompt="Follow up", session_policy="continue")
    changes.run_now(made)
    drain()
    first_session = Pulse.objects.get(routine=made).session_id
    assert first_session

    changes.run_now(Routine.objects.get(pk=made.pk))
    drain()

    assert [s["resume"] for s in agent_starts(agent_log)] == [None, first_session]


def test_a_routine_fires_on_time_while_another_run_holds_a_slot(agent_log):
    # A run that writes nothing for 3 s (a slow wake check), so no commit wakes the worker meanwhile.
    long_run = PulseFactory(due=True, prompt="mode=noop", check_command="sleep 3; exit 1")
    made = routine(prompt="On time mode=noop", schedule="every 1 minutes")
    Routine.objects.filter(pk=made.pk).update(next_fire_at=timezone.now() + timedelta(seconds=1))

    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30, concurrency=2)).run(install_signals=False)

    long_run.refresh_from_db()
    fired = Pulse.objects.get(routine=made)
    # Not held back until the long run ended: the wait was bounded by the fire time.
    assert fired.executed_at < long_run.finished_at


def test_a_pulse_triggered_through_the_api_with_a_check_is_skipped_visibly_in_the_api(agent_log):
    from rest_framework.test import APIClient

    from pulses.api import tokens

    _, token = tokens.create("ops", scope="wake-checks")  # a wake check is this scope's alone
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + token)
    created = client.post(
        "/api/pulse/trigger", {"prompt": "mode=noop", "check_command": "exit 1"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["check_command"] == "exit 1"

    drain()

    shown = client.get(f"/api/pulses/{created.json()['id']}").json()
    assert (shown["status"], shown["skipped"], shown["routine"]) == ("completed", True, None)
    assert agent_starts(agent_log) == []


def test_a_routine_fires_on_time_while_every_slot_is_busy(agent_log):
    long_run = PulseFactory(due=True, prompt="mode=noop", check_command="sleep 3; exit 1")
    made = routine(prompt="Queued mode=noop", schedule="every 1 minutes")
    Routine.objects.filter(pk=made.pk).update(next_fire_at=timezone.now() + timedelta(seconds=1))

    # No busy notices: their scan would wake the loop every second anyway.
    options = WorkerOptions.from_settings(once=True, lease_seconds=30, concurrency=1, waiting_hooks=[])
    Worker(options).run(install_signals=False)

    long_run.refresh_from_db()
    fired = Pulse.objects.get(routine=made)
    # Made at its fire time while the only slot was busy; it ran once the slot was free.
    assert fired.created_at < long_run.finished_at <= fired.executed_at
    assert fired.status == "completed"


def test_a_routines_run_lost_with_its_worker_counts_as_failed_and_can_pause_it(agent_log):
    made = routine(name="crashy", pause_after_failures=1, max_retries=0)
    pulse = changes.run_now(made)
    gone = timezone.now() - timedelta(minutes=5)
    Pulse.objects.filter(pk=pulse.pk).update(
        status="processing", attempt_count=1, lease_owner="host:1", lease_expires_at=gone, executed_at=gone
    )
    paused = []

    Worker(WorkerOptions.from_settings(once=True, pause_hooks=[paused.append])).run(install_signals=False)

    made.refresh_from_db()
    assert Pulse.objects.get(pk=pulse.pk).status == "failed"
    assert (made.enabled, made.failure_streak, made.last_result) == (False, 1, "failed")
    assert paused == [made.pk]


def test_a_routine_that_delivers_sends_each_runs_answer_to_the_configured_chat(agent_log):
    from telegram_bridge import outbox

    made = routine(prompt="Morning brief mode=noop", schedule="every 1 minutes", deliver="telegram")
    plain = routine(name="quiet", prompt="Check mode=noop", schedule="every 1 minutes")
    Routine.objects.filter(pk__in=[made.pk, plain.pk]).update(
        next_fire_at=timezone.now() - timedelta(seconds=5)
    )

    drain()

    pulse = Pulse.objects.get(routine=made)
    assert pulse.status == "completed"
    assert not Delivery.objects.filter(pulse__routine=plain).exists()
    [outgoing] = outbox.take_due(configured_chats=(42,))
    assert (outgoing.pulse_id, outgoing.chat_ids, outgoing.reply_to) == (pulse.pk, (42,), None)
    assert outgoing.parts and outgoing.parts[0]  # the agent's answer, as for any delivered pulse
