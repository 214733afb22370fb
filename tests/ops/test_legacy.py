"""Coming from the original Reeve: its queue is recognised, carried over, and never crashes a command."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from pulses.ops import doctor, doctor_agent, legacy, legacy_rows
from pulses.tools import desk_config
from pulses.tools.desk_check import desk_mcp_problems
from reeve_site import original_db_url
from tests.support import original_reeve
from tests.support.reeve_processes import ROOT, ReeveHome, manage_in, on_postgres

PARAGRAPH = re.compile(
    r"holds the original Reeve's queue \(Alembic revision 07ce7ae63b4a; 2 pending pulse\(s\) of 6\)"
    r".*nothing was changed.*import_legacy",
    re.S,
)


@pytest.fixture
def original_home(tmp_path):
    """A Reeve home whose database was made by the original Reeve (SQLite, or PostgreSQL on that half)."""
    home = ReeveHome(tmp_path)
    now = datetime.now(UTC)
    if home.database_url:
        original_reeve.create_postgres(home.database_url, original_reeve.sample(now))
    else:
        original_reeve.create_sqlite(home.db_path, original_reeve.sample(now))
    home.now = now
    yield home
    home.stop_all()


def snapshot(home: ReeveHome) -> object:
    """Everything that would show a change: the file's bytes (and no WAL), or every table's rows."""
    if not home.database_url:
        wal = home.db_path.with_name(home.db_path.name + "-wal")
        return hashlib.sha256(home.db_path.read_bytes()).hexdigest(), wal.exists()
    tables = [
        row[0]
        for row in home.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name"
        )
    ]
    return {table: sorted(map(repr, home.query(f'SELECT * FROM "{table}"'))) for table in tables}  # noqa: S608


@pytest.mark.slow
def test_every_command_that_opens_the_original_queue_explains_it_and_changes_nothing(original_home):
    before = snapshot(original_home)
    for command in (
        ["migrate", "--noinput"],
        ["pulse_queue", "all"],
        ["trigger_pulse", "hello"],
        ["run_pulse_worker", "--once"],
        ["create_api_token", "phone"],
        ["mcp_config", "--write"],
    ):
        proc = original_home.manage(*command, check=False)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, command
        assert PARAGRAPH.search(proc.stderr), (command, proc.stderr)
    # A command that never opens the database is not stopped by it.
    notify = original_home.manage("notify", "hello", check=False)
    assert "TELEGRAM_BOT_TOKEN" in notify.stderr and not PARAGRAPH.search(notify.stderr)
    doctor = original_home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    assert re.search(r"FAIL +database +This database .*07ce7ae63b4a", doctor.stdout), doctor.stdout
    assert snapshot(original_home) == before
    assert original_home.agent_starts() == []


@pytest.mark.slow
def test_reeve_start_stops_at_its_migrate_step_with_the_explanation(original_home):
    proc = subprocess.run(
        ["./reeve", "start"], cwd=ROOT, env=original_home.env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert PARAGRAPH.search(proc.stderr), proc.stderr
    assert "Starting gunicorn" not in proc.stdout + proc.stderr


def _pulses(home: ReeveHome) -> dict[int, tuple]:
    rows = home.query(
        "SELECT id, status, priority, source, attempt_count, max_retries, session_id, sticky_notes, tags, "
        "error_message, scheduled_at, created_at FROM pulses ORDER BY id"
    )
    return {row[0]: row[1:] for row in rows}


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).replace(" ", "T"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@pytest.mark.slow
def test_import_legacy_carries_every_pulse_over_keeps_a_copy_and_runs_the_pending_one(original_home):
    home = original_home
    pristine = home.path / "pristine.db"
    if not home.database_url:
        pristine.write_bytes(home.db_path.read_bytes())

    proc = home.manage("import_legacy")
    assert "6 row(s) became 5 pulse(s): 2 pending, 1 completed, 1 failed, 1 cancelled." in proc.stdout
    assert "1 retry row(s) became attempts of the pulse they retried." in proc.stdout

    pulses = _pulses(home)
    assert sorted(pulses) == [1, 3, 4, 5, 6]  # the retry chain 2 -> 3 is one pulse, under its last id
    assert [pulses[i][:6] for i in (1, 3, 4, 5, 6)] == [
        ("completed", "normal", "heartbeat", 1, 3, "7f0c1d2e-0000-4000-8000-000000000001"),
        ("failed", "high", "agent", 2, 1, ""),
        ("pending", "high", "telegram", 0, 3, "7f0c1d2e-0000-4000-8000-000000000004"),
        ("pending", "low", "user_cli", 0, 3, ""),
        ("cancelled", "deferred", "agent", 0, 3, ""),
    ]
    assert json.loads(pulses[4][6]) == ["Dentist: +1 555 0100", "Ask about Friday"]
    assert json.loads(pulses[4][7]) == ["telegram", "user_message"]
    assert json.loads(pulses[5][6]) == [] and json.loads(pulses[5][7]) == []
    assert pulses[3][8] == "hapi exited 1: still down"
    original = {p.id: p for p in original_reeve.sample(home.now)}
    for pulse_id in (1, 3, 4, 5, 6):
        assert _instant(pulses[pulse_id][9]) == original[pulse_id].scheduled_at
    assert _instant(pulses[3][10]) == original[2].created_at  # the chain's first row
    attempts = home.query(
        "SELECT pulse_id, number, succeeded, error, duration_ms, started_at, finished_at FROM pulse_attempts "
        "ORDER BY pulse_id, number"
    )
    assert [row[:5] for row in attempts] == [
        (1, 1, True, "", 40_000),
        (3, 1, False, "hapi exited 1: network down", None),
        (3, 2, False, "hapi exited 1: still down", None),
    ]
    assert _instant(attempts[0][6]) - _instant(attempts[0][5]) == timedelta(seconds=40)

    # The copy kept first is the original, readable as it was.
    if home.database_url:
        (dump,) = (home.path / "backups").glob("original_reeve_*.sql.gz")
        text = gzip.decompress(dump.read_bytes()).decode()
        assert "CREATE TYPE public.pulsepriority" in text and "Remind me to call the dentist" in text
    else:
        (copy,) = home.path.glob("pulse_queue.original-*.db")
        assert f"The original is kept in {copy}." in proc.stdout
        with sqlite3.connect(copy) as kept, sqlite3.connect(pristine) as before:
            assert kept.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert list(kept.iterdump()) == list(before.iterdump())

    # A second run changes nothing, and says so.
    state = _pulses(home)
    again = home.manage("import_legacy")
    assert (
        "already holds Reeve's queue (5 pulse(s): 2 pending, 1 completed, 1 failed, 1 cancelled)"
        in again.stdout
    )
    assert "nothing changed" in again.stdout
    assert _pulses(home) == state
    assert len(list(home.path.glob("pulse_queue.original-*.db"))) == (0 if home.database_url else 1)

    # Reeve now runs the pending reminder, resuming its session, with its sticky notes.
    home.manage("run_pulse_worker", "--once")
    (start,) = home.agent_starts()
    assert start["pulse_id"] == "4"
    assert start["resume"] == "7f0c1d2e-0000-4000-8000-000000000004"
    prompt = start["argv"][-1]
    assert prompt.startswith("Remind me to call the dentist")
    assert "📌 Reminders:\n  - Dentist: +1 555 0100\n  - Ask about Friday" in prompt
    assert home.query("SELECT status FROM pulses WHERE id = 4") == [("completed",)]
    assert home.query("SELECT status FROM pulses WHERE id = 5") == [("pending",)]
    created = home.manage("trigger_pulse", "after the import", "--at", "in 1 hour").stdout
    assert re.search(r"#(\d+)", created).group(1) == "7"  # new pulses number on after the original's


@pytest.mark.slow
@pytest.mark.skipif(not on_postgres(), reason="the PostgreSQL half of the suite")
def test_import_legacy_takes_the_originals_postgresql_url(original_home, tmp_path):
    # Another database than the configured one, named as the original's .env named it.
    configured = ReeveHome(tmp_path / "configured")
    url = re.sub(r"^postgres(ql)?://", "postgresql+asyncpg://", original_home.database_url)
    try:
        proc = configured.manage("import_legacy", url)
    finally:
        configured.stop_all()
    assert "2 pending" in proc.stdout
    assert f"set DATABASE_URL={original_home.database_url}" in proc.stdout
    assert original_home.query("SELECT count(*) FROM pulses") == [(5,)]
    assert original_home.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version'"
    ) == [(0,)]
    assert len(list((tmp_path / "configured" / "backups").glob("original_reeve_*.sql.gz"))) == 1


@pytest.mark.slow
def test_import_legacy_refuses_what_is_neither_schema_and_leaves_it_untouched(tmp_path):
    other = tmp_path / "notes.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database at all, just a long enough line of text to fill a header\n" * 3)
    home = ReeveHome(tmp_path / "home")
    try:
        for path, reason in (
            (other, "holds neither the original Reeve's queue nor Reeve's"),
            (text_file, "is not an SQLite database"),
            (tmp_path / "missing.db", "there is no database file at"),
        ):
            before = path.read_bytes() if path.exists() else None
            proc = home.manage("import_legacy", str(path), check=False)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr
            assert reason in proc.stderr, proc.stderr
            assert (path.read_bytes() if path.exists() else None) == before
        assert list(tmp_path.glob("*.original-*")) == []
    finally:
        home.stop_all()


@pytest.mark.slow
def test_import_legacy_of_another_file_says_how_to_use_it(tmp_path):
    elsewhere = tmp_path / "old" / "queue.db"
    elsewhere.parent.mkdir()
    original_reeve.create_sqlite(elsewhere, original_reeve.sample(datetime.now(UTC)))
    home = ReeveHome(tmp_path / "home")
    try:
        proc = home.manage("import_legacy", f"sqlite+aiosqlite:///{elsewhere}")
    finally:
        home.stop_all()
    assert f"set PULSE_DB_PATH={elsewhere}" in proc.stdout
    with sqlite3.connect(elsewhere) as conn:
        assert conn.execute("SELECT count(*) FROM pulses WHERE status = 'pending'").fetchone() == (2,)


def sqlite_home(path: Path) -> ReeveHome:
    """A home on SQLite on either half of the suite: PULSE_DB_URL is about the original's SQLite file."""
    home = ReeveHome(path, database_url="unused")  # a set URL keeps ReeveHome from creating a database
    home.database_url = ""
    return home


def _env_with_url(home: ReeveHome, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in home.env.items() if k not in ("PULSE_DB_PATH", "DATABASE_URL")}
    return {**env, "PULSE_DB_URL": url, **extra}


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return manage_in(ROOT, env, *args)


@pytest.mark.slow
def test_pulse_db_url_alone_selects_the_database_with_a_one_time_note(tmp_path):
    home = sqlite_home(tmp_path)
    env = _env_with_url(home, "sqlite+aiosqlite:///~/custom/queue.db", HOME=str(tmp_path))
    chosen = tmp_path / "custom" / "queue.db"
    chosen.parent.mkdir()
    first = _manage(env, "migrate", "--noinput", "-v0")
    assert first.returncode == 0, first.stderr
    assert "PULSE_DB_URL" in first.stderr and f"PULSE_DB_PATH={chosen}" in first.stderr
    second = _manage(env, "trigger_pulse", "kept where the original kept it")
    assert second.returncode == 0, second.stderr
    assert "PULSE_DB_URL" not in second.stderr
    with sqlite3.connect(chosen) as conn:
        assert conn.execute("SELECT prompt FROM pulses").fetchall() == [("kept where the original kept it",)]
    assert not home.db_path.exists()


@pytest.mark.slow
def test_a_pulse_db_url_that_contradicts_pulse_db_path_stops_the_start_naming_both(tmp_path):
    home = sqlite_home(tmp_path)
    env = {
        **_env_with_url(home, f"sqlite+aiosqlite:///{tmp_path}/other.db"),
        "PULSE_DB_PATH": str(home.db_path),
    }
    proc = subprocess.run(
        ["./reeve", "start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "PULSE_DB_URL" in proc.stderr and "PULSE_DB_PATH" in proc.stderr, proc.stderr
    assert f"{tmp_path}/other.db" in proc.stderr and str(home.db_path) in proc.stderr
    assert not home.db_path.exists() and not (tmp_path / "other.db").exists()


def test_the_originals_database_urls_read_as_reeves_settings(tmp_path):
    parse = original_db_url.parse
    home = Path.home()
    assert parse("sqlite+aiosqlite:///~/.reeve/pulse_queue.db", base_dir=tmp_path).sqlite_path == (
        home / ".reeve" / "pulse_queue.db"
    )
    assert parse("sqlite:////srv/reeve/q.db", base_dir=tmp_path).sqlite_path == Path("/srv/reeve/q.db")
    assert parse("sqlite+aiosqlite:///data/q.db", base_dir=tmp_path).sqlite_path == tmp_path / "data" / "q.db"
    pg = parse("postgresql+asyncpg://reeve:s3cret@db:5432/reeve", base_dir=tmp_path)
    assert pg.database_url == "postgres://reeve:s3cret@db:5432/reeve"
    assert "s3cret" not in pg.describe()
    for bad in ("sqlite+aiosqlite:///:memory:", "mysql://x@y/z", "~/.reeve/pulse_queue.db"):
        with pytest.raises(original_db_url.OriginalUrlError):
            parse(bad, base_dir=tmp_path)


ORIGINAL_PERMISSIONS = [
    "mcp__pulse-queue__schedule_pulse",
    "mcp__pulse-queue__list_upcoming_pulses",
    "mcp__pulse-queue__cancel_pulse",
    "mcp__pulse-queue__reschedule_pulse",
    "mcp__telegram-notifier__send_notification",
]


@pytest.mark.django_db  # --write makes the Desk's agent-scoped token
def test_mcp_config_write_replaces_the_originals_servers_and_doctor_is_clean_after(settings, tmp_path):
    desk = tmp_path / "desk"
    (desk / ".claude").mkdir(parents=True)
    settings.REEVE_DESK_PATH = desk
    original_server = {"command": "uv", "args": ["run", "python", "-m", "reeve.mcp.pulse_server"]}
    notifier = {"command": "uv", "args": ["run", "python", "-m", "reeve.mcp.notification_server"]}
    (desk / ".mcp.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "pulse-queue": original_server,
                    "telegram-notifier": notifier,
                    "calendar": {"command": "cal-mcp"},
                }
            }
        )
    )
    (desk / ".claude" / "settings.json").write_text(
        json.dumps(
            {
                "enabledMcpjsonServers": ["pulse-queue", "telegram-notifier", "calendar"],
                "permissions": {"allow": ["Bash(git:*)", *ORIGINAL_PERMISSIONS]},
            }
        )
    )
    problems = desk_mcp_problems()
    assert any(
        "still names the original Reeve's MCP servers pulse-queue, telegram-notifier" in p for p in problems
    )
    assert any("mcp__telegram-notifier__send_notification" in p for p in problems)
    assert doctor_agent.check_agent_tools().level == doctor.WARN

    out = StringIO()
    call_command("mcp_config", "--write", stdout=out)
    assert (
        f"Updated: {desk / '.mcp.json'} (replaced the original Reeve's pulse-queue, telegram-notifier)"
        in (out.getvalue())
    )
    assert "mcp__pulse-queue__schedule_pulse" in out.getvalue()
    mcp = json.loads((desk / ".mcp.json").read_text())
    assert sorted(mcp["mcpServers"]) == ["calendar", desk_config.SERVER_NAME]
    claude = json.loads((desk / ".claude" / "settings.json").read_text())
    assert claude["enabledMcpjsonServers"] == ["calendar", desk_config.SERVER_NAME]
    assert claude["permissions"]["allow"] == ["Bash(git:*)", *desk_config.permissions()]
    assert desk_mcp_problems() == []
    assert doctor_agent.check_agent_tools().level == doctor.OK


def _row(row_id: int, prompt: str, status: str, **fields) -> legacy_rows.OriginalRow:
    values = {
        "scheduled_at": "2026-11-30 09:00:00.000000",
        "priority": "NORMAL",
        "session_id": None,
        "sticky_notes": "null",
        "executed_at": None,
        "execution_duration_ms": None,
        "error_message": None,
        "retry_count": 0,
        "max_retries": 3,
        "created_at": "2026-11-30 08:00:00",
        "created_by": "agent",
        "tags": None,
        **fields,
    }
    return legacy_rows.OriginalRow(id=row_id, prompt=prompt, status=status, **values)


def test_a_retry_chain_becomes_one_pulse_and_an_interrupted_run_is_pending_again():
    rows = [
        _row(1, "ping", "FAILED", executed_at="2026-11-30 09:00:05", error_message="boom"),
        _row(2, "ping", "FAILED", executed_at="2026-11-30 09:00:05", error_message="boom", created_by="x"),
        _row(
            3, "ping", "PENDING", retry_count=1, created_by="retry_agent", scheduled_at="2026-11-30 09:01:05"
        ),
        _row(4, "long job", "PROCESSING", priority="critical", sticky_notes='["a", 1]', tags='"solo"'),
        _row(5, "orphan retry", "PENDING", retry_count=2, created_by="retry_retry_telegram"),
        _row(6, "odd session", "PENDING", session_id="--dangerously-skip-permissions"),
    ]
    carried, result = legacy_rows.plan(rows)
    pulses = {pulse.pk: (pulse, attempts) for pulse, attempts, _ in carried}
    assert sorted(pulses) == [2, 3, 4, 5, 6] and result.retries_folded == 1 and result.interrupted == 1
    retried, attempts = pulses[3]
    assert (retried.status, retried.attempt_count, retried.source, retried.error_message) == (
        "pending",
        1,
        "agent",
        "boom",
    )
    assert [(a.number, a.succeeded, a.error) for a in attempts] == [(1, False, "boom")]
    assert retried.scheduled_at == datetime(2026, 11, 30, 9, 1, 5, tzinfo=UTC)
    assert pulses[2][0].status == "failed"  # created by someone else: not the row the retry copies
    running, attempts = pulses[4]
    assert (running.status, running.priority, running.attempt_count, attempts) == (
        "pending",
        "critical",
        0,
        [],
    )
    assert running.error_message == legacy_rows.INTERRUPTED
    assert (running.sticky_notes, running.tags) == (["a", "1"], ["solo"])
    orphan = pulses[5][0]
    assert (orphan.attempt_count, orphan.source) == (2, "telegram")
    assert pulses[6][0].session_id == "" and result.session_ids_dropped == 1  # never reaches --resume=


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_times_outside_reeves_years_move_inside_so_every_page_shows_the_pulse(admin_client, settings, zone):
    """The original accepted any time; one in year 9999 or year 1, shown in a zone 14 hours off UTC,
    leaves the range of a datetime and broke the dashboard and the pulse's page."""
    settings.TIME_ZONE = zone
    rows = [
        _row(1, "never", "PENDING", scheduled_at="9999-12-31 23:00:00"),
        _row(
            2, "ancient", "COMPLETED", scheduled_at="0001-01-01 01:00:00", executed_at="0001-01-01 01:00:05"
        ),
        _row(3, "ordinary", "PENDING"),
    ]
    carried, result = legacy_rows.plan(rows)
    pulses = {pulse.pk: (pulse, attempts) for pulse, attempts, _ in carried}
    assert pulses[1][0].scheduled_at == legacy_rows.LATEST
    assert pulses[2][0].scheduled_at == pulses[2][1][0].finished_at == legacy_rows.EARLIEST
    assert pulses[3][0].scheduled_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert result.times_moved == 3  # the second's scheduled_at twice (pulse, attempt) and its end once
    for pulse, attempts, _ in carried:
        pulse.save()
        for attempt in attempts:
            attempt.save()
    for url in [
        "/dashboard/",
        "/admin/pulses/pulse/",
        "/admin/pulses/pulse/1/change/",
        "/admin/pulses/pulse/2/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_an_unknown_status_stops_the_import_naming_the_row():
    with pytest.raises(legacy.LegacyError, match=r"pulse 7: unknown status 'PAUSED'"):
        legacy_rows.plan([_row(7, "x", "PAUSED")])


@pytest.mark.slow
def test_import_legacy_refuses_while_the_original_still_has_the_file_open(tmp_path):
    home = sqlite_home(tmp_path)
    original_reeve.create_sqlite(home.db_path, original_reeve.sample(datetime.now(UTC)))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM pulses'); "
            "print('ready', flush=True); time.sleep(60)",
            str(home.db_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = home.db_path.read_bytes()
        proc = home.manage("import_legacy", check=False)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"(pid {holder.pid})" in proc.stderr and "stop the original Reeve first" in proc.stderr
    assert home.db_path.read_bytes() == before and list(tmp_path.glob("*.original-*")) == []


@pytest.mark.slow
def test_a_queue_that_mains_migrate_half_converted_is_still_recognised_and_carried_over(original_home):
    # Before this change, `migrate` applied Django's own apps and then died on `pulses`: such a
    # database holds the original's queue beside Django's tables.
    half = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.core.management import "
            "call_command; call_command('migrate', 'auth', verbosity=0)",
        ],
        cwd=ROOT,
        env=original_home.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert half.returncode == 0, half.stderr
    refused = original_home.manage("migrate", "--settings", "reeve_site.settings", check=False)
    assert refused.returncode == 1 and PARAGRAPH.search(refused.stderr), refused.stderr
    proc = original_home.manage("import_legacy")
    assert "became 5 pulse(s)" in proc.stdout
    assert original_home.manage("migrate", "--check", check=False).returncode == 0


@pytest.mark.slow
def test_an_import_that_fails_half_way_leaves_the_original_as_it_was(tmp_path):
    home = sqlite_home(tmp_path)
    queue = original_reeve.sample(datetime.now(UTC))
    queue[-1].status = "PAUSED"  # no such status: found after the first rows were read and mapped
    original_reeve.create_sqlite(home.db_path, queue)
    dump = home.path / "dump.db"
    dump.write_bytes(home.db_path.read_bytes())
    proc = home.manage("import_legacy", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "pulse 6: unknown status 'PAUSED'; nothing was changed" in proc.stderr
    with closing(sqlite3.connect(home.db_path)) as now, closing(sqlite3.connect(dump)) as before:
        assert list(now.iterdump()) == list(before.iterdump())


@pytest.mark.slow
def test_a_postgresql_pulse_db_url_is_read_as_database_url_and_must_agree_with_it(tmp_path):
    home = sqlite_home(tmp_path)
    env = _env_with_url(home, "postgresql+asyncpg://reeve:s3cret@db.internal:5433/reeve")
    paths = _manage(env, "doctor", "--paths")
    assert paths.returncode == 0, paths.stderr
    assert "DATABASE_IS_SQLITE=0" in paths.stdout and "PULSE_DB_PATH=''" in paths.stdout
    assert "DATABASE_URL=postgres://reeve:***@db.internal:5433/reeve" in paths.stderr
    assert "s3cret" not in paths.stderr
    clash = _manage({**env, "DATABASE_URL": "postgres://reeve:s3cret@elsewhere/reeve"}, "doctor", "--paths")
    assert clash.returncode == 1 and "Traceback" not in clash.stderr
    assert (
        "PULSE_DB_URL" in clash.stderr
        and "DATABASE_URL (postgres://reeve:***@elsewhere/reeve)" in clash.stderr
    )
    assert "s3cret" not in clash.stderr


@pytest.mark.parametrize("count_column", ["attempt_count", "attempts"])
def test_reeves_own_queue_is_recognised_before_and_after_the_attempt_count_rename(tmp_path, count_column):
    """A Reeve database from before pulses 0010 (the run count still named `attempts`) is Reeve's."""
    path = tmp_path / "reeve.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            f"CREATE TABLE pulses (id INTEGER PRIMARY KEY, status TEXT, {count_column} INT, lease_owner TEXT)"
        )
        db.commit()
    assert legacy.inspect_sqlite_file(path).kind == legacy.REEVE


def _plan_within(rows: list[legacy_rows.OriginalRow], seconds: float = 20) -> object:
    """`plan(rows)`'s result or what it raised, failing the test when it runs longer than `seconds`
    (a loop over `retry_count=10**18` spun at 100 % CPU for ever)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(legacy_rows.plan(rows))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"plan() still ran after {seconds} s"
    return outcome[0]


def test_rows_reeve_cannot_hold_stop_the_import_naming_each_and_nothing_spins():
    """The original stored anything: a retry count of 10**18 (the import spun for ever inside its
    transaction), a BLOB for a time, a 300,000-character prompt, ids 0 and -5 (carried as they were)."""
    rows = [
        _row(1, "fine", "PENDING"),
        _row(2, "ping", "PENDING", retry_count=10**18, created_by="retry_agent"),
        _row(3, "blob", "PENDING", scheduled_at=b"\x00\x01binary"),
        _row(4, "x" * 300_000, "PENDING"),
        _row(0, "zero", "PENDING"),
        _row(-5, "negative", "PENDING"),
        _row(6, "€" * 40_000, "PENDING"),  # 120,000 bytes: more than one argument of exec may hold
        _row(7, "noted", "PENDING", sticky_notes=json.dumps(["n"] * 51)),
    ]
    refused = _plan_within(rows)

    assert isinstance(refused, legacy.LegacyError), refused
    message = str(refused)
    assert message.startswith("7 row(s) of the original cannot be carried over, so nothing was changed")
    for words in (
        "pulse 2: retry_count 1000000000000000000 is not a whole number from 0 to 100",
        "pulse 3: scheduled_at b'\\x00\\x01binary' is not a time",
        "pulse 4: 'prompt' is 300000 characters; at most 50000",
        "pulse 0: id 0 is not a positive whole number",
        "pulse -5: id -5 is not a positive whole number",
        "pulse 6: 'prompt' is 120000 bytes in UTF-8; at most 96000",
        "pulse 7: 'sticky_notes' holds more than 50 items",
    ):
        assert words in message, (words, message)
    assert "pulse 1:" not in message


def test_values_beyond_reeves_columns_are_brought_inside_them_and_counted():
    """A 10**15 ms duration overflowed timedelta (a traceback); a retry limit of a million is 100."""
    rows = [
        _row(1, "long run", "COMPLETED", executed_at="2026-11-30 09:00:05", execution_duration_ms=10**15),
        _row(2, "many retries", "PENDING", max_retries=10**6),
    ]
    carried, result = _plan_within(rows)

    pulses = {pulse.pk: (pulse, attempts) for pulse, attempts, _ in carried}
    long_run, [attempt] = pulses[1]
    assert (long_run.execution_duration_ms, attempt.duration_ms) == (None, None)
    assert attempt.started_at == attempt.finished_at == datetime(2026, 11, 30, 9, 0, 5, tzinfo=UTC)
    assert pulses[2][0].max_retries == 100
    assert result.limits_applied == 2


@pytest.mark.slow
def test_import_legacy_of_an_original_with_a_row_reeve_cannot_hold_refuses_it_and_changes_nothing(tmp_path):
    home = sqlite_home(tmp_path)
    original_reeve.create_sqlite(home.db_path, original_reeve.sample(datetime.now(UTC)))
    with closing(sqlite3.connect(home.db_path)) as db:
        db.execute("UPDATE pulses SET retry_count = ? WHERE id = 1", [10**18])
        db.execute("UPDATE pulses SET scheduled_at = ? WHERE id = 2", [b"\xff\x00binary"])  # not UTF-8
        db.commit()
    dump = home.path / "dump.db"
    dump.write_bytes(home.db_path.read_bytes())

    proc = home.manage("import_legacy", check=False, timeout=120)

    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "2 row(s) of the original cannot be carried over, so nothing was changed" in proc.stderr
    assert "pulse 1: retry_count 1000000000000000000" in proc.stderr
    assert "pulse 2: scheduled_at '(stored as blob)' is not a time" in proc.stderr
    with closing(sqlite3.connect(home.db_path)) as now, closing(sqlite3.connect(dump)) as before:
        assert list(now.iterdump()) == list(before.iterdump())
