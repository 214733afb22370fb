"""`/dashboard/`: staff only; runs per hour, durations, failure rate, queue depth, API latency, lists."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from pulses import reports
from pulses.web.dashboard import depth_bars, hour_bars
from tests.support.factories import PulseAttemptFactory, PulseFactory, report_worker_alive

pytestmark = pytest.mark.django_db


def test_the_dashboard_needs_a_staff_login(client, django_user_model):
    assert client.get("/dashboard/")["Location"].startswith("/admin/login/")
    user = django_user_model.objects.create_user("plain", password="pw-not-staff-123")
    client.force_login(user)
    assert client.get("/dashboard/").status_code == 302


def test_the_dashboard_shows_the_figures_charts_and_lists(admin_client, client, settings):
    settings.PULSE_API_TOKEN = "t"
    client.get("/api/pulses", HTTP_AUTHORIZATION="Bearer t")  # one timed API request
    for ms in (1000, 3000):
        PulseAttemptFactory(duration_ms=ms)
    failed = PulseFactory(failed=True, prompt="The failing one", error_message="agent said no")
    PulseAttemptFactory(pulse=failed, succeeded=False, duration_ms=5000)
    nxt = PulseFactory(prompt="The next one", priority="critical")
    PulseFactory.create_batch(3, priority="low")
    page = admin_client.get("/dashboard/").content.decode()

    def card(name):
        return re.search(rf'id="{name}">([^<]*)<', page).group(1)

    assert card("executed-24h") == "3"
    assert card("failure-rate") == "33.3%"
    assert card("avg-duration") == "3.0 s"
    assert card("p95-duration") == "5.0 s"
    assert card("queue-depth") == "4"
    assert re.fullmatch(r"[\d.]+ (ms|s)", card("api-latency"))  # its value depends on the machine's load
    assert 'id="chart-per-hour"' in page and 'id="chart-queue-depth"' in page
    assert 'data-priority="low">3<' in page and 'data-priority="critical">1<' in page
    assert "The next one" in page and f"/admin/pulses/pulse/{nxt.pk}/change/" in page
    assert "The failing one" in page and "agent said no" in page


def test_the_last_runs_show_the_first_line_of_what_the_agent_said_or_its_error(admin_client):
    answered = PulseFactory(completed=True, prompt="What is on today?")
    PulseAttemptFactory(pulse=answered, result_text="Dentist at 9.\nThen lunch.")
    failed = PulseFactory(failed=True, prompt="Check the oven")
    PulseAttemptFactory(pulse=failed, succeeded=False, result_text="", error="Tool Bash failed\ndetails")

    page = admin_client.get("/dashboard/").content.decode()

    runs = page[page.index('id="runs"') :]
    runs = runs[: runs.index("</table>")]
    assert "Dentist at 9." in runs and "Then lunch" not in runs
    assert "Tool Bash failed" in runs and "details" not in runs
    assert runs.index("Check the oven") < runs.index("What is on today?")  # newest first


def test_the_dashboard_uses_no_asset_from_another_host(admin_client):
    page = admin_client.get("/dashboard/").content.decode()
    assert re.findall(r'(?:src|href)="(?:https?:)?//', page) == []
    # One script, served by Reeve itself (the running pulses' live tails), none inline (nginx's CSP).
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/pulses/run_tail.js" defer>']


def test_hour_bars_stack_failures_on_successes_with_a_rounded_scale():
    now = timezone.now()
    PulseAttemptFactory.create_batch(3, finished_at=now)
    PulseAttemptFactory(finished_at=now, succeeded=False)
    PulseAttemptFactory(finished_at=now - timedelta(hours=5))
    bars, ticks = hour_bars(reports.activity(hours=24, now=now))
    assert len(bars) == 24
    last = bars[-1]
    assert (last.executed, last.failed) == (4, 1)
    assert last.ok_height == pytest.approx(3 * last.failed_height)
    assert last.failed_y + last.failed_height == pytest.approx(last.ok_y)
    assert bars[-6].executed == 1
    assert [value for _, value in ticks] == [0, 1, 2, 3, 4]


def test_depth_bars_scale_to_the_deepest_priority():
    bars = depth_bars({"critical": 1, "high": 0, "normal": 4})
    assert [(b.priority, b.count) for b in bars] == [("critical", 1), ("high", 0), ("normal", 4)]
    assert bars[2].width == 4 * bars[0].width and bars[1].width == 0


def test_the_dashboard_warns_that_no_pulse_runs_while_the_agent_command_is_missing(admin_client, settings):
    settings.HAPI_COMMAND = "/nowhere/hapi"
    page = admin_client.get("/dashboard/").content.decode()
    assert 'id="agent-problem"' in page and "/nowhere/hapi" in page and "HAPI_COMMAND" in page


def test_runs_and_pulses_are_labelled_as_such_and_the_page_uses_the_full_width(admin_client):
    failed = PulseFactory(failed=True)
    for _ in range(3):  # one pulse, three failed runs: the rate counts runs, the status pulses
        PulseAttemptFactory(pulse=failed, succeeded=False, duration_ms=10)
    PulseAttemptFactory(duration_ms=10)
    page = admin_client.get("/dashboard/").content.decode()
    assert "of runs failed (3 of 4 runs; a pulse retries before it fails)" in page
    assert re.search(r'id="pulses-by-status">Pulses by status:[^<]*failed 1', page)
    assert "max-width" not in page


def test_a_worker_that_stopped_reporting_is_marked_stopped(admin_client, settings):
    from pulses.models import WorkerRecord

    settings.PULSE_HEARTBEAT_SECONDS = 10
    now = timezone.now()
    for name, ago in (("host:1", 5), ("host:2", 45)):
        WorkerRecord.objects.create(
            name=name, host="host", pid=int(name[-1]), started_at=now, last_seen=now - timedelta(seconds=ago)
        )
    page = admin_client.get("/dashboard/").content.decode()
    rows = re.findall(r"<tr[^>]*><td>(host:\d)</td><td><span[^>]*>(\w+)</span>", page)
    assert rows == [("host:1", "alive"), ("host:2", "stopped")]
    assert "No worker is reporting" not in page
    WorkerRecord.objects.filter(name="host:1").delete()
    assert "No worker is reporting" in admin_client.get("/dashboard/").content.decode()


def test_the_dashboard_shows_which_slots_are_busy_and_with_what(admin_client):
    report_worker_alive(running=1, concurrency=1, critical_reserved=1)
    low = PulseFactory(processing=True, lease_owner="box:42", priority="low", prompt="background research")
    page = admin_client.get("/dashboard/").content.decode()
    workers = page[page.index('id="workers"') :]
    workers = workers[: workers.index("</table>")]
    assert 'critical: <span class="muted">free</span>' in workers
    assert f">#{low.pk}</a> low background research" in workers


def test_the_dashboard_says_no_pulse_runs_while_the_agent_cannot_run_and_shows_a_usage_warning(
    admin_client, fake_agent
):
    from pulses import agent_hold
    from pulses.agent.readiness import AgentUnavailable

    agent_hold.warn("the agent's usage is close to its limit (five_hour)")
    page = admin_client.get("/dashboard/").content.decode()
    assert 'id="agent-problem"' not in page and 'id="agent-warning"' in page and "five_hour" in page
    agent_hold.hold(
        AgentUnavailable(reason="not_logged_in", problem="Claude Code is not logged in", fix="Run `claude`.")
    )
    page = admin_client.get("/dashboard/").content.decode()
    assert 'id="agent-problem"' in page and "Claude Code is not logged in. Run `claude`." in page


def test_a_cleanly_stopped_worker_is_shown_stopped_at_once(admin_client):
    from pulses import queue

    started = timezone.now()
    for stopped in (False, True):  # its reports, the last one as it stops
        queue.report_alive(
            worker="host:7", host="host", pid=7, started_at=started, running=0, stopped=stopped
        )
    page = admin_client.get("/dashboard/").content.decode()
    rows = re.findall(r"<tr[^>]*><td>(host:\d)</td><td><span[^>]*>(\w+)</span>", page)
    assert rows == [("host:7", "stopped")]
    assert "No worker is reporting" in page
    assert reports.recent_workers() == []


def test_the_dashboard_says_unhealthy_and_why_while_a_pulse_is_overdue(admin_client, settings):
    settings.PULSE_OVERDUE_ALERT_MINUTES = 10
    page = admin_client.get("/dashboard/").content.decode()
    assert 'id="health"' not in page
    late = PulseFactory(scheduled_at=timezone.now() - timedelta(minutes=11))
    page = admin_client.get("/dashboard/").content.decode()
    section = page[page.index('id="health"') :]
    assert f"pulse #{late.pk} overdue by 11 min: no worker is running" in section[: section.index("</div>")]
