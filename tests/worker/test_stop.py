"""Stopping a running pulse (issue 33) with real processes: a worker running the fake agent, whose run
started two children that ignore SIGTERM, is asked to stop it from a surface; the run ends within the
grace (SIGTERM to the group, SIGKILL after KILL_GRACE_SECONDS, as a drain), no process of the run is
left, and the attempt names who stopped it. One test per surface; what each surface stores, the
`--retry` path and the wake-up of a busy worker are proved in-process (tests/core/test_stops.py,
tests/worker/test_worker.py, the surfaces' own tests)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from pulses.agent.process_groups import KILL_GRACE_SECONDS
from tests.support.reeve_processes import ReeveHome, process_alive
from tests.worker.test_express_lane import schedule

pytestmark = pytest.mark.slow

# How long a stopped run may take past the grace (the worker's wake-up, the record): generous, the
# machine is shared; the latency itself is printed.
SLACK_SECONDS = 10.0


@pytest.fixture
def home(reeve_home: ReeveHome) -> ReeveHome:
    reeve_home.extra_env["FAKE_AGENT_END_LOG"] = str(reeve_home.path / "agent-ends.log")
    return reeve_home


def run_processes(home: ReeveHome, pulse_id: int) -> list[int]:
    """The live processes of pulse `pulse_id`'s run in `home`: the agent and whatever it started, found
    by the environment they inherit (the run's pulse id, this home's agent log)."""
    wanted = {f"REEVE_PULSE_ID={pulse_id}".encode(), f"FAKE_AGENT_LOG={home.agent_log}".encode()}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environment = set(fh.read().split(b"\0"))
        except OSError:
            continue
        if wanted <= environment and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def started_with_children(home: ReeveHome, pulse_id: int) -> list[int]:
    """Wait until the run of `pulse_id` has its agent and the agent's two children; their pids."""
    return home.wait_for(
        lambda: (pids := run_processes(home, pulse_id)) and len(pids) >= 3 and pids,
        what=f"pulse {pulse_id}'s agent and its two children",
    )


def ends(home: ReeveHome, pulse_id: int) -> list[dict]:
    path = home.path / "agent-ends.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [end for end in map(json.loads, lines) if end["pulse_id"] == str(pulse_id)]


def assert_stopped(home: ReeveHome, pulse_id: int, pids: list[int], *, who: str, asked: float) -> None:
    """The pulse ended cancelled within the grace (and the slack), nothing of its run is left, and its
    one attempt says who stopped it."""
    home.wait_for(
        lambda: home.query("SELECT status FROM pulses WHERE id = ?", (pulse_id,)) == [("cancelled",)],
        timeout=KILL_GRACE_SECONDS + SLACK_SECONDS,
        interval=0.02,
        what=f"pulse {pulse_id} to end cancelled",
    )
    print(f"stop of pulse {pulse_id} by {who}: stored -> cancelled in {time.monotonic() - asked:.3f} s")
    assert [pid for pid in pids if process_alive(pid)] == [] and run_processes(home, pulse_id) == []
    # The agent ignored the SIGTERM it was sent: only the SIGKILL after the grace ended it.
    assert [end.get("ignored") for end in ends(home, pulse_id)] == [True]
    attempts = home.query(
        "SELECT number, succeeded, error FROM pulse_attempts WHERE pulse_id = ? ORDER BY id", (pulse_id,)
    )
    assert attempts == [(1, False, f"stopped by {who}")]
    assert home.query("SELECT attempt_count, error_message FROM pulses WHERE id = ?", (pulse_id,)) == [
        (1, f"stopped by {who}")
    ]


def stop(home: ReeveHome, worker) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, home.output(worker)


def test_stop_pulse_ends_the_run_its_agent_and_the_agents_children_within_the_grace(home):
    pulse = schedule(home, "mode=children_ignore_term", priority="normal")
    worker = home.start("run_pulse_worker")
    pids = started_with_children(home, pulse)

    out = home.manage("stop_pulse", str(pulse)).stdout
    asked = time.monotonic()
    assert f"Stopping pulse #{pulse}" in out
    assert_stopped(home, pulse, pids, who="command", asked=asked)
    stop(home, worker)
    log = home.output(worker)
    assert f"pulse_stopping id={pulse} by=command" in log and f"pulse_stopped id={pulse}" in log


# The admin's Stop button, pressed by a signed-in superuser in a process of its own (Django's test
# client in `manage.py shell`: the admin's view and the database, without a browser).
PRESS_STOP = """
from django.contrib.auth import get_user_model
from django.test import Client
user = get_user_model().objects.create_superuser("ann", "ann@example.com", "not-used-0123456789")
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
page = client.get("/admin/pulses/pulse/{id}/change/").content.decode()
assert 'id="reeve-stop"' in page, page[:2000]
print(client.post("/admin/pulses/pulse/{id}/stop/").status_code)
"""


def test_the_admins_stop_button_ends_the_run_and_names_the_admin(home):
    pulse = schedule(home, "mode=children_ignore_term", priority="normal")
    worker = home.start("run_pulse_worker")
    pids = started_with_children(home, pulse)

    out = home.manage("shell", "-c", PRESS_STOP.replace("{id}", str(pulse))).stdout
    asked = time.monotonic()
    assert out.strip().splitlines()[-1] == "302"
    assert_stopped(home, pulse, pids, who="admin ann", asked=asked)
    stop(home, worker)


def test_a_stop_through_the_api_reaches_the_one_of_two_workers_running_it_within_a_second(live_reeve):
    home = live_reeve.home
    home.extra_env["FAKE_AGENT_END_LOG"] = str(home.path / "agent-ends.log")
    live_reeve.start(web_only=True)
    stopped = schedule(home, "mode=children_ignore_term", priority="normal")
    other = schedule(home, "mode=sleep:120", priority="normal")
    # One ordinary slot each and none reserved: each worker waits with every slot busy.
    busy = {"PULSE_MAX_CONCURRENT": "1", "PULSE_CRITICAL_RESERVED": "0"}
    workers = [home.start("run_pulse_worker", **busy), home.start("run_pulse_worker", **busy)]
    pids = started_with_children(home, stopped)
    home.wait_for(lambda: run_processes(home, other), what="the other pulse's agent")
    owners = dict(home.query("SELECT id, lease_owner FROM pulses"))
    assert owners[stopped] != owners[other]  # one pulse on each worker

    sent = time.time()
    status, body = live_reeve.request("POST", f"/api/pulses/{stopped}/stop", {"retry": False})
    asked = time.monotonic()
    assert (status, body["status"]) == (202, "processing"), body
    [noted] = home.wait_for(lambda: ends(home, stopped), what="the agent's SIGTERM", interval=0.01)
    latency = noted["t"] - sent
    database = "PostgreSQL" if home.database_url else "SQLite"
    print(f"stop through the API -> the agent's SIGTERM: {latency:.3f} s on {database}")
    assert latency < 5.0  # issue 33 asks for a second; the bound is generous on a shared machine
    assert_stopped(home, stopped, pids, who="api token settings", asked=asked)
    # The other worker's run goes on.
    assert home.query("SELECT status FROM pulses WHERE id = ?", (other,)) == [("processing",)]
    assert live_reeve.request("POST", f"/api/pulses/{stopped}/stop", {})[0] == 409
    for worker in workers:
        stop(home, worker)


def test_slash_stop_in_telegram_stops_the_chats_running_pulse_and_says_which(home, fake_telegram):
    home.extra_env.update(fake_telegram.env(42))
    listener = home.start("run_telegram_listener", "--poll-timeout", "5")
    worker = home.start("run_pulse_worker")
    fake_telegram.send_text(42, "mode=children_ignore_term", name="Ada")
    [(pulse,)] = home.wait_for(
        lambda: home.query("SELECT id FROM pulses WHERE source = 'telegram'"), what="the message's pulse"
    )
    pids = started_with_children(home, pulse)

    fake_telegram.send_text(42, "/stop", name="Ada")
    reply = fake_telegram.wait_for(
        lambda: [text for text in fake_telegram.sent_texts if text.startswith("⏹")], what="the /stop reply"
    )
    asked = time.monotonic()
    assert reply == [
        f"⏹ Stopping pulse #{pulse}: Telegram message from Ada Lovelace: mode=children_ignore_term"
    ]
    assert_stopped(home, pulse, pids, who="telegram chat 42", asked=asked)
    fake_telegram.send_text(42, "/stop", name="Ada")
    fake_telegram.wait_for(
        lambda: "Nothing is running for this chat." in fake_telegram.sent_texts, what="the second reply"
    )
    stop(home, worker)
    stop(home, listener)
