"""Several worker processes on one database, two of them killed with -9 part-way: exactly once."""

import signal

import pytest

from tests.support.reeve_processes import assert_every_pulse_ran_once, noop_agent_env, running_on

pytestmark = pytest.mark.slow

PULSES = 2000


def completed(home) -> int:
    return home.query("SELECT COUNT(*) FROM pulses WHERE status = 'completed'")[0][0]


@pytest.mark.slow(weight=14)  # ~28 CPU-s, a dozen ordinary process tests' worth (tests/conftest.py)
def test_four_workers_with_two_killed_run_every_pulse_exactly_once_per_attempt(reeve_home):
    reeve_home.manage(
        "shell",
        "-c",
        (
            "from pulses import queue\n"
            f"for i in range({PULSES}):\n"
            "    queue.schedule(prompt=f'pulse {i}', priority=['critical', 'high', 'normal', 'low'][i % 4])\n"
        ),
    )
    noop_log = reeve_home.path / "noop.log"
    env = {
        # Runs long enough that a worker killed at random is mid-run.
        **noop_agent_env(noop_log, seconds=0.02),
        "PULSE_MAX_CONCURRENT": "2",
        "LOG_LEVEL": "WARNING",
    }
    workers = [reeve_home.start("run_pulse_worker", **env) for _ in range(4)]
    reeve_home.wait_for(lambda: completed(reeve_home) >= PULSES // 4, timeout=240, what="a quarter done")
    for victim in workers[:2]:
        pid = victim.pid
        reeve_home.wait_for(lambda pid=pid: running_on(reeve_home, pid), timeout=60, what="a run to kill")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    workers += [reeve_home.start("run_pulse_worker", **env) for _ in range(2)]
    reeve_home.wait_for(
        lambda: completed(reeve_home) == PULSES, timeout=600, interval=0.5, what="every pulse to complete"
    )
    for worker in workers[2:]:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0

    assert_every_pulse_ran_once(reeve_home, noop_log, PULSES)


def test_workers_never_run_two_pulses_of_one_session_at_once(reeve_home):
    sessions, per_session, free = 4, 12, 24
    reeve_home.manage(
        "shell",
        "-c",
        (
            "from pulses import queue\n"
            f"for i in range({per_session}):\n"
            f"    for s in range({sessions}):\n"
            "        session = f'5e55105e-0000-4000-8000-{s:012d}'  # a session id is a UUID\n"
            "        queue.schedule(prompt=f'mode=sleep:0.03 s{s} #{i}', session_id=session)\n"
            f"for i in range({free}):\n"
            "    queue.schedule(prompt=f'mode=noop free #{i}')\n"
        ),
    )
    total = sessions * per_session + free
    env = {"PULSE_MAX_CONCURRENT": "3", "LOG_LEVEL": "WARNING"}
    workers = [reeve_home.start("run_pulse_worker", **env) for _ in range(3)]
    reeve_home.wait_for(lambda: completed(reeve_home) == total, timeout=300, interval=0.2, what="all pulses")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0

    def overlapping(same_session: bool) -> list[tuple]:
        return reeve_home.query(
            "SELECT p.session_id, a.pulse_id, b.pulse_id FROM pulse_attempts a "
            "JOIN pulses p ON p.id = a.pulse_id "
            "JOIN pulse_attempts b ON b.id <> a.id JOIN pulses q ON q.id = b.pulse_id "
            f"WHERE p.session_id {'=' if same_session else '<>'} q.session_id "
            "AND p.session_id LIKE ? AND q.session_id LIKE ? "
            "AND a.started_at < b.finished_at AND b.started_at < a.finished_at",
            ("5e55105e-%", "5e55105e-%"),
        )

    assert overlapping(same_session=True) == []
    assert overlapping(same_session=False)  # different sessions did run side by side
    per_pulse = reeve_home.query("SELECT COUNT(*), COUNT(DISTINCT pulse_id) FROM pulse_attempts")
    assert per_pulse == [(total, total)]
