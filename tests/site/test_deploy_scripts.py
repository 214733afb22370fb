"""The reeve-* helper scripts, run from a staged install against a real database.

SQLite by default; when the suite runs on PostgreSQL (DATABASE_URL), the home's database lives on
that cluster and each test starts from a copy made with CREATE DATABASE ... TEMPLATE.

The module stages `install.sh --root` once for a migrated Reeve home, fills the queue with pulses in
every status through the ORM (in a subprocess, on that home's database), and starts one gunicorn on it;
each test starts from that queue again and runs the scripts as a person would. systemd is not
consulted (REEVE_NO_SYSTEMD=1), so the results do not depend on the machine.

One web process serves the module (a gunicorn start costs more CPU than most of these tests): a test
sees it only after `installed.start_web()`; before that, and after `stop_web()`, the scripts read an
install whose API address nothing answers (`api-down.conf`: reeve.conf, then a closed port), which
they see as a web process that is not running: the connection refused.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.site.test_deploy import _current_user, _root_allowed, stage
from tests.support.reeve_processes import ROOT, ReeveHome, _admin, on_postgres

pytestmark = pytest.mark.slow

POPULATE = """
from datetime import timedelta
from django.utils import timezone
from pulses.models import Pulse
now = timezone.now()
rows = [
    ("pending", 2, "future pulse"), ("pending", -1, "overdue pulse"), ("pending", 3, "another future"),
    ("processing", -1, "running pulse"),
    ("completed", -5, "done one"), ("completed", -4, "done two"), ("completed", -3, "done three"),
    ("failed", -6, "broken one"), ("failed", -2, "broken two"),
    ("cancelled", 1, "called off"),
]
for status, hours, prompt in rows:
    Pulse.objects.create(
        prompt=prompt, status=status, scheduled_at=now + timedelta(hours=hours),
        error_message="agent said no" if status == "failed" else "",
        lease_expires_at=now + timedelta(hours=1) if status == "processing" else None,
        lease_owner="elsewhere:1" if status == "processing" else "",
    )
"""
LISTENER_POLLS = """
import os
from django.utils import timezone
from pulses.models import ListenerRecord
now = timezone.now()
ListenerRecord.objects.create(name="box:1", host="box", pid=1, started_at=now, last_seen=now)
"""
SUFFIX = ".sql.gz" if on_postgres() else ".db.gz"
COUNTS = "pending=3 processing=1 completed=3 failed=2 cancelled=1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Nothing listens on port 1 (a privileged port): the scripts' API check is refused at once.
API_DOWN_CONF = """# reeve.conf as install.sh wrote it, with an API address nothing answers.
. {conf}
REEVE_API_URL=http://127.0.0.1:1
"""


class Installed:
    """A staged install (under `root`) whose scripts work on `home`'s database; the module's web
    process answers them once `start_web` was called."""

    def __init__(self, home: ReeveHome, root: Path) -> None:
        self.home = home
        self.root = root
        self.api_up = False

    @property
    def env(self) -> dict[str, str]:
        # The populated queue's "overdue pulse" is an hour late: the watchdog's threshold is two
        # hours here, so the other checks decide; the tests of the watchdog set it back.
        env = {**self.home.env, "REEVE_NO_SYSTEMD": "1", "PULSE_OVERDUE_ALERT_MINUTES": "120"}
        if not self.api_up:
            env["REEVE_CONF"] = str(self.root / "etc/reeve/api-down.conf")
        return env

    def run(self, script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.root / "usr/local/bin" / script), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
        )

    def start_web(self) -> None:
        """The scripts see the module's web process from now on."""
        self.api_up = True

    def stop_web(self) -> None:
        """The scripts see no web process from now on (the module's keeps running)."""
        self.api_up = False


def start_web(home: ReeveHome) -> subprocess.Popen:
    """gunicorn for `home`, as the reeve-web unit starts it, once it answers /api/health."""
    log = open(home.path / "web.log", "w")  # noqa: SIM115
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env={**home.env, "WEB_CONCURRENCY": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{home.env['PULSE_API_PORT']}/api/health"
    import urllib.request

    def up() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            assert web.poll() is None, (home.path / "web.log").read_text()
            return False

    home.wait_for(up, timeout=60, interval=0.2, what="gunicorn to answer /api/health")
    return web


@pytest.fixture(scope="module")
def staged(migrated_home, tmp_path_factory):
    """One staged install for the module, and a populated database each test starts from."""
    base = tmp_path_factory.mktemp("deploy-scripts")
    home = migrated_home.copy_to(base / "home")
    home.extra_env.update(PULSE_API_PORT=str(free_port()), PULSE_API_TOKEN="Vq3x9LrT0bNk2WcYp7HsZe4MdFa8GjUo")
    home.manage("shell", "-c", POPULATE)
    stage(home, base / "root", *_root_allowed(), user=_current_user())
    conf = base / "root/etc/reeve"
    (conf / "api-down.conf").write_text(API_DOWN_CONF.format(conf=shlex.quote(str(conf / "reeve.conf"))))
    if on_postgres():
        template = f"{database_name(home)}_template"
        _admin(f'CREATE DATABASE "{template}" TEMPLATE "{database_name(home)}"')
        yield home, base / "root", template
        home.stop_all()
        _admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        return
    template = base / "template.db"
    shutil.copy(home.db_path, template)
    yield home, base / "root", template


@pytest.fixture(scope="module")
def web(staged):
    """The module's web process on the staged home's database (started once the template is made:
    PostgreSQL copies a database nobody is connected to). Each test's database is reset under it:
    on SQLite in place, on PostgreSQL dropped and made again (its connection is checked at each
    request, CONN_HEALTH_CHECKS, and made anew)."""
    home, _, _ = staged
    web = start_web(home)
    yield web
    web.send_signal(signal.SIGTERM)
    web.wait(timeout=30)


def database_name(home: ReeveHome) -> str:
    return home.database_url.rsplit("/", 1)[-1]


def empty_database(home: ReeveHome) -> None:
    """The home's database empty, as if never migrated (on SQLite its file stays, without a table:
    the module's web process keeps it open)."""
    if on_postgres():
        _admin(f'DROP DATABASE IF EXISTS "{database_name(home)}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{database_name(home)}"')
        return
    with closing(sqlite3.connect(home.db_path, timeout=30)) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        schema = conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('view', 'table')")
        # Views first; a full-text table takes its shadow tables with it (IF EXISTS: gone already).
        for kind, name in sorted(schema.fetchall(), key=lambda row: row[0] != "view"):
            if not name.startswith("sqlite_"):
                conn.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
        conn.commit()


@pytest.fixture
def installed(staged, web):
    home, root, template = staged
    if on_postgres():
        _admin(f'DROP DATABASE IF EXISTS "{database_name(home)}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{database_name(home)}" TEMPLATE "{template}"')
    else:
        # In place, through SQLite (not a file copy): the web process's open connection sees it.
        with (
            closing(sqlite3.connect(template)) as src,
            closing(sqlite3.connect(home.db_path, timeout=30)) as dst,
        ):
            src.backup(dst)
    for directory in (home.path / "logs", home.path / "backups"):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
    (home.path / "health-check.state").unlink(missing_ok=True)
    inst = Installed(home, root)
    yield inst
    home.stop_children()  # not stop_all: on PostgreSQL that drops the database the module shares


def table_prompts(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ID "))
    # ID STATUS PRIORITY DATE TIME TRIES SOURCE PROMPT: the scheduled column holds one space.
    return [line.split(maxsplit=7)[7] for line in lines[start + 1 :] if line.strip()]


def test_reeve_queue_shows_the_real_counts_and_each_view(installed):
    proc = installed.run("reeve-queue", "all")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == COUNTS
    assert len(table_prompts(proc.stdout)) == 10
    assert table_prompts(installed.run("reeve-queue", "overdue").stdout) == ["overdue pulse"]
    assert sorted(table_prompts(installed.run("reeve-queue").stdout)) == [
        "another future",
        "future pulse",
        "overdue pulse",
    ]
    assert sorted(table_prompts(installed.run("reeve-queue", "failed").stdout)) == [
        "broken one",
        "broken two",
    ]
    assert len(table_prompts(installed.run("reeve-queue", "completed").stdout)) == 3
    assert len(table_prompts(installed.run("reeve-queue", "-n", "2", "all").stdout)) == 2


def test_reeve_queue_shows_one_pulse_by_id_and_rejects_an_unknown_view(installed):
    (pulse_id,) = installed.home.query("SELECT id FROM pulses WHERE prompt = 'broken two'")[0]
    detail = installed.run("reeve-queue", str(pulse_id))
    assert detail.returncode == 0
    assert "status: failed" in detail.stdout and "agent said no" in detail.stdout
    bad = installed.run("reeve-queue", "sideways")
    assert bad.returncode != 0
    assert "unknown view 'sideways'" in bad.stderr


def test_reeve_status_shows_counts_and_last_pulses_and_exits_0_when_healthy(installed):
    installed.start_web()
    proc = installed.run("reeve-status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "systemd is not running here: service states skipped" in out
    assert "/api/health: healthy" in out
    assert f"  {COUNTS}" in out
    assert "called off" in out  # the newest pulse is among the last ones
    assert "broken two" in out.split("== Last failures")[1]
    assert "reeve-status: all good" in out


def test_reeve_status_exits_1_with_a_problem_line_when_the_api_is_down(installed):
    proc = installed.run("reeve-status")
    assert proc.returncode == 1
    assert "PROBLEM:" in proc.stdout and "/api/health" in proc.stdout
    assert f"  {COUNTS}" in proc.stdout  # the rest of the report is still there


def test_reeve_status_exits_1_when_the_database_is_not_migrated(installed):
    installed.start_web()
    empty_database(installed.home)
    proc = installed.run("reeve-status")
    assert proc.returncode == 1
    assert "FAIL  migrations" in proc.stdout


def test_reeve_status_reports_recent_errors_from_the_log_file(installed):
    installed.start_web()
    log = installed.home.path / "logs" / "daemon.log"
    with open(log, "a") as f:
        f.write("2026-01-01 10:00:00,000 ERROR 99 pulses.worker.loop pulse_crashed id=7 worker=x:1\n")
    out = installed.run("reeve-status").stdout
    assert "pulse_crashed id=7" in out.split("== Recent errors")[1]


def test_reeve_backup_writes_a_compressed_copy_with_every_pulse(installed, tmp_path):
    proc = installed.run("reeve-backup")
    assert proc.returncode == 0, proc.stderr
    backups = sorted((installed.home.path / "backups").glob(f"pulse_queue_*{SUFFIX}"))
    assert len(backups) == 1
    assert re.fullmatch(r"pulse_queue_\d{8}_\d{6}" + re.escape(SUFFIX), backups[0].name)
    assert f"Backup completed: {backups[0]}" in proc.stdout
    if on_postgres():  # restored into a fresh database, it holds every pulse
        fresh = ReeveHome(tmp_path / "fresh")
        try:
            fresh.manage("restore_db", str(backups[0]))
            counts = dict(fresh.query("SELECT status, COUNT(*) FROM pulses GROUP BY status"))
        finally:
            fresh.stop_all()
        assert counts == {"pending": 3, "processing": 1, "completed": 3, "failed": 2, "cancelled": 1}
        return
    copy = tmp_path / "copy.db"
    copy.write_bytes(gzip.decompress(backups[0].read_bytes()))
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM pulses GROUP BY status").fetchall())
    finally:
        conn.close()
    assert counts == {"pending": 3, "processing": 1, "completed": 3, "failed": 2, "cancelled": 1}


def test_reeve_backup_prunes_old_backups_and_takes_a_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = elsewhere / f"pulse_queue_20200101_030000{SUFFIX}"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    unrelated = elsewhere / "notes.txt"
    unrelated.write_text("keep me")
    proc = installed.run("reeve-backup", "--dir", str(elsewhere))
    assert proc.returncode == 0, proc.stderr
    assert not old.exists() and unrelated.exists()
    assert len(list(elsewhere.glob(f"pulse_queue_*{SUFFIX}"))) == 1


def test_reeve_heartbeat_schedules_one_pulse_an_hour_and_status_shows_it(installed):
    first = installed.run("reeve-heartbeat")
    assert first.returncode == 0, first.stderr
    assert "Scheduled pulse #" in first.stdout
    again = installed.run("reeve-heartbeat")
    assert "Already scheduled pulse #" in again.stdout
    rows = installed.home.query("SELECT source, tags FROM pulses WHERE source = 'heartbeat'")
    assert len(rows) == 1 and "heartbeat" in json.loads(rows[0][1])
    installed.start_web()
    status = installed.run("reeve-status").stdout
    assert "ok    heartbeat      last heartbeat #" in status
    assert status.split("== Last heartbeat\n")[1].startswith("  last heartbeat #")


def test_reeve_health_check_says_ok_when_healthy_and_exits_1_when_the_api_is_down(installed):
    down = installed.run("reeve-health-check")
    assert down.returncode == 1
    assert "ERROR: API health check failed" in down.stdout
    installed.start_web()
    up = installed.run("reeve-health-check")
    assert up.returncode == 0
    assert up.stdout.strip() == "OK: All services healthy"
    assert installed.run("reeve-health-check", "--quiet").stdout == ""
    # Paused, nothing runs: still healthy (nothing to alert about), and the OK line says why.
    installed.home.manage("queue", "pause", "--reason", "upgrade")
    paused = installed.run("reeve-health-check")
    assert paused.returncode == 0
    assert paused.stdout.startswith("OK: All services healthy; the queue is paused: "), paused.stdout
    assert "upgrade" in paused.stdout


def test_reeve_health_check_and_reeve_status_agree_on_what_healthy_means(installed):
    def both() -> tuple[int, int]:
        return installed.run("reeve-health-check").returncode, installed.run("reeve-status").returncode

    assert both() == (1, 1)  # the API is down
    installed.start_web()
    assert both() == (0, 0)
    installed.stop_web()
    empty_database(installed.home)  # doctor FAILs: no tables
    check = installed.run("reeve-health-check")
    assert check.returncode == 1 and "ERROR: doctor: migrations" in check.stdout, check.stdout
    status = installed.run("reeve-status")
    assert status.returncode == 1 and "PROBLEM: doctor: migrations" in status.stdout
    assert "== Last heartbeat\n  unknown" in status.stdout


def test_reeve_health_check_and_reeve_status_fail_while_the_agent_cannot_run(installed):
    installed.start_web()
    installed.home.query(
        "INSERT INTO agent_hold (id, held, reason, problem, fix, detail, since, recheck_at, rechecks, "
        "warning) VALUES (1, ?, 'not_logged_in', 'Claude Code is not logged in', "
        "'Run `sudo -u reeve claude`.', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, '')",
        (True,),
    )
    still_broken = {"FAKE_AGENT_MODE": "not_logged_in"}  # doctor's probe finds it unable to run still
    check = installed.run("reeve-health-check", env=still_broken)
    assert check.returncode == 1
    assert "ERROR: doctor: agent ready no pulse runs: Claude Code is not logged in" in check.stdout, (
        check.stdout
    )
    status = installed.run("reeve-status", env=still_broken)
    assert status.returncode == 1 and "PROBLEM: doctor: agent ready no pulse runs:" in status.stdout
    # Fixed: doctor's probe sees the agent run, which ends the hold, and health is good again.
    assert installed.run("reeve-health-check").returncode == 0
    assert installed.home.query("SELECT held FROM agent_hold") in ([(0,)], [(False,)])


def test_reeve_health_check_alerts_once_when_health_turns_bad_and_once_when_it_recovers(
    installed, fake_telegram
):
    # Telegram configured: its listener must poll too; a record of one that just reported stands in.
    env = {**fake_telegram.env(42), "PULSE_HEARTBEAT_SECONDS": "3600"}
    installed.home.manage("shell", "-c", LISTENER_POLLS)
    for _ in range(2):
        assert installed.run("reeve-health-check", "--quiet", "--alert", env=env).returncode == 1
    alerts = [text for text in fake_telegram.sent_texts if "Reeve is unhealthy" in text]
    assert len(alerts) == 1 and "API health check failed" in alerts[0], fake_telegram.sent_texts
    installed.start_web()
    assert installed.run("reeve-health-check", "--quiet", "--alert", env=env).returncode == 0
    assert installed.run("reeve-health-check", "--quiet", "--alert", env=env).returncode == 0
    assert len([text for text in fake_telegram.sent_texts if "Reeve is healthy again" in text]) == 1
    assert len([text for text in fake_telegram.sent_texts if "Reeve is unhealthy" in text]) == 1
    assert not (installed.home.path / "health-check.state").exists()


OVERDUE_AN_HOUR_AGO = (
    "from datetime import timedelta; from django.utils import timezone; from pulses.models import Pulse; "
    "Pulse.objects.filter(prompt='overdue pulse').update(scheduled_at=timezone.now() - timedelta(hours=1))"
)


def test_reeve_health_check_and_reeve_status_fail_naming_a_pulse_overdue_while_no_worker_runs(installed):
    # The module's queue was filled when its first test began: an hour late then, more by now on a
    # loaded machine (73 min once). An hour late from now, as the check below reads it.
    installed.home.manage("shell", "-c", OVERDUE_AN_HOUR_AGO)
    installed.start_web()
    late = {"PULSE_OVERDUE_ALERT_MINUTES": "10"}
    [(pulse_id,)] = installed.home.query("SELECT id FROM pulses WHERE prompt = 'overdue pulse'")
    check = installed.run("reeve-health-check", env=late)
    assert check.returncode == 1
    named = rf"ERROR: doctor: health pulse #{pulse_id} overdue by 6\d min: no worker is running"
    assert re.search(named, check.stdout), check.stdout
    status = installed.run("reeve-status", env=late)
    assert status.returncode == 1 and f"PROBLEM: doctor: health pulse #{pulse_id} overdue" in status.stdout


def test_reeve_logs_without_a_journal_shows_the_log_file_and_the_heartbeat_log(installed):
    logs = installed.home.path / "logs"
    (logs / "heartbeat.log").write_text("".join(f"heartbeat line {n}\n" for n in range(10)))
    proc = installed.run("reeve-logs", "-n", "3", "heartbeat")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["heartbeat line 7", "heartbeat line 8", "heartbeat line 9"]
    installed.run("reeve-heartbeat")
    proc = installed.run("reeve-logs", "-n", "5", "worker")
    assert proc.returncode == 0
    assert "no systemd journal here" in proc.stderr
    assert "pulse_scheduled" in proc.stdout
    assert installed.run("reeve-logs", "sideways").returncode == 2


# --- credential keep-alive ----------------------------------------------------------------------

FAKE_CLAUDE = """#!{python}
import json, os, sys, time
path = os.environ["CLAUDE_CREDENTIALS_FILE"]
with open(os.environ["FAKE_CLAUDE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_CLAUDE_REFRESHES") == "1":
    data = json.load(open(path))
    data["claudeAiOauth"]["expiresAt"] = int((time.time() + 8 * 3600) * 1000)
    json.dump(data, open(path, "w"))
print("OK")
"""


def _credentials(path: Path, hours: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    expires = int((time.time() + hours * 3600) * 1000)
    path.write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r", "expiresAt": expires}})
    )


@pytest.fixture
def claude(installed, tmp_path):
    fake = tmp_path / "claude"
    fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
    fake.chmod(0o755)
    creds = tmp_path / "claude-home" / ".credentials.json"
    env = {
        "CLAUDE_COMMAND": str(fake),
        "CLAUDE_CREDENTIALS_FILE": str(creds),
        "FAKE_CLAUDE_LOG": str(tmp_path / "claude.log"),
    }
    return creds, env, tmp_path / "claude.log"


def _keepalive(installed, claude, *, hours: float, **env: str):
    """Run reeve-credential-keepalive on a token with `hours` left: its process and the fake
    Claude's log of the runs it made."""
    creds, claude_env, log = claude
    _credentials(creds, hours=hours)
    return installed.run("reeve-credential-keepalive", env={**claude_env, **env}), log


def test_credential_keepalive_leaves_a_token_with_hours_left_alone(installed, claude):
    proc, log = _keepalive(installed, claude, hours=20)
    assert proc.returncode == 0
    assert "[claude-code] ok: token valid for 19h" in proc.stdout
    assert not log.exists()


def test_credential_keepalive_refreshes_a_token_expiring_within_6_hours(installed, claude):
    proc, log = _keepalive(installed, claude, hours=2, FAKE_CLAUDE_REFRESHES="1")
    assert proc.returncode == 0, proc.stdout
    assert "[claude-code] ok: refreshed: token now valid for 7h" in proc.stdout
    assert "--print" in json.loads(log.read_text().splitlines()[0])


def test_credential_keepalive_fails_when_the_refresh_does_not_extend_the_token(installed, claude):
    proc, _ = _keepalive(installed, claude, hours=1)
    assert proc.returncode == 1
    assert "[claude-code] FAILED (1): refresh run did not extend the token" in proc.stdout
    assert "claude /login" in proc.stdout


def test_credential_keepalive_skips_a_provider_whose_credentials_are_absent(installed, claude):
    _, env, _ = claude
    proc = installed.run("reeve-credential-keepalive", env=env)
    assert proc.returncode == 0
    assert "[claude-code] skipped: no Claude Code credentials" in proc.stdout


def test_credential_keepalive_check_only_refreshes_nothing(installed, claude):
    creds, env, log = claude
    _credentials(creds, hours=1)
    proc = installed.run("reeve-credential-keepalive", "--check", env=env)
    assert proc.returncode == 0
    assert "would refresh" in proc.stdout and not log.exists()


def test_credential_keepalive_runs_the_claude_command_install_sh_wrote_when_cron_has_none(installed, claude):
    """Cron's PATH has no npm-prefix `claude` and cron's environment no CLAUDE_COMMAND: the keep-alive
    uses the one install.sh found and wrote into reeve.conf."""
    creds, env, log = claude
    conf = installed.root / "etc/reeve/reeve.conf"
    original = conf.read_text()
    conf.write_text(original + f"REEVE_CLAUDE_COMMAND={env['CLAUDE_COMMAND']}\n")
    try:
        _credentials(creds, hours=2)
        cron_env = {k: v for k, v in env.items() if k != "CLAUDE_COMMAND"}
        proc = installed.run(
            "reeve-credential-keepalive", env={**cron_env, "CLAUDE_COMMAND": "", "FAKE_CLAUDE_REFRESHES": "1"}
        )
    finally:
        conf.write_text(original)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[claude-code] ok: refreshed" in proc.stdout
    assert log.exists()
