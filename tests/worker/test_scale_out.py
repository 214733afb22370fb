"""Several worker processes on one database, two of them killed with -9 part-way: exactly once."""

import signal
from collections import Counter

import pytest

from tests.support.reeve_processes import ROOT

pytestmark = pytest.mark.slow

NOOP_AGENT = str(ROOT / "bench" / "noop_agent.sh")
PULSES = 2000


def completed(home) -> int:
    return home.query("SELECT COUNT(*) FROM pulses WHERE status = 'completed'")[0][0]


def running_on(home, pid: int) -> int:
    """How many pulses the worker process `pid` holds a lease on."""
    return home.query(
        "SELECT COUNT(*) FROM pulses WHERE status = 'processing' AND lease_owner LIKE ?", (f"%:{pid}",)
    )[0][0]


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
        "HAPI_COMMAND": NOOP_AGENT,
        "NOOP_AGENT_LOG": str(noop_log),
        "NOOP_AGENT_SECONDS": "0.02",  # long enough that a worker killed at random is mid-run
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

    assert reeve_home.query("SELECT status, COUNT(*) FROM pulses GROUP BY status") == [("completed", PULSES)]
    starts = Counter(noop_log.read_text().split())
    rows = {
        str(pid): (n, first_error)
        for pid, n, first_error in reeve_home.query(
            "SELECT pulse_id, COUNT(*), MAX(CASE WHEN succeeded THEN NULL ELSE error END) "
            "FROM pulse_attempts GROUP BY pulse_id"
        )
    }
    assert len(rows) == PULSES and set(starts) == set(rows)
    for pulse_id, (attempts, error) in rows.items():
        ran = starts[pulse_id]
        # One agent start per recorded attempt; a pulse claimed by a killed worker just before it
        # could start the agent has a "lease expired" attempt with no start.
        lost_before_start = ran == attempts - 1 and (error or "").startswith("lease expired")
        assert ran == attempts or lost_before_start, pulse_id
    succeeded = reeve_home.query("SELECT COUNT(*) FROM pulse_attempts WHERE succeeded")[0][0]
    assert succeeded == PULSES
    retried = sum(1 for attempts, _ in rows.values() if attempts > 1)
    assert retried >= 1  # the killed workers really were running something


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
