"""pulses/backup.py, backup_db and restore_db: online consistent backups and a restore that works.

The process-level tests run real Reeve processes (a worker with the fake agent, a writer scheduling
pulses) on a temp SQLite file while the backup runs, then restore into a fresh location.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pulses import backup
from tests.factories import PulseFactory
from tests.reeve_processes import ROOT, ReeveHome

WRITER = """
import sys
from pulses import queue
for n in range(100000):
    pulse = queue.schedule(prompt=f"written {n} mode=success", source="writer").pulse
    print(pulse.pk, flush=True)
"""


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def ids(path: Path) -> set[int]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM pulses")}
    finally:
        conn.close()


# --- in-process ---------------------------------------------------------------------------------


def test_a_backup_is_a_gzip_of_a_sound_copy_named_like_the_guides(transactional_db, tmp_path):
    PulseFactory.create_batch(3)
    PulseFactory(failed=True)
    result = backup.backup(directory=tmp_path)
    assert result.path.parent == tmp_path
    assert result.path.name.startswith("test_pulse_queue_") and result.path.name.endswith(".db.gz")
    copy = tmp_path / "copy.db"
    copy.write_bytes(gzip.decompress(result.path.read_bytes()))
    assert integrity(copy) == "ok"
    assert len(ids(copy)) == 4


def test_two_backups_in_one_second_never_overwrite_each_other(transactional_db, tmp_path):
    first = backup.backup(directory=tmp_path)
    second = backup.backup(directory=tmp_path)
    assert first.path != second.path and first.path.exists() and second.path.exists()


def test_old_backups_are_pruned_after_keep_days_and_others_are_left_alone(transactional_db, tmp_path):
    stem = Path(backup._database()["NAME"]).stem
    old, recent = tmp_path / f"{stem}_20200101_030000.db.gz", tmp_path / f"{stem}_20200102_030000.db.gz"
    other = tmp_path / "someone_elses.db.gz"
    for path, days in ((old, 31), (recent, 29), (other, 400)):
        path.write_bytes(b"x")
        os.utime(path, (time.time() - days * 86400,) * 2)
    result = backup.backup(directory=tmp_path, keep_days=30)
    assert result.removed == [old]
    assert not old.exists() and recent.exists() and other.exists() and result.path.exists()
    backup.backup(directory=tmp_path, keep_days=0)
    assert recent.exists()


def test_backup_db_command_reports_the_file_and_rejects_negative_keep_days(
    transactional_db, tmp_path, capsys
):
    call_command("backup_db", "--dir", str(tmp_path))
    out = capsys.readouterr().out
    (made,) = tmp_path.glob("*.db.gz")
    assert f"Backup completed: {made}" in out
    with pytest.raises(CommandError, match="--keep-days must be 0 or more"):
        call_command("backup_db", "--keep-days", "-1")


def test_restore_refuses_a_file_that_is_not_a_backup(transactional_db, tmp_path):
    junk = tmp_path / "junk.db.gz"
    junk.write_bytes(gzip.compress(b"definitely not sqlite" * 100))
    with pytest.raises(backup.BackupError, match="is not a SQLite backup"):
        backup.restore(junk)
    with pytest.raises(backup.BackupError, match="no backup file"):
        backup.restore(tmp_path / "missing.db.gz")


# --- real processes -----------------------------------------------------------------------------


def _start_writer(home: ReeveHome) -> tuple[subprocess.Popen, list[int]]:
    """A process scheduling pulses as fast as it can; `committed` grows as each commit is printed."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", WRITER],
        cwd=ROOT,
        env={**home.env, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    committed: list[int] = []

    def read() -> None:
        for line in proc.stdout:
            if line.strip().isdigit():
                committed.append(int(line))

    threading.Thread(target=read, daemon=True).start()
    home.children.append(proc)
    return proc, committed


@pytest.mark.slow
def test_a_backup_taken_while_a_worker_writes_restores_sound_with_every_committed_row(reeve_home, tmp_path):
    worker = reeve_home.start("run_pulse_worker", PULSE_MAX_CONCURRENT="2")
    writer, committed = _start_writer(reeve_home)
    reeve_home.wait_for(lambda: len(committed) >= 40, timeout=120, what="the writer's first commits")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT COUNT(*) FROM pulses WHERE status = 'completed'")[0][0] >= 3,
        timeout=120,
        what="the worker to complete pulses",
    )
    before = set(committed)
    made = reeve_home.manage("backup_db", "--dir", str(tmp_path / "backups"))
    after = set(committed)
    assert writer.poll() is None and worker.poll() is None, "both kept writing throughout"
    reeve_home.wait_for(lambda: len(committed) > len(after) + 5, timeout=60, what="writes after the backup")
    reeve_home.stop_all()
    (archive,) = (tmp_path / "backups").glob("pulse_queue_*.db.gz")
    assert f"Backup completed: {archive}" in made.stdout

    restored = ReeveHome(tmp_path / "restored")
    proc = restored.manage("restore_db", str(archive))
    assert f"Restored {archive} into {restored.db_path}" in proc.stdout
    assert integrity(restored.db_path) == "ok"
    got = ids(restored.db_path)
    assert before <= got, f"committed before the backup but missing: {sorted(before - got)[:10]}"
    assert got <= after | set(committed), "the copy holds only rows that were committed"
    assert got == set(range(1, max(got) + 1)), "one snapshot: no gaps, no half transaction"
    # The worker's state changes came along consistently: every attempt belongs to a pulse.
    conn = sqlite3.connect(restored.db_path)
    try:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        statuses = {row[0] for row in conn.execute("SELECT DISTINCT status FROM pulses")}
    finally:
        conn.close()
    assert "completed" in statuses and statuses <= {"pending", "processing", "completed", "failed"}
    # And Reeve runs on it.
    listing = restored.manage("pulse_queue", "all", "-n", "1")
    assert listing.stdout.startswith("pending=")


@pytest.mark.slow
def test_restore_db_refuses_while_a_service_holds_the_database_and_works_once_stopped(reeve_home, tmp_path):
    reeve_home.manage("trigger_pulse", "kept by the backup", "--at", "in 3 days")
    reeve_home.manage("backup_db", "--dir", str(tmp_path))
    (archive,) = tmp_path.glob("*.db.gz")
    reeve_home.manage("trigger_pulse", "made after the backup", "--at", "in 3 days")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT COUNT(*) FROM pulse_workers")[0][0], what="worker up"
    )
    refused = reeve_home.manage("restore_db", str(archive), check=False)
    assert refused.returncode != 0
    assert "stop the services first (sudo systemctl stop reeve-telegram reeve-daemon)" in refused.stderr
    assert f"{worker.pid} (" in refused.stderr
    worker.terminate()
    worker.wait(timeout=60)
    done = reeve_home.manage("restore_db", str(archive))
    assert "Previous database kept as" in done.stdout
    prompts = [row[0] for row in reeve_home.query("SELECT prompt FROM pulses")]
    assert prompts == ["kept by the backup"]
    saved = next(reeve_home.path.glob("pulse_queue.db.before-restore-*"))
    assert integrity(saved) == "ok"
    assert integrity(reeve_home.db_path) == "ok"


@pytest.mark.slow
def test_the_guides_rollback_gunzip_and_cp_works_with_the_services_stopped(reeve_home, tmp_path):
    reeve_home.manage("trigger_pulse", "before the upgrade", "--at", "in 3 days")
    reeve_home.manage("backup_db", "--dir", str(tmp_path / "backups"))
    reeve_home.manage("trigger_pulse", "after the upgrade", "--at", "in 3 days")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT COUNT(*) FROM pulse_workers")[0][0], what="worker up"
    )
    worker.terminate()  # sudo systemctl stop reeve-telegram reeve-daemon
    worker.wait(timeout=60)
    (archive,) = (tmp_path / "backups").glob("pulse_queue_*.db.gz")
    # cp ~/.reeve/backups/pulse_queue_TIMESTAMP.db.gz /tmp/ ; gunzip ... ; cp ... ~/.reeve/pulse_queue.db
    staging = tmp_path / "tmp"
    staging.mkdir()
    shutil.copy(archive, staging)
    subprocess.run(["gunzip", str(staging / archive.name)], check=True)
    shutil.copy(staging / archive.name.removesuffix(".gz"), reeve_home.db_path)
    listing = reeve_home.manage("pulse_queue", "all")
    assert "pending=1 " in listing.stdout
    assert "before the upgrade" in listing.stdout and "after the upgrade" not in listing.stdout
    assert integrity(reeve_home.db_path) == "ok"


@pytest.mark.slow
def test_postgresql_is_backed_up_with_pg_dump_and_restored_with_psql(tmp_path):
    script = ROOT / "tests" / "pg_cluster.sh"
    # Outside pytest's 0700 tree: as root the server runs as `postgres`, which must reach its directory.
    cluster = Path(tempfile.mkdtemp(prefix="reeve-pg-")) / "pg"
    started = subprocess.run(["bash", str(script), "start", str(cluster)], capture_output=True, text=True)
    if started.returncode == 3 or not shutil.which("pg_dump") or not shutil.which("psql"):
        pytest.skip("no PostgreSQL server binaries or client tools here")
    assert started.returncode == 0, started.stderr
    try:
        home = ReeveHome(tmp_path / "home", extra_env={"DATABASE_URL": started.stdout.strip()})
        home.migrate()
        home.manage("trigger_pulse", "kept", "--at", "in 3 days")
        home.manage("backup_db", "--dir", str(tmp_path / "backups"))
        (archive,) = (tmp_path / "backups").glob("pulse_queue_*.sql.gz")
        assert b"CREATE TABLE" in gzip.decompress(archive.read_bytes())
        home.manage("trigger_pulse", "dropped by the restore", "--at", "in 3 days")
        home.manage("restore_db", str(archive))
        listing = home.manage("pulse_queue", "all")
        assert "kept" in listing.stdout and "dropped by the restore" not in listing.stdout
    finally:
        subprocess.run(["bash", str(script), "stop", str(cluster)], capture_output=True)
        shutil.rmtree(cluster.parent, ignore_errors=True)
