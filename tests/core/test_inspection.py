"""The deployment guide's database inspection commands, run verbatim with the sqlite3 shell."""

import shutil
import subprocess

import pytest

from tests.support.reeve_processes import on_postgres

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(on_postgres(), reason="the guide's sqlite3 shell commands are for SQLite"),
    pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 shell is not installed"),
]


def sqlite3_shell(home, command: str) -> str:
    proc = subprocess.run(["sqlite3", str(home.db_path), command], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_guide_queries_run_verbatim_in_the_sqlite3_shell(reeve_home):
    reeve_home.manage("trigger_pulse", "one", "--priority", "high")
    reeve_home.manage("trigger_pulse", "two", "--priority", "high")
    reeve_home.manage("trigger_pulse", "three", "--priority", "low", "--at", "in 2 hours")
    assert "CREATE TABLE" in sqlite3_shell(reeve_home, ".schema pulses")
    assert "pulses" in sqlite3_shell(reeve_home, ".tables").split()
    assert sqlite3_shell(reeve_home, "SELECT COUNT(*) FROM pulses WHERE status = 'pending';").strip() == "3"
    by_priority = sqlite3_shell(reeve_home, "SELECT priority, COUNT(*) FROM pulses GROUP BY priority;")
    assert sorted(by_priority.split()) == ["high|2", "low|1"]
    latest = sqlite3_shell(reeve_home, "SELECT * FROM pulses ORDER BY scheduled_at DESC LIMIT 10;")
    assert len(latest.splitlines()) == 3
    stuck = "SELECT * FROM pulses WHERE status='processing' AND executed_at < datetime('now', '-5 minutes');"
    assert sqlite3_shell(reeve_home, stuck) == ""
    assert sqlite3_shell(reeve_home, "PRAGMA journal_mode;").strip() == "wal"
