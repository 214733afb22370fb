"""The spend of a period and its caps (pulses/budget.py), with an injected clock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pulses import budget, queue
from pulses.models import BudgetCapReached
from pulses.routines import changes
from tests.support.factories import PulseAttemptFactory, PulseFactory
from tests.support.reeve_processes import ROOT

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def spent(amount: float, *, at: datetime, **pulse: object) -> None:
    PulseAttemptFactory(
        cost_usd=amount,
        started_at=at - timedelta(seconds=5),
        finished_at=at,
        pulse=PulseFactory(completed=True, **pulse),
    )


def test_a_day_and_a_month_begin_at_the_users_midnight_and_a_dst_day_lasts_23_hours(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    day, month = budget.periods(datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert day.starts_at == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert day.ends_at == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 23 hours: the clocks went forward
    assert month.starts_at == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    assert month.ends_at == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    # 23:30 UTC on the 31st is already April the 1st in Berlin.
    day, month = budget.periods(datetime(2026, 3, 31, 23, 30, tzinfo=UTC))
    assert month.starts_at == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)


def test_the_spend_sums_the_attempts_cost_since_the_day_and_the_month_began(settings):
    settings.TIME_ZONE = "UTC"
    spent(0.5, at=NOON - timedelta(hours=1))
    spent(0.25, at=NOON - timedelta(hours=13))  # yesterday, this month
    spent(9.0, at=NOON - timedelta(days=20))  # last month
    PulseAttemptFactory(cost_usd=None, finished_at=NOON)  # the agent reported no cost
    st = budget.status(NOON)
    assert (st.today_usd, st.month_usd) == (0.5, 0.75)
    assert st.reached == [] and st.resumes_at is None


def test_a_daily_cap_reached_waits_until_the_users_next_midnight(settings):
    settings.TIME_ZONE = "America/New_York"
    settings.PULSE_DAILY_BUDGET_USD = Decimal("1.00")
    spent(1.0, at=NOON)
    st = budget.status(NOON)
    assert [p.name for p in st.reached] == ["day"]
    assert st.resumes_at == datetime(2026, 3, 15, 4, 0, tzinfo=UTC)  # midnight in New York (EDT)
    settings.PULSE_MONTHLY_BUDGET_USD = Decimal("0.90")
    assert budget.status(NOON).resumes_at == datetime(2026, 4, 1, 4, 0, tzinfo=UTC)


def test_the_spend_per_source_and_per_routine_covers_this_month(settings):
    settings.TIME_ZONE = "UTC"
    routine = changes.create(name="inbox", schedule="*/15 * * * *", prompt="p", timezone="UTC", now=NOON)
    spent(0.2, at=NOON, source="telegram")
    spent(0.1, at=NOON - timedelta(days=2), source="routine", routine=routine)
    spent(0.3, at=NOON, source="routine", routine=routine)
    report = budget.spend(NOON).as_dict()
    assert report["by_source"] == [
        {"source": "routine", "today_usd": 0.3, "month_usd": 0.4},
        {"source": "telegram", "today_usd": 0.2, "month_usd": 0.2},
    ]
    assert report["by_routine"] == [
        {"routine_id": routine.pk, "name": "inbox", "today_usd": 0.3, "month_usd": 0.4}
    ]
    assert report["waiting"] is False and report["daily_cap_usd"] is None


def test_a_cap_reached_is_stored_once_per_period_whichever_worker_sees_it_first(settings):
    settings.PULSE_DAILY_BUDGET_USD = Decimal("0.10")
    spent(0.2, at=NOON)
    alerts_a, alerts_b = [], []
    first = budget.Gate(worker="a", on_reached=alerts_a.append, clock=lambda: NOON)
    second = budget.Gate(worker="b", on_reached=alerts_b.append, clock=lambda: NOON)
    assert first.hold() is budget.Hold.CRITICAL_ONLY
    assert second.hold() is budget.Hold.CRITICAL_ONLY
    second.spent()
    assert second.hold() is budget.Hold.CRITICAL_ONLY
    assert len(alerts_a) == 1 and alerts_b == []
    assert BudgetCapReached.objects.get().period == "day"
    settings.PULSE_BUDGET_HOLDS_CRITICAL = True
    assert first.hold() is budget.Hold.ALL


def test_the_gate_reads_the_spend_only_after_a_run_ended_or_a_period_ended(
    settings, django_assert_num_queries
):
    settings.PULSE_DAILY_BUDGET_USD = Decimal("1.00")
    now = [NOON]
    gate = budget.Gate(clock=lambda: now[0])
    with django_assert_num_queries(1):
        assert gate.hold() is budget.Hold.NONE
    with django_assert_num_queries(0):  # the claims between two runs' ends
        for _ in range(10):
            assert gate.hold() is budget.Hold.NONE
    spent(1.5, at=NOON)
    gate.spent()  # a run of this worker ended
    with django_assert_num_queries(4):  # the sums, and the row (in a savepoint) storing the cap was reached
        assert gate.hold() is budget.Hold.CRITICAL_ONLY
    with django_assert_num_queries(0):  # over a cap the spend only grows until the period ends
        assert gate.hold() is budget.Hold.CRITICAL_ONLY
    assert gate.seconds_until_resume() == 12 * 3600
    now[0] = NOON + timedelta(hours=12)  # the next day
    with django_assert_num_queries(1):
        assert gate.hold() is budget.Hold.NONE


def test_after_a_run_the_gate_adds_only_the_attempts_recorded_since_its_last_read(
    settings, django_assert_num_queries
):
    settings.PULSE_DAILY_BUDGET_USD = Decimal("1.00")
    spent(0.3, at=NOON - timedelta(hours=1))
    gate = budget.Gate(clock=lambda: NOON)
    assert gate.current().today_usd == pytest.approx(0.3)
    spent(0.2, at=NOON)  # this worker's run
    spent(0.1, at=NOON)  # another worker's
    gate.spent()
    with django_assert_num_queries(1):  # a range of the primary key, not the month again
        st = gate.current()
    assert (st.today_usd, st.month_usd) == (pytest.approx(0.6), pytest.approx(0.6))
    gate.spent()
    with django_assert_num_queries(1):  # nothing newer: the sums stand
        assert gate.current().today_usd == pytest.approx(0.6)
    assert budget.status(NOON).last_attempt_id == st.last_attempt_id


def test_without_caps_the_gate_reads_nothing(django_assert_num_queries):
    gate = budget.Gate()
    with django_assert_num_queries(0):
        assert gate.hold() is budget.Hold.NONE
        assert gate.seconds_until_resume() == float("inf")


def test_the_claim_the_dispatcher_makes_over_a_cap_leaves_a_due_normal_pulse_pending(settings):
    """Over a cap the dispatcher claims with critical_only (its loop: tests/worker/test_budget_worker.py)."""
    settings.PULSE_DAILY_BUDGET_USD = Decimal("0.10")
    spent(0.2, at=datetime.now(UTC))
    normal = PulseFactory(due=True, priority="normal")
    critical = PulseFactory(due=True, priority="critical")
    [claimed] = queue.claim(worker="w", limit=5, critical_only=True)
    assert claimed.pk == critical.pk
    normal.refresh_from_db()
    assert normal.status == "pending"


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_a_bad_budget_setting_is_an_error_naming_the_variable(tmp_path, value):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "REEVE_IGNORE_DOTENV": "1",
        "DJANGO_SETTINGS_MODULE": "reeve_site.settings",
        "PULSE_MONTHLY_BUDGET_USD": value,
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.PULSE_MONTHLY_BUDGET_USD"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "PULSE_MONTHLY_BUDGET_USD must be empty (no cap) or a positive amount in US dollars" in proc.stderr
    assert repr(value) in proc.stderr


def test_an_empty_budget_setting_is_no_cap_and_a_decimal_is_kept_exact(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "REEVE_IGNORE_DOTENV": "1",
        "DJANGO_SETTINGS_MODULE": "reeve_site.settings",
        "PULSE_DAILY_BUDGET_USD": "2.50",
        "PULSE_MONTHLY_BUDGET_USD": "",
    }
    code = (
        "from django.conf import settings; "
        "print(settings.PULSE_DAILY_BUDGET_USD, settings.PULSE_MONTHLY_BUDGET_USD, "
        "settings.PULSE_BUDGET_HOLDS_CRITICAL)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["2.50", "None", "False"], proc.stderr
