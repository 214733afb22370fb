"""Spend caps in the worker: the real loop (in-process, its clock moved) and real worker processes."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from pulses import budget
from pulses.models import BudgetCapReached, Pulse, PulseAttempt
from pulses.worker.loop import Worker, WorkerOptions
from telegram_bridge.alerts import alert_budget_reached
from tests.support.factories import PulseAttemptFactory, PulseFactory
from tests.support.reeve_processes import agent_starts

pytestmark = pytest.mark.django_db(transaction=True)


def spend_today(amount: float, *, at) -> None:
    PulseAttemptFactory(cost_usd=amount, started_at=at - timedelta(seconds=5), finished_at=at)


def test_over_the_daily_cap_a_normal_pulse_waits_for_the_next_day_and_a_critical_one_runs(
    agent_log, telegram_settings, settings
):
    settings.TIME_ZONE = "Europe/Berlin"
    settings.PULSE_DAILY_BUDGET_USD = Decimal("0.05")
    # The worker's clock stands four seconds before midnight in Berlin.
    real_now = timezone.now()
    day, _ = budget.periods(real_now)
    shift = day.ends_at - timedelta(seconds=4) - real_now
    spend_today(0.06, at=real_now + shift - timedelta(minutes=5))
    normal = PulseFactory(due=True, priority="normal", prompt="normal mode=noop")
    critical = PulseFactory(due=True, priority="critical", prompt="critical mode=noop")

    worker = Worker(WorkerOptions.from_settings(lease_seconds=30, poll_seconds=30))
    worker.dispatch.budget.clock = lambda: timezone.now() + shift

    def run() -> None:
        try:
            worker.run(install_signals=False)
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    # When the worker's day ends, on the wall clock the fake agent stamps its starts with.
    midnight = time.time() + (day.ends_at - worker.dispatch.budget.clock()).total_seconds()
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Pulse.objects.get(pk=normal.pk).status != "completed":
            time.sleep(0.05)
    finally:
        worker.signals.request_stop("test")
        worker._poke()
        runner.join(timeout=30)

    starts = {int(start["pulse_id"]): start["t"] for start in agent_starts(agent_log)}
    assert list(starts) == [critical.pk, normal.pk]  # the critical one at once, the normal one the next day
    assert starts[critical.pk] < midnight <= starts[normal.pk]
    # Woken by the new day itself: the safety poll is 30 s.
    assert starts[normal.pk] - midnight < 5
    assert Pulse.objects.get(pk=normal.pk).status == "completed"
    [alert] = telegram_settings.sent_texts
    assert alert.startswith("💸 The daily spend cap of 0.05 USD is reached (0.06 USD spent).")
    assert "Critical pulses (your Telegram messages) still run." in alert
    assert BudgetCapReached.objects.count() == 1


def test_with_critical_pulses_held_too_nothing_runs_over_the_cap(agent_log, settings):
    settings.PULSE_DAILY_BUDGET_USD = Decimal("0.05")
    settings.PULSE_BUDGET_HOLDS_CRITICAL = True
    spend_today(0.06, at=timezone.now())
    PulseFactory(due=True, priority="critical", prompt="critical mode=noop")
    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)
    assert agent_starts(agent_log) == []
    assert Pulse.objects.get(priority="critical").status == "pending"


def test_a_run_that_reaches_the_cap_stops_the_claims_after_it(agent_log, settings):
    settings.PULSE_DAILY_BUDGET_USD = Decimal("0.02")  # the fake agent reports 0.0123 a run
    PulseFactory.create_batch(4, due=True, priority="normal", prompt="mode=noop")
    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)
    assert len(agent_starts(agent_log)) == 2
    assert Pulse.objects.filter(status="pending").count() == 2
    assert round(budget.status().today_usd, 4) == 0.0246


@pytest.mark.slow
def test_two_worker_processes_over_the_cap_send_one_alert_and_the_waiting_pulse_runs_once_the_day_is_past(
    reeve_home, fake_telegram
):
    reeve_home.extra_env.update(fake_telegram.env(42), PULSE_DAILY_BUDGET_USD="0.05", TIME_ZONE="UTC")
    reeve_home.manage(
        "shell",
        "-c",
        "from django.utils import timezone; from tests.support.factories import PulseAttemptFactory; "
        "PulseAttemptFactory(cost_usd=0.06, finished_at=timezone.now())",
    )
    reeve_home.manage("trigger_pulse", "Tidy the desk mode=noop", "--priority", "normal")
    reeve_home.manage("trigger_pulse", "Answer Anna mode=noop", "--priority", "critical")

    reeve_home.manage("run_pulse_worker", "--once")
    reeve_home.manage("run_pulse_worker", "--once")  # a second worker: the cap is stored as reached

    rows = dict(reeve_home.query("SELECT prompt, status FROM pulses"))
    assert rows["Answer Anna mode=noop"] == "completed"
    assert rows["Tidy the desk mode=noop"] == "pending"
    [alert] = fake_telegram.sent_texts
    assert alert.startswith("💸 The daily spend cap of 0.05 USD is reached")
    scrape = reeve_home.manage(
        "shell", "-c", "from pulses.web.metrics import exposition; print(exposition().decode())"
    ).stdout
    assert 'reeve_agent_cost_usd_total{source="manual"} 0.0123' in scrape  # the critical run
    assert "reeve_budget_waiting 1.0" in scrape
    listing = reeve_home.manage("pulse_queue").stdout
    assert "spend today=$0.07/$0.05" in listing
    assert "spend cap reached (day): pulses other than critical wait until" in listing

    # The day is over: the spend so far belongs to yesterday.
    reeve_home.manage(
        "shell",
        "-c",
        "from datetime import timedelta; from django.db.models import F; "
        "from pulses.models import PulseAttempt; "
        "PulseAttempt.objects.update(finished_at=F('finished_at') - timedelta(days=1))",
    )
    reeve_home.manage("run_pulse_worker", "--once")
    assert (
        dict(reeve_home.query("SELECT prompt, status FROM pulses"))["Tidy the desk mode=noop"] == "completed"
    )
    assert len(fake_telegram.sent_texts) == 1


def test_the_budget_alert_says_when_the_waiting_pulses_run_and_how_to_raise_the_cap(
    telegram_settings, settings
):
    settings.TIME_ZONE = "UTC"
    settings.PULSE_MONTHLY_BUDGET_USD = Decimal("20")
    settings.PULSE_BUDGET_HOLDS_CRITICAL = True
    now = timezone.now()
    _, month = budget.periods(now)
    reached = BudgetCapReached.objects.create(
        period="month", starts_at=month.starts_at, cap_usd=Decimal("20"), spent_usd=20.4, reached_at=now
    )
    alert_budget_reached(reached.pk)
    [alert] = telegram_settings.sent_texts
    assert f"wait until {month.ends_at:%Y-%m-%d %H:%M}" in alert
    assert "monthly spend cap of 20 USD is reached (20.40 USD spent)" in alert
    assert "Critical pulses (your Telegram messages) wait too." in alert
    assert "PULSE_MONTHLY_BUDGET_USD" in alert
    assert PulseAttempt.objects.count() == 0
