"""Issue 11, black-box: what a pulse's author (an API client, a command, the admin, the agent's own
stream) may hand to Reeve. Real gunicorn over HTTP, real commands, the real worker with the fake agent."""

from __future__ import annotations

import pytest

from tests.reeve_processes import on_postgres
from tests.test_api_live import LiveReeve

SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"
OPTION_LIKE_SESSIONS = ("--mcp-config=evil.json", "-r", "sess-1", f"{SESSION}\n--verbose")


@pytest.fixture
def web(reeve_home):
    live = LiveReeve(reeve_home).start(web_only=True)
    yield live
    live.stop()


@pytest.fixture
def web_new_york(reeve_home):
    reeve_home.extra_env["TIME_ZONE"] = "America/New_York"  # the web process and the commands
    live = LiveReeve(reeve_home).start(web_only=True)
    yield live
    live.stop()


# --- session ids: only what the agent CLI accepts ---------------------------------------------------
@pytest.mark.slow
def test_the_api_refuses_a_session_id_the_agent_cli_would_read_as_an_option(web):
    for session_id in OPTION_LIKE_SESSIONS:
        status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "hi", "session_id": session_id})
        assert status == 400, (session_id, body)
        assert "session_id" in body["errors"] and "UUID" in body["errors"]["session_id"][0]
    assert web.home.query("SELECT count(*) FROM pulses") == [(0,)]
    status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "hi", "session_id": SESSION})
    assert (status, body["session_id"]) == (201, SESSION)
    status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "hi", "session_id": ""})
    assert (status, body["session_id"]) == (201, "")


@pytest.mark.slow
def test_trigger_pulse_refuses_an_option_like_session_with_a_command_error(reeve_home):
    proc = reeve_home.manage("trigger_pulse", "hi", "--session=--mcp-config=evil.json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--session" in proc.stderr and "UUID" in proc.stderr
    assert reeve_home.query("SELECT count(*) FROM pulses") == [(0,)]
    reeve_home.manage("trigger_pulse", "hi", "--session", SESSION.upper())
    assert reeve_home.query("SELECT session_id FROM pulses") == [(SESSION.upper(),)]


@pytest.mark.slow
def test_a_session_id_the_agent_announces_is_stored_only_when_the_cli_would_accept_it(reeve_home):
    reeve_home.manage("trigger_pulse", "mode=announce:--mcp-config=evil.json")
    reeve_home.manage("trigger_pulse", f"mode=announce:{SESSION}")
    reeve_home.manage("run_pulse_worker", "--once")
    rows = reeve_home.query("SELECT prompt, status, session_id FROM pulses ORDER BY id")
    assert rows == [
        ("mode=announce:--mcp-config=evil.json", "completed", ""),
        (f"mode=announce:{SESSION}", "completed", SESSION),
    ]
    attempts = reeve_home.query("SELECT session_id FROM pulse_attempts ORDER BY pulse_id")
    assert attempts == [("",), (SESSION,)]
    assert "agent_session_id_refused" in (reeve_home.path / "logs" / "daemon.log").read_text()


# --- times: bounded, clock times real, nothing stored breaks a listing ------------------------------
@pytest.mark.slow
def test_times_outside_2000_to_9000_are_a_400_naming_the_range(web):
    for when in (
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "1999-06-01T00:00:00Z",
        "in 2900000 days",
    ):
        status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": when})
        assert status == 400, (when, body)
        assert "years 2000 to 9000" in body["errors"]["scheduled_at"][0]
    status, body = web.request(
        "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "2031-01-01T09:00Z"}
    )
    assert status == 201
    status, body = web.request(
        "POST", f"/api/pulses/{body['id']}/reschedule", {"scheduled_at": "9999-12-31T23:59:59-14:00"}
    )
    assert status == 400 and "years 2000 to 9000" in body["errors"]["scheduled_at"][0]


@pytest.mark.slow
def test_a_time_that_leaves_the_range_only_in_time_zone_is_a_400(web_new_york):
    status, body = web_new_york.request(
        "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "2000-01-01T00:00:00Z"}
    )
    assert status == 400 and "years 2000 to 9000" in body["errors"]["scheduled_at"][0]
    assert (
        web_new_york.request(
            "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "0001-01-01T00:00:00Z"}
        )[0]
        == 400
    )
    assert web_new_york.home.query("SELECT count(*) FROM pulses") == [(0,)]


@pytest.mark.slow
def test_an_impossible_clock_time_is_a_400_not_the_current_time(web):
    for when in ("tomorrow at 25:00", "tomorrow at 9:75", "tomorrow at 13pm", "tomorrow 24:00"):
        status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": when})
        assert status == 400, (when, body)
        assert "not a time of day" in body["errors"]["scheduled_at"][0]
    status, body = web.request(
        "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "tomorrow at 23:30"}
    )
    assert status == 201 and "T23:30:00" in body["scheduled_at"]


@pytest.mark.slow
def test_a_time_stored_before_the_bounds_never_breaks_a_listing(web_new_york):
    web = web_new_york
    status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "old row", "scheduled_at": "now"})
    assert status == 201
    year_one = "0001-01-01 00:00:00" + ("+00" if on_postgres() else "")  # as each database stores it
    web.home.query("UPDATE pulses SET scheduled_at = ? WHERE id = ?", (year_one, body["id"]))
    for path in (
        "/api/pulses",
        "/api/pulses?status=overdue",
        "/api/pulse/upcoming",
        f"/api/pulses/{body['id']}",
    ):
        status, page = web.request("GET", path)
        assert status == 200, (path, page)
        assert "0001-01-01T00:00:00Z" in str(page)
    listing = web.home.manage("pulse_queue", "all", check=False)
    assert listing.returncode == 0 and "old row" in listing.stdout, listing.stderr


# --- lease_lost means what it says --------------------------------------------------------------------
@pytest.mark.slow
def test_runs_that_finish_normally_never_log_lease_lost(reeve_home):
    """Short leases renew every 0.2 s while four runs at a time finish: a finished run that the loop
    has not reaped yet is not a lost lease."""
    reeve_home.extra_env.update(PULSE_LEASE_SECONDS="0.6", PULSE_MAX_CONCURRENT="4")
    reeve_home.migrate()
    for _ in range(4):
        reeve_home.manage("shell", "-c", SCHEDULE_MANY)
    reeve_home.manage("run_pulse_worker", "--once", timeout=300)
    assert reeve_home.query("SELECT status, count(*) FROM pulses GROUP BY status") == [("completed", 60)]
    log = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert "lease_lost" not in log


@pytest.mark.slow
def test_a_lease_another_worker_took_over_is_logged_as_lease_lost(reeve_home):
    reeve_home.extra_env.update(PULSE_LEASE_SECONDS="0.6")
    reeve_home.manage("trigger_pulse", "mode=sleep:3")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT status FROM pulses") == [("processing",)], what="the run"
    )
    reeve_home.query("UPDATE pulses SET lease_owner = 'other-host:1', attempts = attempts + 1")
    reeve_home.wait_for(lambda: "lease_lost id=1 " in reeve_home.output(worker), what="lease_lost")
    worker.terminate()
    worker.wait(timeout=30)


SCHEDULE_MANY = "\n".join(
    [
        "from pulses import queue",
        "for i in range(15): queue.schedule(prompt=f'mode=sleep:0.{i % 3} run {i}')",
    ]
)
