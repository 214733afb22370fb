"""The worker loop in-process, running the real fake agent CLI against the test database."""

import threading
import time

import pytest
from django.db import connection

from pulses.models import Pulse, PulseAttempt
from pulses.worker.loop import Worker, WorkerOptions
from tests.support.factories import PulseFactory
from tests.support.reeve_processes import agent_starts

pytestmark = pytest.mark.django_db(transaction=True)


def drain(**overrides):
    options = WorkerOptions.from_settings(once=True, lease_seconds=30, **overrides)
    worker = Worker(options)
    worker.run(install_signals=False)
    return worker


def test_once_drains_due_pulses_in_priority_order(agent_log):
    for priority in ("low", "critical", "normal", "high", "deferred"):
        PulseFactory(due=True, priority=priority, prompt=f"{priority} mode=noop")
    PulseFactory(prompt="future mode=noop")
    drain(critical_reserved=0)  # one slot: the critical pulse may not run beside the high one
    order = [Pulse.objects.get(pk=s["pulse_id"]).priority for s in agent_starts(agent_log)]
    assert order == ["critical", "high", "normal", "low", "deferred"]
    assert Pulse.objects.filter(status="completed").count() == 5
    assert Pulse.objects.filter(status="pending").count() == 1


def test_failures_retry_until_failed_and_resume_the_reported_session(agent_log, settings):
    settings.PULSE_RETRY_CAP_MINUTES = 0  # retry at once, so one drain sees every attempt
    pulse = PulseFactory(due=True, prompt="mode=error_result", max_retries=2)
    drain()
    pulse.refresh_from_db()
    assert pulse.status == "failed" and pulse.attempt_count == 3
    assert pulse.error_message == "Tool Bash failed: permission denied"
    runs = agent_starts(agent_log)
    assert len(runs) == 3
    first_session = PulseAttempt.objects.filter(pulse=pulse).first().session_id
    assert first_session and [r["resume"] for r in runs] == [None, first_session, first_session]


def test_a_failing_pulse_for_good_calls_the_failure_hooks(agent_log):
    pulse = PulseFactory(due=True, prompt="mode=exit_nonzero", max_retries=0)
    called = []
    drain(failure_hooks=[called.append])
    assert called == [pulse.pk]


def test_dry_run_runs_nothing_and_changes_nothing(agent_log):
    pulse = PulseFactory(due=True, prompt="mode=noop")
    drain(dry_run=True)
    pulse.refresh_from_db()
    assert pulse.status == "pending" and pulse.attempt_count == 0
    assert agent_starts(agent_log) == []


def test_pulses_run_side_by_side_up_to_the_concurrency_limit(agent_log):
    PulseFactory.create_batch(4, due=True, prompt="mode=sleep:1")
    drain(concurrency=4)
    runs = sorted(agent_starts(agent_log), key=lambda r: r["t"])
    assert len(runs) == 4
    # All four started before the first one (which sleeps a second) could have finished.
    assert runs[-1]["t"] - runs[0]["t"] < 1.0
    assert Pulse.objects.filter(status="completed").count() == 4


def test_pulses_of_one_session_run_one_after_the_other(agent_log):
    PulseFactory.create_batch(3, due=True, prompt="mode=sleep:0.3", session_id="shared")
    drain(concurrency=3)
    attempts = sorted(PulseAttempt.objects.all(), key=lambda a: a.started_at)
    assert len(attempts) == 3
    for before, after in zip(attempts, attempts[1:], strict=False):
        assert after.started_at >= before.finished_at


def test_a_long_run_stores_its_session_while_the_agent_still_runs(agent_log):
    pulse = PulseFactory(due=True, prompt="mode=sleep:3")
    options = WorkerOptions.from_settings(once=True, lease_seconds=30)
    worker = Worker(options)

    def run() -> None:
        try:
            worker.run(install_signals=False)
        finally:  # the thread's own connection: left open, PostgreSQL keeps the test database in use
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = Pulse.objects.filter(pk=pulse.pk).values("status", "session_id").get()
            if row["session_id"]:
                break
            time.sleep(0.05)
        assert row["status"] == "processing" and row["session_id"]
    finally:
        runner.join(timeout=30)
    pulse.refresh_from_db()
    assert pulse.status == "completed"


def _stop_once_started(agent_log, pulse_id: int, *, retry: bool = False) -> tuple[threading.Thread, list]:
    """A thread that asks to stop `pulse_id` once its agent has started, as another process would
    (its own database connection); the list gets the monotonic time it asked."""
    asked: list[float] = []

    def stop() -> None:
        from pulses import queue

        deadline = time.monotonic() + 30
        while not agent_starts(agent_log) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the worker is back in its wait, every slot busy
        try:
            queue.request_stop(pulse_id, by="command", retry=retry)
            asked.append(time.monotonic())
        finally:
            connection.close()

    thread = threading.Thread(target=stop)
    thread.start()
    return thread, asked


def test_a_stop_wakes_a_worker_whose_every_slot_is_busy_and_the_pulse_ends_cancelled(agent_log):
    pulse = PulseFactory(due=True, prompt="mode=hang")
    thread, asked = _stop_once_started(agent_log, pulse.pk)
    # Every ordinary slot busy, no waiting hooks (their scan would wake it each second): the
    # local-only wait, which only a stop may interrupt.
    worker = drain(concurrency=1, critical_reserved=0, waiting_hooks=())
    ended = time.monotonic()
    thread.join()
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count, pulse.error_message) == ("cancelled", 1, "stopped by command")
    [attempt] = PulseAttempt.objects.filter(pulse=pulse)
    assert attempt.error == "stopped by command" and not attempt.succeeded
    # The worker's next pass without a wake-up would be its lease renewal, 10 s on.
    print(f"stop asked -> run ended: {ended - asked[0]:.3f} s")
    assert ended - asked[0] < 5, "the stop waited for something else than its wake-up"
    assert worker.completed == 0


def test_a_stop_with_retry_runs_the_pulse_again_in_its_session_without_spending_an_attempt(agent_log):
    pulse = PulseFactory(due=True, prompt="mode=first_sleep:60")
    thread, _asked = _stop_once_started(agent_log, pulse.pk, retry=True)
    drain(concurrency=1, critical_reserved=0)
    thread.join()
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count) == ("completed", 1)
    attempts = list(PulseAttempt.objects.filter(pulse=pulse).values_list("number", "error", "succeeded"))
    assert attempts == [(1, "stopped by command; returned to pending", False), (1, "", True)]
    first, second = agent_starts(agent_log)
    assert second["resume"] and second["resume"] == pulse.session_id
