"""`/metrics`: Prometheus text merged across processes, read back with prometheus-client's own parser."""

from __future__ import annotations

import os
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pulses.web import metrics
from tests.support.factories import PulseFactory


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def total(parsed: dict, name: str, **labels: str) -> float:
    """Sum over every label set that includes `labels`."""
    return sum(v for (n, ls), v in parsed.items() if n == name and set(labels.items()) <= set(ls))


def test_the_test_run_uses_multiprocess_mode_in_reeve_home():
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"].endswith("metrics")
    assert metrics.multiproc_dir().is_dir()


@pytest.mark.django_db
def test_metrics_show_attempts_by_priority_durations_and_queue_depth(client):
    before = samples(client.get("/metrics").content.decode())
    metrics.record_attempt(priority="critical", success=True, seconds=2.5)
    metrics.record_attempt(priority="critical", success=False, seconds=40)
    PulseFactory.create_batch(2, priority="low")
    PulseFactory(failed=True)
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    after = samples(response.content.decode())
    executed = "reeve_pulses_executed_total"
    assert value(after, executed, priority="critical") - value(before, executed, priority="critical") == 2
    failed = "reeve_pulses_failed_total"
    assert value(after, failed, priority="critical") - value(before, failed, priority="critical") == 1
    duration = "reeve_pulse_duration_seconds_count"
    assert value(after, duration, priority="critical") - value(before, duration, priority="critical") == 2
    assert (
        value(after, "reeve_pulse_duration_seconds_bucket", priority="critical", le="30.0")
        - value(before, "reeve_pulse_duration_seconds_bucket", priority="critical", le="30.0")
        == 1
    )
    assert value(after, "reeve_queue_depth", status="pending") == 2
    assert value(after, "reeve_queue_depth", status="failed") == 1
    assert value(after, "reeve_queue_pending", priority="low") == 2


@pytest.mark.django_db
def test_api_requests_are_timed_by_route_not_by_raw_path(client, settings):
    settings.PULSE_API_TOKEN = "t"
    for pk in (1, 2, 3):
        client.get(f"/api/pulses/{pk}", HTTP_AUTHORIZATION="Bearer t")
    parsed = samples(client.get("/metrics").content.decode())
    count = "reeve_api_request_duration_seconds_count"
    assert value(parsed, count, method="GET", endpoint="/api/pulses/<int:pk>", status="404") >= 3
    assert not [
        labels for (name, labels) in parsed if name == count and ("endpoint", "/api/pulses/1") in labels
    ]


def test_the_latency_summary_interpolates_p95_inside_its_bucket():
    buckets = {0.01: 50.0, 0.05: 90.0, 0.1: 100.0, float("inf"): 100.0}
    assert metrics._quantile(0.95, buckets, 100) == pytest.approx(75.0)
    assert metrics._quantile(0.5, buckets, 100) == pytest.approx(10.0)


@pytest.mark.slow
def test_counters_move_after_pulses_run_across_gunicorn_workers_and_the_worker_process(live_reeve):
    live_reeve.web_workers = 2
    live_reeve.start()  # run_reeve: gunicorn with two workers, and the pulse worker
    before = samples(live_reeve.request("GET", "/metrics", token=None)[1])
    for prompt, retries in (("first", 3), ("second", 3), ("mode=exit_nonzero breaks", 0)):
        status, _ = live_reeve.request(
            "POST", "/api/pulse/trigger", {"prompt": prompt, "priority": "normal", "max_retries": retries}
        )
        assert status == 201
    live_reeve.wait_for(
        lambda: (
            live_reeve.home.query("SELECT count(*) FROM pulses WHERE status IN ('completed','failed')")
            == [(3,)]
        ),
        what="three pulses to finish",
    )
    for _ in range(20):
        assert live_reeve.request("GET", "/api/status")[0] == 200

    after = samples(live_reeve.request("GET", "/metrics", token=None)[1])
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("reeve_pulses_executed_total", priority="normal") == 3
    assert delta("reeve_pulses_failed_total", priority="normal") == 1
    assert delta("reeve_pulse_duration_seconds_count", priority="normal") == 3
    assert value(after, "reeve_queue_depth", status="completed") == 2
    assert value(after, "reeve_queue_depth", status="failed") == 1
    # Twenty requests, whichever of the two gunicorn workers answered each: all are counted.
    assert total(after, "reeve_api_request_duration_seconds_count", endpoint="/api/status") == 20
    writers = {p.name.rsplit("_", 1)[-1] for p in (live_reeve.home.path / "metrics").glob("*.db")}
    assert len(writers) >= 2, writers  # the worker process and at least one web worker


def test_a_fresh_start_drops_metric_files_of_dead_processes_and_keeps_live_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    metrics.prepare_multiproc_dir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "metrics" / f"counter_{dead.pid}.db"
    live = tmp_path / "metrics" / f"counter_{os.getpid()}.db"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    metrics.prepare_multiproc_dir()
    assert (stale.exists(), live.exists()) == (False, True)


def test_a_gauge_says_while_the_agent_cannot_run_and_the_queue_holds(client, db):
    from pulses import agent_hold
    from pulses.agent.readiness import AgentUnavailable

    assert value(samples(client.get("/metrics").content.decode()), "reeve_agent_held", reason="") == 0
    agent_hold.hold(AgentUnavailable(reason="usage_limit", problem="the usage limit is reached", fix=""))
    held = samples(client.get("/metrics").content.decode())
    assert value(held, "reeve_agent_held", reason="usage_limit") == 1
    agent_hold.end(by="test")
    assert (
        value(samples(client.get("/metrics").content.decode()), "reeve_agent_held", reason="usage_limit") == 0
    )


@pytest.mark.django_db
def test_reeve_healthy_and_the_oldest_overdue_pulse_follow_the_watchdog(client, settings):
    from datetime import timedelta

    from django.utils import timezone

    from tests.support.reeve_processes import FAKE_AGENT_COMMAND

    settings.PULSE_OVERDUE_ALERT_MINUTES = 10
    settings.HAPI_COMMAND = FAKE_AGENT_COMMAND  # an agent that can run
    healthy = samples(client.get("/metrics").content.decode())
    assert value(healthy, "reeve_healthy") == 1
    assert value(healthy, "reeve_oldest_overdue_seconds") == 0
    PulseFactory(scheduled_at=timezone.now() - timedelta(minutes=12))
    late = samples(client.get("/metrics").content.decode())
    assert value(late, "reeve_healthy") == 0
    assert 12 * 60 <= value(late, "reeve_oldest_overdue_seconds") < 13 * 60
