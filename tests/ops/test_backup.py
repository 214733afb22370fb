"""pulses/ops/backup.py, backup_db and restore_db: online consistent backups and a restore that works.

The process-level tests run real Reeve processes (a worker with the fake agent, a writer scheduling
pulses) on a temp SQLite file, or on PostgreSQL when the suite runs there (DATABASE_URL), while the
backup runs, then restore into a fresh location. SQLite-only behaviour (the backup API's integrity
check, the open-file refusal by pid, the guide's gunzip+cp rollback) is skipped on PostgreSQL.
"""

from __future__ import annotations

import gzip
import os
import re
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

from pulses.models import Pulse
from pulses.ops import backup
from tests.support.factories import PulseFactory
from tests.support.reeve_processes import POSTGRES_HALF_ALONGSIDE, ROOT, ReeveHome, on_postgres

WRITER = """
import sys
from pulses import queue
for n in range(100000):
    pulse = queue.schedule(prompt=f"written {n} mode=success", source="writer").pulse
    print(pulse.pk, flush=True)
"""


SUFFIX = ".sql.gz" if on_postgres() else ".db.gz"
SQLITE_ONLY = pytest.mark.skipif(on_postgres(), reason="SQLite file behaviour; PostgreSQL is covered below")


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


def home_ids(home: ReeveHome) -> set[int]:
    return {row[0] for row in home.query("SELECT id FROM pulses")}


def orphan_attempts(home: ReeveHome) -> int:
    sql = "SELECT COUNT(*) FROM pulse_attempts a LEFT JOIN pulses p ON p.id = a.pulse_id WHERE p.id IS NULL"
    return home.query(sql)[0][0]


def copied_rows(dump: bytes, table: str) -> list[list[str]]:
    """The data rows of `table` in a plain pg_dump (the COPY ... FROM stdin block)."""
    lines = dump.decode().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"COPY public.{table} ("))
    return [line.split("\t") for line in lines[start + 1 : lines.index("\\.", start)]]


# --- in-process ---------------------------------------------------------------------------------


def test_a_backup_is_a_gzip_of_a_sound_copy_named_like_the_guides(transactional_db, tmp_path):
    PulseFactory.create_batch(3)
    PulseFactory(failed=True)
    result = backup.backup(directory=tmp_path)
    assert result.path.parent == tmp_path
    if on_postgres():
        assert re.fullmatch(r"pulse_queue_\d{8}_\d{6}\.sql\.gz", result.path.name)
        dump = gzip.decompress(result.path.read_bytes())
        assert backup.PG_DUMP_HEADER in dump and b"CREATE TABLE public.pulses" in dump
        assert len(copied_rows(dump, "pulses")) == 4
        return
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
    stem = "pulse_queue" if on_postgres() else Path(backup._database()["NAME"]).stem
    old, recent = tmp_path / f"{stem}_20200101_030000{SUFFIX}", tmp_path / f"{stem}_20200102_030000{SUFFIX}"
    other = tmp_path / f"someone_elses{SUFFIX}"
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
    (made,) = tmp_path.glob(f"*{SUFFIX}")
    assert f"Backup completed: {made}" in out
    with pytest.raises(CommandError, match="--keep-days must be 0 or more"):
        call_command("backup_db", "--keep-days", "-1")


def test_restore_refuses_a_file_that_is_not_a_backup(transactional_db, tmp_path):
    PulseFactory(prompt="still here")
    junk = tmp_path / f"junk{SUFFIX}"
    junk.write_bytes(gzip.compress(b"definitely not a backup" * 100))
    kind = "PostgreSQL" if on_postgres() else "SQLite"
    with pytest.raises(backup.BackupError, match=f"is not a {kind} backup"):
        backup.restore(junk)
    with pytest.raises(backup.BackupError, match="no backup file"):
        backup.restore(tmp_path / f"missing{SUFFIX}")
    assert list(Pulse.objects.values_list("prompt", flat=True)) == ["still here"]


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


def _back_up_while_writing(home: ReeveHome, backups: Path):
    """Run `backup_db` into `backups` while a worker completes pulses and a writer commits rows, and
    let both write on after it: (worker, writer, the writer's committed ids as they grow, the ids
    committed before the backup began, backup_db's output)."""
    worker = home.start("run_pulse_worker", PULSE_MAX_CONCURRENT="2")
    writer, committed = _start_writer(home)
    home.wait_for(lambda: len(committed) >= 40, timeout=120, what="the writer's first commits")
    home.wait_for(
        lambda: home.query("SELECT COUNT(*) FROM pulses WHERE status = 'completed'")[0][0] >= 3,
        timeout=120,
        what="the worker to complete pulses",
    )
    before = set(committed)
    made = home.manage("backup_db", "--dir", str(backups))
    after = set(committed)
    assert writer.poll() is None and worker.poll() is None, "both kept writing throughout"
    home.wait_for(lambda: len(committed) > len(after) + 5, timeout=60, what="writes after the backup")
    return worker, writer, committed, before, made


@pytest.mark.slow
def test_a_backup_taken_while_a_worker_writes_restores_sound_with_every_committed_row(reeve_home, tmp_path):
    _, _, committed, before, made = _back_up_while_writing(reeve_home, tmp_path / "backups")
    reeve_home.stop_all()
    (archive,) = (tmp_path / "backups").glob(f"pulse_queue_*{SUFFIX}")
    assert f"Backup completed: {archive}" in made.stdout

    restored = ReeveHome(tmp_path / "restored")  # an empty database (file or PostgreSQL database)
    try:
        proc = restored.manage("restore_db", str(archive))
        target = (
            f"postgresql:{restored.database_url.rsplit('/', 1)[1]}" if on_postgres() else restored.db_path
        )
        assert f"Restored {archive} into {target}" in proc.stdout
        if not on_postgres():
            assert integrity(restored.db_path) == "ok"
            assert restored.query("PRAGMA foreign_key_check") == []
        got = home_ids(restored)
        assert before <= got, f"committed before the backup but missing: {sorted(before - got)[:10]}"
        assert got <= set(committed), "the copy holds only rows that were committed"
        assert got == set(range(1, max(got) + 1)), "one snapshot: no gaps, no half transaction"
        # The worker's state changes came along consistently: every attempt belongs to a pulse.
        assert orphan_attempts(restored) == 0
        statuses = {row[0] for row in restored.query("SELECT DISTINCT status FROM pulses")}
        assert "completed" in statuses and statuses <= {"pending", "processing", "completed", "failed"}
        # And Reeve runs on it.
        listing = restored.manage("pulse_queue", "all", "-n", "1")
        assert listing.stdout.startswith("pending=")
    finally:
        restored.stop_all()


@pytest.mark.slow
def test_restore_db_refuses_while_a_service_holds_the_database_and_works_once_stopped(reeve_home, tmp_path):
    reeve_home.manage("trigger_pulse", "kept by the backup", "--at", "in 3 days")
    reeve_home.manage("backup_db", "--dir", str(tmp_path))
    (archive,) = tmp_path.glob(f"*{SUFFIX}")
    reeve_home.manage("trigger_pulse", "made after the backup", "--at", "in 3 days")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT COUNT(*) FROM pulse_workers")[0][0], what="worker up"
    )
    refused = reeve_home.manage("restore_db", str(archive), check=False)
    assert refused.returncode != 0
    assert "stop the services first (sudo systemctl stop reeve-telegram reeve-daemon)" in refused.stderr
    if on_postgres():  # PostgreSQL names the server process serving the worker's connection
        assert "is in use by server process" in refused.stderr
    else:
        assert f"{worker.pid} (" in refused.stderr
    prompts = sorted(row[0] for row in reeve_home.query("SELECT prompt FROM pulses"))
    assert prompts == ["kept by the backup", "made after the backup"], "a refused restore changes nothing"
    worker.terminate()
    worker.wait(timeout=60)
    done = reeve_home.manage("restore_db", str(archive))
    prompts = [row[0] for row in reeve_home.query("SELECT prompt FROM pulses")]
    assert prompts == ["kept by the backup"]
    if on_postgres():
        return
    assert "Previous database kept as" in done.stdout
    saved = next(reeve_home.path.glob("pulse_queue.db.before-restore-*"))
    assert integrity(saved) == "ok"
    assert integrity(reeve_home.db_path) == "ok"


@SQLITE_ONLY
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


@pytest.fixture
def pg_home(tmp_path, migrated_home):
    """A migrated home on PostgreSQL: the suite's cluster when it runs there, else a cluster of its own."""
    if on_postgres():
        home = migrated_home.copy_to(tmp_path / "home")
        yield home
        home.stop_all()
        return
    if os.environ.get(POSTGRES_HALF_ALONGSIDE):
        pytest.skip("runs in this run's PostgreSQL half (tests/run.sh), not on a cluster of its own here")
    script = ROOT / "tests" / "support" / "pg_cluster.sh"
    # Outside pytest's 0700 tree: as root the server runs as `postgres`, which must reach its directory.
    cluster = Path(tempfile.mkdtemp(prefix="reeve-pg-")) / "pg"
    started = subprocess.run(["bash", str(script), "start", str(cluster)], capture_output=True, text=True)
    try:
        if started.returncode == 3 or not shutil.which("pg_dump") or not shutil.which("psql"):
            pytest.skip("no PostgreSQL server binaries or client tools here")
        assert started.returncode == 0, started.stderr
        home = ReeveHome(tmp_path / "home", database_url=started.stdout.strip())
        home.migrate()
        yield home
        home.stop_children()  # the cluster, database and all, goes below
    finally:
        subprocess.run(["bash", str(script), "stop", str(cluster)], capture_output=True)
        shutil.rmtree(cluster.parent, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_is_backed_up_with_pg_dump_and_restored_with_psql(pg_home, tmp_path):
    home = pg_home
    home.manage("trigger_pulse", "kept", "--at", "in 3 days")
    home.manage("backup_db", "--dir", str(tmp_path / "backups"))
    (archive,) = (tmp_path / "backups").glob("pulse_queue_*.sql.gz")
    assert b"CREATE TABLE" in gzip.decompress(archive.read_bytes())
    home.manage("trigger_pulse", "dropped by the restore", "--at", "in 3 days")
    home.manage("restore_db", str(archive))
    listing = home.manage("pulse_queue", "all")
    assert "kept" in listing.stdout and "dropped by the restore" not in listing.stdout


@pytest.mark.slow
def test_postgresql_backup_db_then_restore_db_brings_back_every_row_committed_while_a_worker_wrote(
    pg_home, tmp_path
):
    home = pg_home
    worker, writer, committed, before, made = _back_up_while_writing(home, tmp_path / "backups")
    (archive,) = (tmp_path / "backups").glob("pulse_queue_*.sql.gz")
    assert f"Backup completed: {archive}" in made.stdout

    # The documented procedure: restore_db refuses while the services are connected...
    refused = home.manage("restore_db", str(archive), check=False)
    assert refused.returncode != 0 and "stop the services first" in refused.stderr
    # ...so stop them (SIGTERM, as systemctl stop does), then restore over the live database.
    writer.kill()
    writer.wait(timeout=30)
    worker.terminate()
    worker.wait(timeout=60)
    written = set(committed)
    assert home_ids(home) >= written, "every printed id was committed"
    home.manage("restore_db", str(archive))

    got = home_ids(home)
    assert before <= got, f"committed before the backup but missing: {sorted(before - got)[:10]}"
    assert got <= written, "the dump holds only rows that were committed"
    assert got == set(range(1, max(got) + 1)), "one snapshot: no gaps, no half transaction"
    assert max(written) not in got, "rows written after the backup are gone"
    assert orphan_attempts(home) == 0
    statuses = {row[0] for row in home.query("SELECT DISTINCT status FROM pulses")}
    assert "completed" in statuses and statuses <= {"pending", "processing", "completed", "failed"}
    # Reeve runs on the restored database, and new ids do not collide with restored ones.
    scheduled = home.manage("trigger_pulse", "after the restore", "--at", "in 3 days")
    assert scheduled.returncode == 0
    assert home.query("SELECT MAX(id) FROM pulses")[0][0] > max(got)
    assert home.manage("pulse_queue", "all", "-n", "1").stdout.startswith("pending=")


# --- only Reeve's own backups are restored ----------------------------------------------------------


@SQLITE_ONLY
def test_restore_refuses_a_sqlite_stub_whose_tables_are_named_like_reeves_but_lack_its_columns(
    reeve_home, tmp_path
):
    reeve_home.manage("trigger_pulse", "still queued", "--at", "in 3 days")
    stub = tmp_path / "stub.db"
    with sqlite3.connect(stub) as conn:
        conn.execute("CREATE TABLE pulses (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE pulse_attempts (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app TEXT, name TEXT, applied TEXT)"
        )
        conn.execute("INSERT INTO django_migrations (app, name) VALUES ('pulses', '0001_initial')")
    conn.close()
    # A real backup with one column dropped is refused too, naming the table and the column.
    reeve_home.manage("backup_db", "--dir", str(tmp_path / "backups"))
    (archive,) = (tmp_path / "backups").glob("pulse_queue_*.db.gz")
    altered = tmp_path / "altered.db"
    altered.write_bytes(gzip.decompress(archive.read_bytes()))
    with sqlite3.connect(altered) as conn:
        conn.execute("ALTER TABLE pulses DROP COLUMN tags")
    conn.close()
    for path, why in ((stub, "does not have Reeve's columns"), (altered, "missing: tags")):
        proc = reeve_home.manage("restore_db", str(path), check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{path} is not a Reeve database" in proc.stderr and why in proc.stderr
        assert reeve_home.query("SELECT prompt FROM pulses") == [("still queued",)]
    # The untouched backup restores.
    reeve_home.manage("restore_db", str(archive))
    assert reeve_home.query("SELECT prompt FROM pulses") == [("still queued",)]


def _with_line_after(dump: bytes, anchor: bytes, added: bytes) -> bytes:
    at = dump.index(anchor) + len(anchor)
    return dump[:at] + added + dump[at:]


@pytest.mark.slow
def test_a_postgresql_backup_with_a_psql_shell_command_is_refused_and_the_command_never_runs(
    pg_home, tmp_path
):
    home = pg_home
    home.manage("trigger_pulse", "kept", "--at", "in 3 days")
    home.manage("backup_db", "--dir", str(tmp_path / "backups"))
    (archive,) = (tmp_path / "backups").glob("pulse_queue_*.sql.gz")
    dump = gzip.decompress(archive.read_bytes())
    marker = tmp_path / "pwned"
    shell = f"\\! id > {marker}\n".encode()
    evil = {
        # A plain meta-command line: the reader refuses the file before psql starts.
        "evil.sql": _with_line_after(dump, b"SET client_encoding = 'UTF8';\n", shell),
        # One that hides behind a dollar-quoted string the reader takes for the start of COPY data:
        # psql runs the file under Reeve's own \restrict, so it refuses the command all the same.
        "hidden.sql.gz": gzip.compress(
            _with_line_after(
                dump,
                b"SET client_encoding = 'UTF8';\n",
                b"SELECT $$\nCOPY public.x (a) FROM stdin;\n$$;\n" + shell + b"SELECT $$\n\\.\n$$;\n",
            )
        ),
    }
    home.manage("trigger_pulse", "not dropped", "--at", "in 3 days")
    for name, data in evil.items():
        (tmp_path / name).write_bytes(data)
        proc = home.manage("restore_db", str(tmp_path / name), check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert not marker.exists(), f"{name}: the backup's shell command ran"
        prompts = {row[0] for row in home.query("SELECT prompt FROM pulses")}
        assert prompts == {"kept", "not dropped"}, name
    assert "is a psql command" in home.manage("restore_db", str(tmp_path / "evil.sql"), check=False).stderr

    # A dump with tables named like Reeve's but not its columns is refused before psql runs.
    stub = b"-- PostgreSQL database dump\nCREATE TABLE public.pulses (\n    id integer\n);\n"
    stub += b"CREATE TABLE public.pulse_attempts (\n    id integer\n);\n"
    stub += b"CREATE TABLE public.django_migrations (\n    id integer,\n    app text,\n    name text,\n"
    stub += b"    applied text\n);\nCOPY public.django_migrations (id, app, name, applied) FROM stdin;\n"
    stub += b"1\tpulses\t0001_initial\tx\n\\.\n"
    (tmp_path / "stub.sql").write_bytes(stub)
    proc = home.manage("restore_db", str(tmp_path / "stub.sql"), check=False)
    assert proc.returncode == 1 and "does not have Reeve's columns" in proc.stderr, proc.stderr

    # Today's backup, with pg_dump's own \restrict lines, still restores.
    home.manage("restore_db", str(archive))
    assert {row[0] for row in home.query("SELECT prompt FROM pulses")} == {"kept"}
