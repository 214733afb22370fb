"""The queue paused with `manage.py queue pause --until`, seen by the real `run_pulse_worker` process:
with a due pulse and a due routine fire, nothing is claimed (the fire is still recorded), and the
claims start by themselves at the pause's end, without a wake-up from anyone."""

import signal
import time
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.slow

PAUSE_SECONDS = 5.0  # from the command that sets the end: its own start takes a second or two


def statuses(home) -> dict[str, int]:
    return dict(home.query("SELECT status, COUNT(*) FROM pulses GROUP BY status"))


def test_a_paused_queue_claims_nothing_with_due_work_and_resumes_at_its_end(reeve_home):
    home = reeve_home
    out = home.manage("queue", "pause", "--reason", "maintenance").stdout
    assert out.startswith("Paused: the queue is paused until resumed")
    home.manage("trigger_pulse", "due while paused")
    home.manage("routine", "add", "tick", "every 1 hour", "a routine fire while paused")
    home.query("UPDATE pulse_routines SET next_fire_at = CURRENT_TIMESTAMP WHERE name = 'tick'")
    worker = home.start("run_pulse_worker")
    home.wait_for(
        lambda: home.query("SELECT COUNT(*) FROM pulses WHERE source = 'routine'") == [(1,)],
        what="the routine's fire recorded while paused",
    )
    time.sleep(0.5)  # the worker goes on looking: still nothing claimed
    assert statuses(home) == {"pending": 2}

    until = time.time() + PAUSE_SECONDS
    home.manage("queue", "pause", "--until", datetime.fromtimestamp(until, UTC).isoformat())
    time.sleep(max(until - time.time() - 0.3, 0))
    assert statuses(home) == {"pending": 2}  # just before the end: nothing claimed
    assert home.agent_starts() == []

    home.wait_for(lambda: statuses(home) == {"completed": 2}, timeout=30, what="both pulses to run")
    first_start = min(start["t"] for start in home.agent_starts())
    assert until - 0.05 <= first_start <= until + 1.5, first_start - until  # claimed within a second
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    log = home.output(worker)
    assert "worker_queue_paused" in log and "queue_resumed by=until" in log
    assert "worker_queue_resumed" in log
