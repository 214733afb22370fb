"""The queue's pause switch (pulses.queue_pause), in process: what a pause stores and who did it, the
routines' catch-up rule applied on resume, the end that resumes by itself, and every surface that
shows it or switches it (command, API, admin, dashboard, /api/status, doctor, health, /metrics)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pulses import queue
from pulses.api import tokens
from pulses.models import Pulse, Status
from pulses.ops import doctor, health
from pulses.queue_pause import QueuePause, claims_paused
from pulses.routines import changes, firing
from pulses.routines.models import Routine
from pulses.worker.loop import Worker, WorkerOptions
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db


def api(client, method: str, path: str, body: dict | None = None, *, token: str):
    return getattr(client, method)(
        path, body or {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


@pytest.fixture
def full_token():
    return tokens.create("ops-laptop")[1]


def test_a_pause_is_one_row_saying_until_when_why_and_who_and_a_resume_ends_it(caplog):
    until = timezone.now() + timedelta(hours=2)
    with caplog.at_level(logging.WARNING, logger="pulses.queue_pause"):
        state = queue.pause(by="command", until=until, reason="upgrading the server")
        assert state.paused and state.until == until and state.by == "command"
        assert queue.queue_pause_state().summary().startswith("the queue is paused until ")
        assert "by command: upgrading the server" in queue.queue_pause_state().summary()
        assert queue.resume(by="admin ada").skipped_fires == 0
    assert not queue.queue_pause_state().paused
    row = QueuePause.objects.get()
    assert (row.paused, row.paused_by, row.ended_by) == (False, "command", "admin ada")
    assert "queue_paused by=command until=" in caplog.text and "reason=upgrading the server" in caplog.text
    assert "queue_resumed by=admin ada" in caplog.text
    assert queue.resume(by="command") is None  # not paused: nothing to do


def test_a_pause_ending_in_the_past_is_refused():
    with pytest.raises(queue.InvalidPause, match="has passed"):
        queue.pause(by="command", until=timezone.now() - timedelta(minutes=1))
    assert not queue.queue_pause_state().paused


def test_a_pause_whose_end_has_come_shows_as_over_and_the_workers_look_resumes_it():
    queue.pause(by="command", until=timezone.now() + timedelta(seconds=5))
    assert claims_paused()[0]
    later = timezone.now() + timedelta(seconds=6)
    assert not queue.queue_pause_state(later).paused
    assert claims_paused(later) == (False, None)
    assert QueuePause.objects.get().ended_by == "until"


@pytest.mark.django_db(transaction=True)
def test_a_paused_worker_claims_nothing_while_routines_still_fire(fake_agent, agent_log):
    PulseFactory(due=True, prompt="due before the pause")
    routine = changes.create(name="tick", schedule="every 1 minute", prompt="tick", timezone="UTC")
    Routine.objects.filter(pk=routine.pk).update(next_fire_at=timezone.now() - timedelta(seconds=1))
    queue.pause(by="command", reason="maintenance")

    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)

    assert set(Pulse.objects.values_list("status", flat=True)) == {Status.PENDING}
    assert Pulse.objects.filter(routine=routine).count() == 1  # the fire is recorded, waiting
    assert not agent_log.exists()

    queue.resume(by="command")
    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)
    assert set(Pulse.objects.values_list("status", flat=True)) == {Status.COMPLETED}


def test_a_routine_that_fired_five_times_during_a_pause_runs_once_on_resume():
    # A second past a minute, five minutes ago: the fifth fire is this minute's, inside its window
    # (one period) at the resume whatever the clock says.
    start = timezone.now().replace(second=1, microsecond=0) - timedelta(minutes=5)
    queue.pause(by="command")
    QueuePause.objects.update(since=start)
    routine = changes.create(name="often", schedule="every 1 minute", prompt="p", timezone="UTC", now=start)
    for minute in range(1, 6):  # the worker fires it every minute while the queue is paused
        firing.fire_due(start + timedelta(minutes=minute))
    fires = list(Pulse.objects.filter(routine=routine, status=Status.PENDING).order_by("fire_at"))
    assert len(fires) == 5

    resumed = queue.resume(by="command")

    assert resumed.skipped_fires == 4
    [runs] = Pulse.objects.filter(routine=routine, status=Status.PENDING)
    assert runs.pk == fires[-1].pk  # the latest fire
    skipped = Pulse.objects.filter(routine=routine, status=Status.CANCELLED)
    assert skipped.count() == 4 and all("queue was paused" in p.error_message for p in skipped)
    assert Routine.objects.get(pk=routine.pk).missed_count == 4


def test_a_latest_fire_outside_its_catch_up_window_does_not_run_on_resume_either():
    # A minute past an hour, so each of the two fires below comes a minute after its hour (inside the
    # window) whatever the clock says now, and the latest is over an hour old at the resume.
    start = (timezone.now() - timedelta(hours=3)).replace(minute=1, second=0, microsecond=0)
    queue.pause(by="command")
    QueuePause.objects.update(since=start)
    routine = changes.create(
        name="hourly", schedule="every 1 hour", prompt="p", timezone="UTC", now=start,
        catch_up_window=timedelta(minutes=30),
    )  # fmt: skip
    firing.fire_due(start + timedelta(hours=1))
    firing.fire_due(start + timedelta(hours=2))
    assert queue.resume(by="command").skipped_fires == 2
    assert not Pulse.objects.filter(routine=routine, status=Status.PENDING).exists()


def test_the_queue_command_pauses_until_a_time_shows_it_and_resumes():
    out = _call("pause", "--until", "in 2 hours", "--reason", "new disk")
    assert out.startswith("Paused: the queue is paused until ") and "by command: new disk" in out
    assert "Paused:" in _call("status")
    assert _call("resume") == "Resumed: pulses are claimed again."
    assert _call("status") == "Running: the queue is not paused."
    assert _call("resume") == "The queue was not paused."
    with pytest.raises(CommandError, match="has passed"):
        _call("pause", "--until", "2001-01-01T00:00:00Z")


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("queue", *args, stdout=out)
    return out.getvalue().strip()


def test_the_api_pauses_and_resumes_with_a_full_token_and_status_shows_it(client, full_token, fake_agent):
    paused = api(
        client, "post", "/api/queue/pause", {"until": "in 1 hour", "reason": "deploy"}, token=full_token
    )
    assert paused.status_code == 200, paused.content
    assert paused.json()["paused"] and paused.json()["by"] == "api token ops-laptop"
    status = api(client, "get", "/api/status", token=full_token).json()
    assert status["queue_paused"] is True and status["queue_pause_reason"] == "deploy"
    assert status["queue_paused_until"] and status["status"].startswith("no pulse runs: the queue is paused")
    resumed = api(client, "post", "/api/queue/resume", token=full_token)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert QueuePause.objects.get().ended_by == "api token ops-laptop"
    status = api(client, "get", "/api/status", token=full_token).json()
    assert (status["queue_paused"], status["queue_paused_until"], status["queue_pause_reason"]) == (
        False,
        None,
        "",
    )


def test_the_api_refuses_a_bad_until_an_unknown_field_and_the_agents_run_token(client, full_token):
    assert api(client, "post", "/api/queue/pause", {"until": "whenever"}, token=full_token).status_code == 400
    past = api(client, "post", "/api/queue/pause", {"until": "2001-01-01T00:00:00Z"}, token=full_token)
    assert past.status_code == 400 and "has passed" in past.json()["detail"]
    assert (
        api(client, "post", "/api/queue/pause", {"untill": "in 1 hour"}, token=full_token).status_code == 400
    )
    PulseFactory(due=True)
    [running] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    run_token = tokens.run_token(running, worker="host:1")
    assert api(client, "post", "/api/queue/pause", token=run_token).status_code == 403
    assert api(client, "post", "/api/queue/resume", token=run_token).status_code == 403
    assert not queue.queue_pause_state().paused


def test_the_admin_switch_pauses_and_resumes_as_the_signed_in_user(admin_client, admin_user):
    page = admin_client.get("/admin/pulses/queuepause/", follow=True)
    assert page.status_code == 200 and b"until" in page.content
    change = "/admin/pulses/queuepause/1/change/"
    answer = admin_client.post(change, {"paused": "on", "until_text": "in 30 minutes", "reason": "moving"})
    assert answer.status_code == 302
    state = queue.queue_pause_state()
    assert state.paused and state.by == f"admin {admin_user.username}" and state.reason == "moving"
    assert admin_client.post(change, {"reason": ""}).status_code == 302
    assert not queue.queue_pause_state().paused
    assert QueuePause.objects.get().ended_by == f"admin {admin_user.username}"


def test_the_dashboard_shows_the_pause_and_switches_it(admin_client, admin_user):
    page = admin_client.get("/dashboard/")
    assert b'id="queue-pause"' in page.content and b'id="queue-paused"' not in page.content
    admin_client.post("/dashboard/queue", {"action": "pause", "until": "", "reason": "by hand"})
    page = admin_client.get("/dashboard/")
    assert b'id="queue-paused"' in page.content and b"by hand" in page.content
    assert queue.queue_pause_state().by == f"admin {admin_user.username}"
    admin_client.post("/dashboard/queue", {"action": "resume"})
    assert not queue.queue_pause_state().paused


def test_doctor_health_and_metrics_say_paused_not_unhealthy_for_overdue_pulses(client, settings):
    overdue = PulseFactory(scheduled_at=timezone.now() - timedelta(hours=2))
    assert not health.assess(agent=False).healthy
    queue.pause(by="command", reason="maintenance")
    judged = health.assess(agent=False)
    assert judged.healthy, judged.problems
    assert judged.summary().startswith("paused: the queue is paused") and "1 pulse(s) due" in judged.summary()
    check = next(c for c in doctor.run_checks(api=False, telegram=False) if c.name == "queue paused")
    assert check.level == "warn" and "maintenance" in check.message
    metrics = client.get("/metrics").content.decode()
    assert "reeve_queue_paused 1.0" in metrics
    queue.resume(by="command")
    assert "reeve_queue_paused 0.0" in client.get("/metrics").content.decode()
    assert Pulse.objects.get(pk=overdue.pk).status == Status.PENDING


def test_the_start_banner_says_the_queue_is_paused():
    from pulses.ops import banner

    queue.pause(by="command", reason="maintenance")
    assert any(
        line.startswith("  PAUSED     no pulse runs: the queue is paused") for line in banner.lines(web=False)
    )
