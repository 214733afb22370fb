"""Routines fired by several worker processes at once, some killed with -9 part-way: each fire is one
pulse and one agent run (3 workers on PostgreSQL, 2 on SQLite)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.reeve_processes import assert_every_pulse_ran_once, noop_agent_env, on_postgres, running_on

pytestmark = pytest.mark.slow

ROUTINES = 20
ROUNDS = 10
KILL_AT = (3, 6)  # rounds after which a worker is killed with -9 while it runs agents


def routine_pulses(home) -> int:
    return home.query("SELECT COUNT(*) FROM pulses WHERE routine_id IS NOT NULL")[0][0]


def finished(home) -> int:
    return home.query("SELECT COUNT(*) FROM pulses WHERE status IN ('completed', 'failed')")[0][0]


def fire_all_together(home) -> None:
    """Make every routine due a second from now, at one instant: the clock of this test."""
    at = datetime.now(UTC) + timedelta(seconds=1)
    value = at if home.database_url else at.strftime("%Y-%m-%d %H:%M:%S.%f")
    home.query("UPDATE pulse_routines SET next_fire_at = ? WHERE name LIKE ?", (value, "together-%"))
    if home.database_url:  # what the queue's own writes send; SQLite's workers see the write itself
        home.query("NOTIFY reeve_pulses")


def test_routines_firing_together_on_several_workers_some_killed_make_one_pulse_and_one_run_per_fire(
    reeve_home,
):
    priorities = ["critical", "high", "normal", "low"]
    reeve_home.manage(
        "shell",
        "-c",
        (
            "from pulses.routines import changes\n"
            f"for i in range({ROUTINES}):\n"
            f"    changes.create(name=f'together-{{i:02}}', prompt=f'routine {{i}}',"
            f" schedule='every 1 minutes', priority={priorities!r}[i % 4], max_retries=5)\n"
        ),
    )
    noop_log = reeve_home.path / "noop.log"
    env = {
        # Runs long enough that a worker killed at random is mid-run.
        **noop_agent_env(noop_log, seconds=0.3),
        "PULSE_MAX_CONCURRENT": "4",
        "PULSE_LEASE_SECONDS": "2",  # a killed worker's runs come back quickly
        "LOG_LEVEL": "WARNING",
    }
    count = 3 if on_postgres() else 2
    workers = [reeve_home.start("run_pulse_worker", **env) for _ in range(count)]
    for round_ in range(ROUNDS):
        fire_all_together(reeve_home)
        made = ROUTINES * (round_ + 1)
        reeve_home.wait_for(
            lambda made=made: routine_pulses(reeve_home) >= made, timeout=60, what=f"round {round_}"
        )
        if round_ in KILL_AT:

            def busy_worker():
                return next((w for w in workers if w.poll() is None and running_on(reeve_home, w.pid)), None)

            victim = reeve_home.wait_for(
                busy_worker, timeout=60, interval=0.01, what="a worker running agents"
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            workers.append(reeve_home.start("run_pulse_worker", **env))
    reeve_home.query("UPDATE pulse_routines SET enabled = ? WHERE name LIKE ?", (False, "together-%"))
    total = ROUTINES * ROUNDS
    reeve_home.wait_for(lambda: finished(reeve_home) == total, timeout=300, interval=0.3, what="every run")
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0

    # One pulse per fire: 200 pulses, 200 distinct (routine, fire time), ten fire times per routine.
    rows = reeve_home.query(
        "SELECT routine_id, COUNT(*), COUNT(DISTINCT fire_at) FROM pulses WHERE routine_id IS NOT NULL "
        "GROUP BY routine_id"
    )
    assert sorted(n for _, n, _ in rows) == [ROUNDS] * ROUTINES
    assert all(n == distinct for _, n, distinct in rows)
    assert reeve_home.query("SELECT COUNT(*) FROM pulses") == [(total,)]
    assert_every_pulse_ran_once(reeve_home, noop_log, total)
