"""The watchdog (issue 31): one definition of healthy, with real workers, a real listener and the
fake Telegram Bot API. On both databases (the processes use the home's SQLite or PostgreSQL)."""

import signal
import time

import pytest

from tests.support.reeve_processes import noop_agent_env

pytestmark = pytest.mark.slow

OVERDUE = (
    "from datetime import timedelta; from django.utils import timezone; from pulses import queue; "
    "p = queue.schedule(prompt='overdue one', scheduled_at=timezone.now() - timedelta(minutes=20)); "
    "print(p.pulse.pk)"
)


def _overdue_pulse(home) -> int:
    return int(home.manage("shell", "-c", OVERDUE).stdout.split()[-1])


def _health(home, *args):
    return home.manage("health", *args, check=False)


def _reported(home, table: str) -> bool:
    """A worker (pulse_workers) or listener (pulse_listeners) has reported and not stopped."""
    return home.query(f"SELECT COUNT(*) FROM {table} WHERE stopped_at IS NULL")[0][0] > 0  # noqa: S608


def _status(home, pulse_id):
    return home.query("SELECT status FROM pulses WHERE id = ?", (pulse_id,))[0][0]


def test_a_stopped_worker_with_a_pulse_overdue_fails_the_check_with_one_alert_then_one_recovery(
    reeve_home, fake_telegram, tmp_path
):
    reeve_home.extra_env.update(fake_telegram.env(42), PULSE_HEARTBEAT_SECONDS="1")
    reeve_home.extra_env.update(noop_agent_env(tmp_path / "noop.log"))
    pulse_id = _overdue_pulse(reeve_home)
    for _ in range(2):
        check = _health(reeve_home, "--alert", "--quiet")
        assert check.returncode == 1, check.stdout + check.stderr
        assert f"UNHEALTHY: pulse #{pulse_id} overdue by 20 min: no worker is running" in check.stdout
        assert "UNHEALTHY: the Telegram listener is not polling" in check.stdout
    alerts = [text for text in fake_telegram.sent_texts if "Reeve is unhealthy" in text]
    assert len(alerts) == 1, fake_telegram.sent_texts
    assert f"pulse #{pulse_id} overdue" in alerts[0]

    reeve_home.start("run_pulse_worker")
    reeve_home.start("run_telegram_listener")
    reeve_home.wait_for(lambda: _status(reeve_home, pulse_id) == "completed", timeout=60, what="the run")
    # Each `health` is a process start: ask it once both have reported (read from the database).
    reeve_home.wait_for(lambda: _reported(reeve_home, "pulse_listeners"), timeout=60, what="the listener")
    reeve_home.wait_for(
        lambda: _health(reeve_home, "--alert").returncode == 0, timeout=60, interval=1, what="health"
    )
    assert _health(reeve_home, "--alert").stdout.startswith("OK:")
    recovered = [text for text in fake_telegram.sent_texts if "Reeve is healthy again" in text]
    assert len(recovered) == 1, fake_telegram.sent_texts
    assert len([text for text in fake_telegram.sent_texts if "Reeve is unhealthy" in text]) == 1


def test_a_worker_whose_loop_is_stuck_counts_as_dead_and_a_clean_stop_shows_stopped_at_once(
    reeve_home, tmp_path
):
    reeve_home.extra_env.update(PULSE_HEARTBEAT_SECONDS="1", **noop_agent_env(tmp_path / "noop.log"))
    worker = reeve_home.start("run_pulse_worker")
    # Its report in the database first (polling `pulse_queue` started a process twice a second).
    reeve_home.wait_for(
        lambda: _reported(reeve_home, "pulse_workers"), timeout=60, what="the worker to report"
    )
    assert "worker: none running" not in reeve_home.manage("pulse_queue").stdout
    worker.send_signal(signal.SIGSTOP)
    try:
        pulse_id = _overdue_pulse(reeve_home)
        time.sleep(4)  # three missed reports (PULSE_HEARTBEAT_SECONDS=1)
        check = _health(reeve_home)
        assert check.returncode == 1
        assert f"pulse #{pulse_id} overdue by 20 min: no worker is running" in check.stdout
        assert "worker: none running" in reeve_home.manage("pulse_queue").stdout
        doctor = reeve_home.manage("doctor", "--no-api", "--no-telegram", check=False)
        assert f"FAIL  health         pulse #{pulse_id} overdue" in doctor.stdout, doctor.stdout
    finally:
        worker.send_signal(signal.SIGCONT)
    reeve_home.wait_for(lambda: _status(reeve_home, pulse_id) == "completed", timeout=60, what="the run")
    assert _health(reeve_home).returncode == 0
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    # Stopped cleanly: shown stopped at once, not alive for another report interval.
    assert "worker: none running" in reeve_home.manage("pulse_queue").stdout
    assert "no worker running" in _health(reeve_home).stdout


def test_a_pulse_held_by_a_reached_spend_cap_is_not_ill_health_but_one_forgotten_is(reeve_home):
    pulse_id = _overdue_pulse(reeve_home)
    assert _health(reeve_home).returncode == 1
    reeve_home.extra_env["PULSE_DAILY_BUDGET_USD"] = "1"
    reeve_home.manage(
        "shell",
        "-c",
        "from django.utils import timezone; from pulses.models import Pulse, PulseAttempt; "
        "p = Pulse.objects.create(prompt='spent', status='completed'); "
        "PulseAttempt.objects.create(pulse=p, number=1, started_at=timezone.now(), "
        "finished_at=timezone.now(), succeeded=True, cost_usd=2)",
    )
    check = _health(reeve_home)
    assert f"pulse #{pulse_id} waits for the spend cap" in check.stdout, check.stdout + check.stderr
