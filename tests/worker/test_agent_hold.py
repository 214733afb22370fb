"""The agent unable to run, through the worker's real loop and the fake agent CLI printing what the
real Claude Code and Hapi print: the pulse goes back to pending with no attempt spent, the queue
holds (one row in the database), the person is told once on the fake Bot API, doctor and /api/status
name it, and once it is fixed the held pulses run without a restart."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pulses import queue
from pulses.agent_hold import AgentHold
from pulses.models import Pulse, PulseAttempt
from pulses.ops import doctor
from pulses.routines import changes
from pulses.routines.models import Routine
from pulses.worker.loop import Worker, WorkerOptions
from tests.support.factories import PulseFactory
from tests.support.reeve_processes import agent_starts

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "hold-test-token-0123456789abcdef0123456789"


def drain():
    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)


@pytest.fixture
def mode_file(agent_log, fake_agent, monkeypatch, settings):
    """The fake agent's mode for prompts that name none; a test changes it to "fix" the agent."""
    path = fake_agent / "mode"
    monkeypatch.setenv("FAKE_AGENT_MODE_FILE", str(path))
    settings.AGENT_HOLD_RECHECK_SECONDS = 0.5
    settings.AGENT_HOLD_RECHECK_CAP_SECONDS = 1
    return path


def attempts_spent():
    return sorted(Pulse.objects.values_list("status", "attempt_count"))


def status(client, settings):
    settings.PULSE_API_TOKEN = TOKEN
    return client.get("/api/status", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()


def agent_ready_check():
    return next(
        check for check in doctor.run_checks(api=False, telegram=False) if check.name == "agent ready"
    )


@pytest.mark.parametrize(
    ("mode", "fix"),
    [
        ("not_logged_in", "claude` on the server, type /login"),
        ("no_hapi_credential", "hapi auth login`"),
        ("retry_401", "ANTHROPIC_API_KEY"),
    ],
)
def test_an_agent_that_cannot_run_holds_every_pulse_with_no_attempt_spent_and_resumes_once_fixed(
    mode, fix, mode_file, telegram_settings, client, settings
):
    mode_file.write_text(mode)
    for n in range(3):
        PulseFactory(due=True, prompt=f"pulse {n}", max_retries=0)

    drain()  # the first run finds the agent unable to run: nothing else is claimed

    assert attempts_spent() == [("pending", 0)] * 3
    assert len(agent_starts(mode_file.parent / "agent.log")) == 1
    attempt = PulseAttempt.objects.get()
    assert "returned to pending, no attempt spent" in attempt.error and not attempt.succeeded
    [notice] = telegram_settings.sent_texts
    assert notice.startswith("⏸️ Reeve is holding your pulses:") and fix in notice
    assert "No pulse spends a retry meanwhile" in notice

    time.sleep(1.1)  # past the re-check: one pulse is the probe, held again, the hold extends
    drain()
    assert attempts_spent() == [("pending", 0)] * 3
    assert AgentHold.objects.get().rechecks == 2
    assert len(telegram_settings.sent_texts) == 1  # told once

    check = agent_ready_check()  # doctor's probe runs the agent: still broken, it fails
    assert check.failed and fix in check.message
    body = status(client, settings)
    assert body["agent_problem"].startswith(AgentHold.objects.get().problem) and fix in body["agent_problem"]
    assert body["status"].startswith("no pulse runs:") and body["agent_resumes_at"] is None

    mode_file.write_text("success")  # the person ran the command
    time.sleep(1.1)
    drain()  # the re-check's probe succeeds: the hold ends and the rest run, no restart

    assert attempts_spent() == [("completed", 1)] * 3
    assert not queue.agent_hold_state().held
    texts = telegram_settings.sent_texts
    assert len(texts) == 2 and texts[1].startswith("▶️ Reeve runs your pulses again")
    assert status(client, settings)["agent_problem"] == ""
    assert agent_ready_check().level == doctor.OK


def test_agent_probe_that_works_ends_the_hold_at_once(mode_file, telegram_settings, settings, capsys):
    settings.AGENT_HOLD_RECHECK_SECONDS = 3600  # only the probe can end it here
    mode_file.write_text("not_logged_in")
    PulseFactory(due=True, prompt="held")
    drain()
    assert queue.agent_hold_state().held

    with pytest.raises(CommandError):
        call_command("agent_probe", "Say OK")
    out = capsys.readouterr().out
    # Reeve's hint comes after the agent's own words.
    assert out.index("Not logged in") < out.index("reeve:    Claude Code is not logged in")

    mode_file.write_text("success")
    call_command("agent_probe", "Say OK")
    assert "the held queue resumes now" in capsys.readouterr().out
    assert not queue.agent_hold_state().held
    drain()
    assert attempts_spent() == [("completed", 1)]
    assert [text[:2] for text in telegram_settings.sent_texts] == ["⏸️", "▶️"]


def test_doctor_that_sees_the_agent_run_ends_the_hold(mode_file, telegram_settings):
    mode_file.write_text("no_hapi_credential")
    PulseFactory(due=True, prompt="held")
    drain()
    assert agent_ready_check().failed

    mode_file.write_text("success")
    check = agent_ready_check()

    assert check.level == doctor.OK and "runs again" in check.message
    assert not queue.agent_hold_state().held
    assert len(telegram_settings.sent_texts) == 2


def test_a_usage_limit_holds_every_pulse_due_until_its_reset_then_all_run_and_the_routine_is_not_paused(
    agent_log, telegram_settings, settings, client
):
    settings.AGENT_HOLD_RECHECK_SECONDS = 3600  # the reset time, not the backoff, decides here
    resets = int(time.time()) + 8  # whole seconds, as resetsAt is
    prompt = f"work mode=usage_limit:{resets}"
    routine = changes.create(
        name="hourly", prompt=prompt, schedule="@hourly", timezone="UTC", pause_after_failures=1
    )
    fired = changes.run_now(routine)
    PulseFactory(due=True, prompt=prompt)

    drain()

    hold = AgentHold.objects.get()
    assert hold.held and hold.reason == "usage_limit"
    assert hold.resets_at.timestamp() == resets
    assert attempts_spent() == [("pending", 0)] * 2
    later = PulseFactory(scheduled_at=timezone.now() + timedelta(seconds=1), prompt=prompt)
    time.sleep(1.2)
    drain()  # due meanwhile: held too, nothing runs
    assert attempts_spent() == [("pending", 0)] * 3 and len(agent_starts(agent_log)) == 1
    [notice] = telegram_settings.sent_texts
    assert "usage limit is reached (five_hour)" in notice and "resumes by itself at" in notice
    assert status(client, settings)["agent_resumes_at"].startswith(f"{hold.resets_at:%Y-%m-%dT%H:%M}")
    routine.refresh_from_db()
    assert (routine.enabled, routine.failure_streak) == (True, 0)  # a held fire is no failure

    time.sleep(max(resets + 0.2 - time.time(), 0))
    drain()

    assert attempts_spent() == [("completed", 1)] * 3
    assert Pulse.objects.get(pk=later.pk).status == "completed"
    routine = Routine.objects.get(pk=routine.pk)
    assert (routine.enabled, routine.failure_streak, routine.last_result) == (True, 0, "completed")
    assert Pulse.objects.get(pk=fired.pk).status == "completed"
    assert len(telegram_settings.sent_texts) == 2


def test_a_usage_warning_is_shown_but_holds_nothing(agent_log, client, settings):
    PulseFactory(due=True, prompt="mode=usage_warning")
    PulseFactory(due=True, prompt="mode=noop")
    drain()
    assert attempts_spent() == [("completed", 1)] * 2
    body = status(client, settings)
    assert body["agent_problem"] == "" and "close to its limit (five_hour)" in body["agent_warning"]
