"""A PostgreSQL restart or failover under a running worker: the worker waits it out, keeps the result
of the run in flight, and picks up new pulses once the database answers again; meanwhile the API
answers 503 with Retry-After instead of a 500.

The outage is made on the test's own database of the shared cluster: every connection to it is
terminated and new ones are refused (ALLOW_CONNECTIONS false) for a few seconds, which is what a
worker sees while PostgreSQL restarts.
"""

import json
import signal
import time
from urllib.parse import urlsplit

import pytest
from django.db import connection

from tests.support.reeve_processes import _admin, on_postgres

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not on_postgres(), reason="a database outage is a PostgreSQL matter (DATABASE_URL)"),
]


def status_of(home, pulse_id):
    rows = home.query("SELECT status FROM pulses WHERE id = ?", (pulse_id,))
    return rows[0][0] if rows else None


def database_outage(home, seconds: float) -> None:
    name = urlsplit(home.database_url).path.lstrip("/")
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        time.sleep(seconds)
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_worker_waits_out_a_database_outage_and_keeps_the_run_in_flight(reeve_home):
    worker = reeve_home.start("run_pulse_worker", LOG_LEVEL="INFO")
    reeve_home.manage("trigger_pulse", "mode=sleep:2 running through the outage")
    reeve_home.wait_for(reeve_home.agent_starts, timeout=30, what="the run")

    # The run ends inside the outage, which also outlasts the 2 s lease (nobody could renew it).
    database_outage(reeve_home, seconds=5)

    reeve_home.manage("trigger_pulse", "mode=noop after the outage")
    reeve_home.wait_for(lambda: status_of(reeve_home, 2) == "completed", timeout=60, what="a new pulse")
    reeve_home.wait_for(lambda: status_of(reeve_home, 1) == "completed", timeout=60, what="the result")
    assert worker.poll() is None, reeve_home.output(worker)
    # The run in flight was recorded once, as the success it was: not lost, not run again.
    assert reeve_home.query("SELECT pulse_id, number, succeeded FROM pulse_attempts ORDER BY pulse_id") == [
        (1, 1, True),
        (2, 1, True),
    ]
    log = reeve_home.output(worker)
    assert "database_unavailable" in log and "database_available_again" in log
    assert "pulse_record_retry id=1" in log
    assert "Traceback" not in log

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_a_worker_stopped_during_an_outage_exits_within_its_grace(reeve_home):
    worker = reeve_home.start("run_pulse_worker", LOG_LEVEL="INFO", PULSE_SHUTDOWN_GRACE_SECONDS="3")
    reeve_home.manage("trigger_pulse", "mode=sleep:2 finishing while the database is gone")
    # The agent's own log, written as it starts: polling the status for a one-second run could miss it
    # on a loaded machine and wait for a "processing" that had already become "completed".
    reeve_home.wait_for(reeve_home.agent_starts, timeout=30, what="the run")
    name = urlsplit(reeve_home.database_url).path.lstrip("/")
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        worker.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = worker.wait(timeout=60)
        waited = time.monotonic() - began
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert code == 0, reeve_home.output(worker)
    assert waited < 15  # the 3 s grace and the backoff's last step, not a hang
    assert "pulse_result_lost id=1" in reeve_home.output(worker)


def test_a_worker_started_while_the_database_is_down_waits_for_it_and_then_runs_pulses(reeve_home):
    """As systemd restarts a worker during a PostgreSQL restart: it waits (no traceback, no exit 1)."""
    name = urlsplit(reeve_home.database_url).path.lstrip("/")
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        worker = reeve_home.start("run_pulse_worker", LOG_LEVEL="INFO")
        reeve_home.wait_for(
            lambda: "database_unavailable" in reeve_home.output(worker), timeout=60, what="the worker waiting"
        )
        assert worker.poll() is None, reeve_home.output(worker)
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    reeve_home.manage("trigger_pulse", "mode=noop once the database is back")
    reeve_home.wait_for(lambda: status_of(reeve_home, 1) == "completed", timeout=60, what="the pulse")
    assert "Traceback" not in reeve_home.output(worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_503_with_retry_after_while_the_database_is_down(client, settings):
    settings.PULSE_API_TOKEN = "outage-token"
    auth = {"HTTP_AUTHORIZATION": "Bearer outage-token"}
    body = json.dumps({"prompt": "during the outage"})
    name = connection.settings_dict["NAME"]
    connection.ensure_connection()
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        trigger = client.post("/api/pulse/trigger", body, content_type="application/json", **auth)
        listing = client.get("/api/pulses", **auth)
        health = client.get("/api/health")
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    for response in (trigger, listing):
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "5"
        assert "database is unavailable" in response.json()["detail"]
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"

    again = client.post("/api/pulse/trigger", body, content_type="application/json", **auth)
    assert again.status_code == 201, again.content
