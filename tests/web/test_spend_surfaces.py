"""The spend on every surface: /api/stats (and its schema), pulse_queue, the dashboard, /metrics."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from pulses import budget
from pulses.routines import changes
from pulses.web import metrics
from tests.support.factories import PulseAttemptFactory, PulseFactory

pytestmark = pytest.mark.django_db

TOKEN = "spend-surfaces-token-0123456789abcdef"


@pytest.fixture
def spending(settings):
    """A daily cap of $1 reached: $0.70 from Telegram today, $0.40 from a routine today, $2 earlier
    this month (when the month began today, that spend is not in it)."""
    settings.PULSE_API_TOKEN = TOKEN
    settings.TIME_ZONE = "UTC"
    settings.PULSE_DAILY_BUDGET_USD = Decimal("1")
    now = timezone.now()
    routine = changes.create(name="inbox", schedule="0 * * * *", prompt="p", timezone="UTC", now=now)
    PulseAttemptFactory(cost_usd=0.7, finished_at=now, pulse=PulseFactory(completed=True, source="telegram"))
    PulseAttemptFactory(
        cost_usd=0.4, finished_at=now, pulse=PulseFactory(completed=True, source="routine", routine=routine)
    )
    day, month = budget.periods(now)
    earlier = day.starts_at - timedelta(hours=1)
    earlier_counts = earlier >= month.starts_at
    PulseAttemptFactory(cost_usd=2.0, finished_at=earlier, pulse=PulseFactory(completed=True, source="api"))
    return {"month": 3.1 if earlier_counts else 1.1, "resumes_at": day.ends_at, "routine": routine}


def test_api_stats_shows_the_spend_today_this_month_per_source_and_routine_and_the_caps(client, spending):
    body = client.get("/api/stats", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    spend = body["spend"]
    assert spend["today_usd"] == pytest.approx(1.1)
    assert spend["month_usd"] == pytest.approx(spending["month"])
    assert (spend["daily_cap_usd"], spend["monthly_cap_usd"]) == (1.0, None)
    assert spend["waiting"] is True and spend["caps_reached"] == ["day"]
    assert spend["resumes_at"] == spending["resumes_at"].isoformat().replace("+00:00", "Z")
    assert spend["critical_waits"] is False
    today_by_source = {line["source"]: line["today_usd"] for line in spend["by_source"]}
    assert today_by_source.items() >= {"telegram": 0.7, "routine": 0.4}.items()
    assert spend["by_routine"] == [
        {"routine_id": spending["routine"].pk, "name": "inbox", "today_usd": 0.4, "month_usd": 0.4}
    ]


def test_the_openapi_schema_describes_the_spend_in_api_stats(admin_client):
    schema = admin_client.get(
        "/api/schema", HTTP_ACCEPT="application/json"
    ).json()  # a staff login may read it
    components = schema["components"]["schemas"]
    stats = components["Stats"]
    assert "spend" in stats["required"]
    spend = components["Spend"]
    assert set(spend["properties"]) == {
        "today_usd",
        "month_usd",
        "daily_cap_usd",
        "monthly_cap_usd",
        "waiting",
        "caps_reached",
        "resumes_at",
        "critical_waits",
        "by_source",
        "by_routine",
    }
    assert spend["properties"]["daily_cap_usd"]["nullable"] is True


def test_pulse_queue_prints_the_spend_the_caps_and_what_waits(spending):
    out = StringIO()
    call_command("pulse_queue", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith(
        f"spend today=$1.10/$1.00 month=${spending['month']:.2f}; this month by source: "
    )
    assert "telegram $0.70" in lines[1] and "by routine: inbox $0.40" in lines[1]
    assert lines[2] == (
        "spend cap reached (day): pulses other than critical wait until "
        f"{spending['resumes_at']:%Y-%m-%d %H:%M}"
    )


def test_pulse_queue_without_caps_says_so():
    out = StringIO()
    call_command("pulse_queue", stdout=out)
    assert out.getvalue().splitlines()[1] == "spend today=$0.00 month=$0.00 (no cap)"


def test_the_dashboard_shows_the_spend_the_caps_and_the_waiting_banner(admin_client, spending):
    html = admin_client.get("/dashboard/").content.decode()
    assert '<div class="value bad" id="spend-today">$1.10</div>' in html
    assert "spent today of $1.00" in html
    assert f'<span id="spend-month">${spending["month"]:.2f}</span>' in html
    assert 'id="budget-waiting"' in html and "Spend cap reached (day):" in html
    assert "critical pulses still run" in html
    assert "<td>telegram</td><td>$0.7000</td>" in html
    assert "<td>inbox</td><td>$0.4000</td><td>$0.4000</td>" in html


def test_the_dashboard_under_the_caps_shows_no_banner(admin_client):
    html = admin_client.get("/dashboard/").content.decode()
    assert 'id="budget-waiting"' not in html and "nothing spent this month" in html


def parsed(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_the_agents_cost_and_show_the_caps_the_spend_and_the_wait(client, spending):
    before = parsed(client.get("/metrics").content.decode())
    metrics.record_cost(source="telegram", cost_usd=0.25)
    metrics.record_cost(source="telegram", cost_usd=None)  # a run whose agent reported no cost
    after = parsed(client.get("/metrics").content.decode())
    key = ("reeve_agent_cost_usd_total", (("source", "telegram"),))
    assert after[key] - before.get(key, 0.0) == pytest.approx(0.25)
    assert after[("reeve_budget_cap_usd", (("period", "day"),))] == 1.0
    assert ("reeve_budget_cap_usd", (("period", "month"),)) not in after
    assert after[("reeve_budget_spent_usd", (("period", "day"),))] == pytest.approx(1.1)
    assert after[("reeve_budget_waiting", ())] == 1.0


def test_metrics_without_a_cap_read_no_spend(client):
    text = client.get("/metrics").content.decode()
    assert "reeve_budget_waiting" not in text and "reeve_budget_cap_usd" not in text
