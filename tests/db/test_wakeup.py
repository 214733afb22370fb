"""An idle worker is woken by a commit from any writer, through the kernel rather than a timer.

Each test sets every periodic wake-up of the worker (heartbeat, lease recovery, the safety poll) to an
hour, waits until the worker sleeps, and commits a pulse from another process: a pulse that runs
within the test's wait was picked up because its commit woke the worker (inotify on SQLite's WAL,
NOTIFY on PostgreSQL). The last test turns the safety poll back on for a writer that sends nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time

import pytest

from tests.api.test_api_live import LiveReeve
from tests.support.reeve_processes import ReeveHome, on_postgres
from tests.tools.test_mcp_server import call, text

pytestmark = pytest.mark.slow

ASLEEP_FOR_AN_HOUR = {
    "PULSE_HEARTBEAT_SECONDS": "3600",
    "PULSE_LEASE_SECONDS": "7200",  # leases are recovered every half of it
    "PULSE_POLL_SECONDS": "3600",
}


def start_idle_worker(home: ReeveHome, **env: str):
    worker = home.start("run_pulse_worker", **{**ASLEEP_FOR_AN_HOUR, **env})
    wait_until_asleep(home, worker)
    return worker


def wait_until_asleep(home: ReeveHome, proc) -> None:
    """The worker has heartbeated, claimed nothing and gone to sleep (its first loop is done)."""
    home.wait_for(lambda: home.query("SELECT count(*) FROM pulse_workers") == [(1,)], what="a heartbeat")
    time.sleep(0.5)  # past the first claim, into select()
    assert proc.poll() is None, home.output(proc)


def wait_for_run(home: ReeveHome, prompt: str) -> None:
    home.wait_for(
        lambda: any(start["argv"][-1] == prompt for start in home.agent_starts()),
        timeout=30,
        what=f"the agent to run {prompt!r}",
    )
    home.wait_for(
        lambda: home.query("SELECT status FROM pulses WHERE prompt = ?", (prompt,)) == [("completed",)],
        what=f"{prompt!r} to complete",
    )


def test_a_pulse_triggered_through_the_api_wakes_the_idle_worker_of_reeve_start(reeve_home):
    live = LiveReeve(reeve_home).start(**ASLEEP_FOR_AN_HOUR)
    try:
        wait_until_asleep(reeve_home, live.proc)
        status, _ = live.request("POST", "/api/pulse/trigger", {"prompt": "through the api"})
        assert status == 201
        wait_for_run(reeve_home, "through the api")
    finally:
        live.stop()


def test_a_pulse_from_trigger_pulse_wakes_the_idle_worker(reeve_home):
    start_idle_worker(reeve_home)
    reeve_home.manage("trigger_pulse", "from the command line")
    wait_for_run(reeve_home, "from the command line")


def test_a_telegram_message_wakes_the_idle_worker(reeve_home, fake_telegram):
    reeve_home.extra_env.update(fake_telegram.env(42))
    listener = reeve_home.start("run_telegram_listener", "--poll-timeout", "5")
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the listener's first poll")
    start_idle_worker(reeve_home)
    fake_telegram.send_text(42, "water the plants")
    home_prompts = lambda: [r[0] for r in reeve_home.query("SELECT prompt FROM pulses")]  # noqa: E731
    reeve_home.wait_for(lambda: home_prompts(), what="the listener's pulse")
    wait_for_run(reeve_home, home_prompts()[0])
    assert listener.poll() is None


def test_a_pulse_the_agent_schedules_over_mcp_wakes_the_idle_worker(reeve_home):
    start_idle_worker(reeve_home)
    try:  # the tool server writes through the API, a web process `call` starts for this home
        result = call(reeve_home, "schedule_pulse", {"prompt": "from the agent's tool", "when": "now"})
        assert not result.is_error, text(result)
        wait_for_run(reeve_home, "from the agent's tool")
    finally:
        if live := getattr(reeve_home, "live", None):
            live.stop()


@pytest.mark.skipif(on_postgres(), reason="a SQLite file written by the sqlite3 shell")
def test_a_row_inserted_by_a_plain_sqlite3_shell_wakes_the_idle_worker(reeve_home):
    start_idle_worker(reeve_home)
    insert_by_hand(reeve_home, "typed into sqlite3")
    wait_for_run(reeve_home, "typed into sqlite3")


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL: an INSERT without NOTIFY")
def test_a_row_inserted_without_notify_is_found_by_the_safety_poll(reeve_home):
    start_idle_worker(reeve_home, PULSE_POLL_SECONDS="1")
    insert_by_hand(reeve_home, "typed into psql")
    wait_for_run(reeve_home, "typed into psql")


def insert_by_hand(home: ReeveHome, prompt: str) -> None:
    """What a person would type into `sqlite3 pulse_queue.db` or `psql`: no Reeve code involved."""
    columns = (
        "prompt, scheduled_at, priority, status, session_id, sticky_notes, tags, source, created_at, "
        "error_message, attempt_count, max_retries, lease_owner"
    )
    now = "CURRENT_TIMESTAMP"
    values = f"?, {now}, 'normal', 'pending', '', '[]', '[]', 'manual', {now}, '', 0, 0, ''"
    if on_postgres():
        home.query(f"INSERT INTO pulses ({columns}) VALUES ({values})", (prompt,))
        return
    if shell := shutil.which("sqlite3"):
        sql = f"INSERT INTO pulses ({columns}) VALUES ({values.replace('?', repr(prompt))});"
        subprocess.run([shell, str(home.db_path), sql], check=True, timeout=30)
        return
    conn = sqlite3.connect(home.db_path, timeout=30)  # the library the shell is made of: no Reeve code
    with conn:
        conn.execute(f"INSERT INTO pulses ({columns}) VALUES ({values})", (prompt,))
    conn.close()
