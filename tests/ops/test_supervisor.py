"""`./reeve start` (`manage.py run_reeve`) as a user stops it, or as it dies: nothing of it outlives it,
and one installation runs one Reeve."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.api.test_api_live import LiveReeve, _children
from tests.support.reeve_processes import ROOT, ReeveHome, process_alive

pytestmark = pytest.mark.slow

GRACE = 10  # PULSE_SHUTDOWN_GRACE_SECONDS in ReeveHome.env


def port_free(port: int) -> bool:
    """A server could listen there now (with SO_REUSEADDR, as gunicorn does: the test's own closed
    connections may linger in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def all_gone(pids: list[int]) -> bool:
    return not [pid for pid in pids if process_alive(pid)]


def trigger(live: LiveReeve, prompt: str) -> int:
    status, body = live.request("POST", "/api/pulse/trigger", {"prompt": prompt})
    assert status == 201, body
    return body["id"]


def start_a_run(live: LiveReeve, mode: str) -> tuple[int, list[int]]:
    """Trigger a pulse the fake agent runs in `mode`; once the agent started: the pulse's id and
    every process of that Reeve."""
    pulse_id = trigger(live, mode)
    live.wait_for(lambda: live.home.agent_starts(), what="the agent to start")
    return pulse_id, _children(live.proc.pid)


def status_of(home: ReeveHome, pulse_id: int) -> str:
    return home.query("SELECT status FROM pulses WHERE id = ?", (pulse_id,))[0][0]


def test_sighup_drains_the_running_pulse_and_leaves_no_process_and_a_free_port(reeve_home):
    live = LiveReeve(reeve_home, web_workers=2).start()
    try:
        pulse_id, tree = start_a_run(live, "mode=sleep:2")
        assert len(tree) >= 4, tree  # gunicorn's master and 2 workers, the reaper, the agent
        live.proc.send_signal(signal.SIGHUP)  # the terminal closed
        assert live.proc.wait(timeout=GRACE + 15) == 0
        reeve_home.wait_for(lambda: all_gone(tree), timeout=5, what="every process of that Reeve to exit")
        assert port_free(live.port)
        assert status_of(reeve_home, pulse_id) == "completed"
    finally:
        live.stop()


def test_ctrl_c_with_a_pulse_running_keeps_the_api_answering_until_that_pulse_has_finished(reeve_home):
    live = LiveReeve(reeve_home).start()
    try:
        pulse_id, _tree = start_a_run(live, "mode=sleep:4")
        live.proc.send_signal(signal.SIGINT)  # Ctrl+C
        answered = 0
        # The agent's tools call the API while it drains: it answers (authenticated) until the end.
        while status_of(reeve_home, pulse_id) == "processing":
            status, body = live.request("GET", f"/api/pulses/{pulse_id}")
            assert status == 200, body
            answered += 1
            time.sleep(0.2)
        assert status_of(reeve_home, pulse_id) == "completed"
        assert answered >= 5  # ~4 s of the run were left
        assert live.proc.wait(timeout=GRACE + 15) == 0  # then gunicorn stops, and Reeve with it
        assert port_free(live.port)
    finally:
        live.stop()


def test_sigkill_leaves_no_process_and_the_next_start_runs_the_interrupted_pulse_at_once(reeve_home):
    reeve_home.extra_env["PULSE_LEASE_SECONDS"] = "120"  # a lease wait would outlast the test
    live = LiveReeve(reeve_home).start()
    try:
        pulse_id, tree = start_a_run(live, "mode=sleep:300")
        live.proc.kill()  # kill -9, or the OOM killer
        live.proc.wait(timeout=10)
        reeve_home.wait_for(
            lambda: all_gone(tree), timeout=GRACE + 2, what="every process of that Reeve to exit"
        )
        assert port_free(live.port)
        assert status_of(reeve_home, pulse_id) == "processing"  # nobody could record it

        again = LiveReeve(reeve_home, port=live.port).start()
        try:
            # The instance lock it took proves the old worker gone: no wait for the 120 s lease.
            again.wait_for(
                lambda: len(reeve_home.agent_starts()) == 2, timeout=30, what="the pulse to run again"
            )
            assert reeve_home.query("SELECT attempt_count FROM pulses WHERE id = ?", (pulse_id,)) == [(2,)]
            [(error, worker)] = reeve_home.query(
                "SELECT error, worker FROM pulse_attempts WHERE pulse_id = ?", (pulse_id,)
            )
            assert error.startswith(f"interrupted: worker {worker} died") and worker.endswith(
                f":{live.proc.pid}"
            )
        finally:
            again.stop()
    finally:
        live.stop()


# A migration the database has not recorded, as after `git pull` brought a new one: a start would apply it.
UPGRADE = ("auth", "0012_alter_user_first_name_max_length")


def schema(home: ReeveHome) -> list[tuple]:
    """The migrations the database recorded and its tables' definitions."""
    applied = home.query("SELECT app, name FROM django_migrations ORDER BY app, name")
    if home.database_url:
        tables = home.query(
            "SELECT table_name, column_name, data_type, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2"
        )
    else:
        tables = home.query("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    return [*applied, *tables]


def test_a_second_start_exits_1_naming_the_running_one_and_starts_once_it_has_stopped(reeve_home):
    first = LiveReeve(reeve_home).start()
    try:
        reeve_home.query("DELETE FROM django_migrations WHERE app = ? AND name = ?", UPGRADE)
        before = schema(reeve_home)
        # As the person runs it: ./reeve start, which migrates, but only once it holds the installation.
        second = subprocess.run(
            [str(ROOT / "reeve"), "start"],
            env={**first.env(), "UV_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert schema(reeve_home) == before  # refused before it touched the database
        assert "Operations to perform" not in second.stdout and "Applying" not in second.stdout
        assert "already running" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        assert f"127.0.0.1:{first.port}" in second.stderr  # the API it serves
        assert f"kill {first.proc.pid}" in second.stderr  # how to stop it
        assert "Traceback" not in second.stderr

        worker = reeve_home.manage("run_pulse_worker", check=False, timeout=60)
        assert worker.returncode == 1 and f"pid {first.proc.pid}" in worker.stderr
    finally:
        assert first.interrupt() == 0

    again = LiveReeve(reeve_home, port=first.port).start()
    again.stop()


def test_a_second_worker_on_purpose_may_run_but_reeve_start_is_refused_beside_it(reeve_home):
    workers = [reeve_home.start("run_pulse_worker") for _ in range(2)]
    reeve_home.wait_for(lambda: reeve_home.query("SELECT count(*) FROM pulse_workers") == [(2,)], what="both")
    refused = reeve_home.manage("run_reeve", check=False, timeout=60)
    assert refused.returncode == 1
    assert all(f"pid {worker.pid}" in refused.stderr for worker in workers)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0


def test_reeve_start_stops_when_its_web_process_dies_and_says_so(reeve_home):
    live = LiveReeve(reeve_home).start()
    try:
        [gunicorn] = [
            pid
            for pid in _children(live.proc.pid)
            if b"gunicorn" in cmdline(pid) and ppid(pid) == live.proc.pid
        ]
        os.kill(gunicorn, signal.SIGKILL)
        code = live.proc.wait(timeout=GRACE + 15)
        assert code != 0
        assert "reeve_process_exited name=web" in live.log.read_text()
    finally:
        live.stop()


def test_a_port_another_program_holds_is_one_error_naming_pulse_api_port(reeve_home, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        reeve_home.extra_env["PULSE_API_PORT"] = str(port)
        start = reeve_home.manage("run_reeve", check=False, timeout=60)
        assert start.returncode == 1
        assert f"127.0.0.1:{port} is already in use" in start.stderr
        assert start.stderr.count("PULSE_API_PORT") == 1 and "Connection in use" not in start.stderr
        assert "Traceback" not in start.stderr
        # The web unit's way in (gunicorn alone) says the same once, and stops at once.
        web = subprocess.run(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=reeve_home.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert web.returncode != 0
        assert f"127.0.0.1:{port} is already in use" in web.stderr
        assert "Connection in use" not in web.stderr and web.stderr.count("PULSE_API_PORT") == 1
