"""The instance lock (pulses/ops/instance_lock.py) is found through whatever path names the database."""

from __future__ import annotations

import fcntl
import os

import pytest

from tests.support.reeve_processes import on_postgres

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        on_postgres(), reason="the lock sits beside the SQLite file; PostgreSQL's is in REEVE_HOME"
    ),
]


def test_a_pulse_db_path_symlinked_to_the_live_database_meets_the_same_lock(reeve_home, tmp_path):
    live_lock = reeve_home.db_path.with_name(f"{reeve_home.db_path.name}.instance-lock")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = elsewhere / "queue.db"
    link.symlink_to(reeve_home.db_path)
    fd = os.open(live_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `./reeve start` holds it
        reeve_home.extra_env["PULSE_DB_PATH"] = str(link)
        worker = reeve_home.manage("run_pulse_worker", "--once", check=False, timeout=60)
    finally:
        os.close(fd)

    assert worker.returncode == 1, worker.stderr
    assert "already running" in worker.stderr and str(live_lock) in worker.stderr
    assert not (elsewhere / "queue.db.instance-lock").exists()
