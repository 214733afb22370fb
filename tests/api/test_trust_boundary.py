"""Issue 11, black-box: what a pulse's author (an API client, a command, the admin, the agent's own
stream) may hand to Reeve. Real gunicorn over HTTP, real commands, the real worker with the fake agent."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.api.test_api_live import LiveReeve
from tests.site.test_deploy import UNINSTALL, staged_copy, staged_once  # noqa: F401  (fixtures)
from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ROOT, ReeveHome, checkout_with_dotenv, manage_in, on_postgres

SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"
OPTION_LIKE_SESSIONS = ("--mcp-config=evil.json", "-r", "sess-1", f"{SESSION}\n--verbose")


@pytest.fixture(scope="module")
def served(migrated_home, tmp_path_factory):
    """The module's web processes for the tests that only talk to the API, one per time zone, each
    started once (a gunicorn start costs ~1 s of CPU) and handed to a test with no pulse stored."""
    started: dict[str, LiveReeve] = {}

    def serve(time_zone: str = "") -> LiveReeve:
        if time_zone not in started:
            home = migrated_home.copy_to(tmp_path_factory.mktemp("web"))
            if time_zone:
                home.extra_env["TIME_ZONE"] = time_zone  # the web process and the commands
            started[time_zone] = LiveReeve(home).start(web_only=True)
        live = started[time_zone]
        live.home.query("DELETE FROM pulses")
        return live

    yield serve
    for live in started.values():
        live.stop()
        live.home.stop_all()


@pytest.fixture
def web(served):
    return served()


@pytest.fixture
def web_new_york(served):
    return served("America/New_York")


# --- session ids: only what the agent CLI accepts ---------------------------------------------------
@pytest.mark.slow
def test_the_api_refuses_a_session_id_the_agent_cli_would_read_as_an_option(web):
    for session_id in OPTION_LIKE_SESSIONS:
        status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "hi", "session_id": session_id})
        assert status == 400, (session_id, body)
        assert "session_id" in body["errors"] and "UUID" in body["errors"]["session_id"][0]
    assert web.home.query("SELECT count(*) FROM pulses") == [(0,)]
    status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "hi", "session_id": SESSION})
    assert (status, body["session_id"]) == (201, SESSION)
    status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "hi", "session_id": ""})
    assert (status, body["session_id"]) == (201, "")


@pytest.mark.slow
def test_trigger_pulse_refuses_an_option_like_session_with_a_command_error(reeve_home):
    proc = reeve_home.manage("trigger_pulse", "hi", "--session=--mcp-config=evil.json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--session" in proc.stderr and "UUID" in proc.stderr
    assert reeve_home.query("SELECT count(*) FROM pulses") == [(0,)]
    reeve_home.manage("trigger_pulse", "hi", "--session", SESSION.upper())
    assert reeve_home.query("SELECT session_id FROM pulses") == [(SESSION.upper(),)]


@pytest.mark.slow
def test_a_session_id_the_agent_announces_is_stored_only_when_the_cli_would_accept_it(reeve_home):
    reeve_home.manage("trigger_pulse", "mode=announce:--mcp-config=evil.json")
    reeve_home.manage("trigger_pulse", f"mode=announce:{SESSION}")
    reeve_home.manage("run_pulse_worker", "--once")
    rows = reeve_home.query("SELECT prompt, status, session_id FROM pulses ORDER BY id")
    assert rows == [
        ("mode=announce:--mcp-config=evil.json", "completed", ""),
        (f"mode=announce:{SESSION}", "completed", SESSION),
    ]
    attempts = reeve_home.query("SELECT session_id FROM pulse_attempts ORDER BY pulse_id")
    assert attempts == [("",), (SESSION,)]
    assert "agent_session_id_refused" in (reeve_home.path / "logs" / "daemon.log").read_text()


# --- times: bounded, clock times real, nothing stored breaks a listing ------------------------------
@pytest.mark.slow
def test_times_outside_2000_to_9000_are_a_400_naming_the_range(web):
    for when in (
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "1999-06-01T00:00:00Z",
        "in 2900000 days",
    ):
        status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": when})
        assert status == 400, (when, body)
        assert "years 2000 to 9000" in body["errors"]["scheduled_at"][0]
    status, body = web.request(
        "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "2031-01-01T09:00Z"}
    )
    assert status == 201
    status, body = web.request(
        "POST", f"/api/pulses/{body['id']}/reschedule", {"scheduled_at": "9999-12-31T23:59:59-14:00"}
    )
    assert status == 400 and "years 2000 to 9000" in body["errors"]["scheduled_at"][0]


@pytest.mark.slow
def test_a_time_that_leaves_the_range_only_in_time_zone_is_a_400(web_new_york):
    status, body = web_new_york.request(
        "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "2000-01-01T00:00:00Z"}
    )
    assert status == 400 and "years 2000 to 9000" in body["errors"]["scheduled_at"][0]
    assert (
        web_new_york.request(
            "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "0001-01-01T00:00:00Z"}
        )[0]
        == 400
    )
    assert web_new_york.home.query("SELECT count(*) FROM pulses") == [(0,)]


@pytest.mark.slow
def test_an_impossible_clock_time_is_a_400_not_the_current_time(web):
    for when in ("tomorrow at 25:00", "tomorrow at 9:75", "tomorrow at 13pm", "tomorrow 24:00"):
        status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": when})
        assert status == 400, (when, body)
        assert "not a time of day" in body["errors"]["scheduled_at"][0]
    status, body = web.request(
        "POST", "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "tomorrow at 23:30"}
    )
    assert status == 201 and "T23:30:00" in body["scheduled_at"]


@pytest.mark.slow
def test_a_time_stored_before_the_bounds_never_breaks_a_listing(web_new_york):
    web = web_new_york
    status, body = web.request("POST", "/api/pulse/trigger", {"prompt": "old row", "scheduled_at": "now"})
    assert status == 201
    year_one = "0001-01-01 00:00:00" + ("+00" if on_postgres() else "")  # as each database stores it
    web.home.query("UPDATE pulses SET scheduled_at = ? WHERE id = ?", (year_one, body["id"]))
    for path in (
        "/api/pulses",
        "/api/pulses?status=overdue",
        "/api/pulse/upcoming",
        f"/api/pulses/{body['id']}",
    ):
        status, page = web.request("GET", path)
        assert status == 200, (path, page)
        assert "0001-01-01T00:00:00Z" in str(page)
    listing = web.home.manage("pulse_queue", "all", check=False)
    assert listing.returncode == 0 and "old row" in listing.stdout, listing.stderr


# --- lease_lost means what it says --------------------------------------------------------------------
@pytest.mark.slow
def test_runs_that_finish_normally_never_log_lease_lost(reeve_home):
    """Short leases renew every 0.2 s while four runs at a time finish: a finished run that the loop
    has not reaped yet is not a lost lease."""
    reeve_home.extra_env.update(PULSE_LEASE_SECONDS="0.6", PULSE_MAX_CONCURRENT="4")
    reeve_home.manage("shell", "-c", SCHEDULE_MANY)
    reeve_home.manage("run_pulse_worker", "--once", timeout=300)
    assert reeve_home.query("SELECT status, count(*) FROM pulses GROUP BY status") == [("completed", 60)]
    log = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert "lease_lost" not in log


@pytest.mark.slow
def test_a_lease_another_worker_took_over_is_logged_as_lease_lost(reeve_home):
    reeve_home.extra_env.update(PULSE_LEASE_SECONDS="0.6")
    reeve_home.manage("trigger_pulse", "mode=sleep:3")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT status FROM pulses") == [("processing",)], what="the run"
    )
    reeve_home.query("UPDATE pulses SET lease_owner = 'other-host:1', attempt_count = attempt_count + 1")
    reeve_home.wait_for(lambda: "lease_lost id=1 " in reeve_home.output(worker), what="lease_lost")
    worker.terminate()
    worker.wait(timeout=30)


SCHEDULE_MANY = "\n".join(
    [
        "from pulses import queue",
        "for i in range(60): queue.schedule(prompt=f'mode=sleep:0.{i % 3} run {i}')",
    ]
)


# --- configuration that used to do the wrong thing quietly ------------------------------------------
GUIDE_ENV = """\
# Reeve configuration, as the deployment guide writes it
PULSE_MAX_CONCURRENT=1   # Max concurrent pulses
PULSE_TIMEOUT_SECONDS=600 # Agent timeout
TIME_ZONE=Europe/Paris
TELEGRAM_API_BASE_URL=http://127.0.0.1:9/bot#fragment  # a # inside a word is part of the value
LOG_LEVEL="WARNING"  # quoted, then a comment
TELEGRAM_CHAT_ID='42,43' # two chats
PULSE_API_HOST=127.0.0.1
"""


def _manage_in(checkout: Path, home: ReeveHome, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in home.env.items() if k != "REEVE_IGNORE_DOTENV"}
    return manage_in(checkout, env, *args)


SHOW_SETTINGS = (
    "from django.conf import settings as s; "
    "print(s.PULSE_MAX_CONCURRENT, s.PULSE_TIMEOUT_SECONDS, s.LOG_LEVEL, s.TELEGRAM_CHAT_ID, s.TIME_ZONE, "
    "s.TELEGRAM_API_BASE_URL)"
)


@pytest.mark.slow
def test_inline_comments_in_dotenv_are_comments_as_the_guide_writes_them(tmp_path, reeve_home):
    checkout = checkout_with_dotenv(tmp_path, GUIDE_ENV)
    proc = _manage_in(checkout, reeve_home, "shell", "-c", SHOW_SETTINGS)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert (
        proc.stdout.strip().splitlines()[-1]
        == "1 600.0 WARNING ['42', '43'] Europe/Paris http://127.0.0.1:9/bot#fragment"
    )


@pytest.mark.slow
def test_an_unreadable_dotenv_line_is_named_without_a_traceback(tmp_path, reeve_home):
    checkout = checkout_with_dotenv(tmp_path, "PULSE_MAX_CONCURRENT=1\nTELEGRAM_BOT_TOKEN='12345:abc\n")
    proc = _manage_in(checkout, reeve_home, "pulse_queue")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert ".env, line 2" in proc.stderr and "not closed" in proc.stderr


@pytest.mark.slow
@pytest.mark.database_independent  # refused from the settings alone, before a database is opened
@pytest.mark.parametrize("token", ["your_secure_random_token_here", "fifteen-chars-x", "a" * 34])
def test_the_web_process_refuses_a_placeholder_or_short_token_saying_what_to_do(tmp_path, token):
    with socket.socket() as sock:  # should it start after all, on a port of its own
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # Reeve's home in it: no DATABASE_URL, a SQLite file of its own
        "REEVE_IGNORE_DOTENV": "1",
        "DJANGO_SETTINGS_MODULE": "reeve_site.settings",
        "PULSE_API_TOKEN": token,
        "PULSE_API_PORT": str(port),
        "PYTHONWARNINGS": "ignore",
    }
    web = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.returncode != 0
    assert "PULSE_API_TOKEN" in web.stderr and "secrets.token_urlsafe(32)" in web.stderr
    assert token not in web.stderr
    started = subprocess.run(
        [sys.executable, "manage.py", "run_reeve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1 and "Traceback" not in started.stderr
    assert "refusing to start the API: PULSE_API_TOKEN" in started.stderr


@pytest.mark.slow
def test_a_bind_address_other_than_the_default_is_an_allowed_host(reeve_home, tmp_path):
    live = LiveReeve(reeve_home)
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=live.env(PULSE_API_HOST="127.0.0.2", HOME=str(user_home), XDG_RUNTIME_DIR=""),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.2:{live.port}/api/health"
        answer = reeve_home.wait_for(lambda: _get(url), timeout=60, interval=0.2, what="the web process")
        assert answer == 200  # on 127.0.0.2 with Host: 127.0.0.2, not 400 DisallowedHost
        # No gunicornc control socket the agent (the same user) could reach: ~/.gunicorn/gunicorn.ctl.
        assert list(user_home.iterdir()) == []
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.mark.slow
def test_a_wildcard_bind_answers_to_this_machines_name(reeve_home):
    shown = reeve_home.manage(
        "shell", "-c", "from django.conf import settings; print(settings.ALLOWED_HOSTS)", check=False
    )
    assert socket.gethostname() not in shown.stdout
    wildcard = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.ALLOWED_HOSTS)",
        ],
        cwd=ROOT,
        env={**reeve_home.env, "PULSE_API_HOST": "0.0.0.0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert socket.gethostname() in wildcard.stdout and "localhost" in wildcard.stdout


BOT_TOKEN = "7712345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.mark.slow
def test_the_bot_token_never_reaches_the_logs_even_at_debug(reeve_home):
    fake = FakeTelegram(token=BOT_TOKEN).start()
    try:
        reeve_home.extra_env.update(fake.env(42), LOG_LEVEL="DEBUG")
        listener = reeve_home.start("run_telegram_listener", "--poll-timeout", "1")
        fake.send_text(42, "hello", name="Ada")
        reeve_home.wait_for(
            lambda: reeve_home.query("SELECT count(*) FROM pulses") == [(1,)], what="the pulse"
        )
        reeve_home.wait_for(lambda: len(fake.calls_to("getUpdates")) >= 3, what="more polls")
        listener.send_signal(signal.SIGTERM)
        listener.wait(timeout=30)
    finally:
        fake.stop()
    logs = reeve_home.output(listener) + (reeve_home.path / "logs" / "daemon.log").read_text()
    assert "getUpdates" in logs  # the DEBUG lines are there, without the token
    assert BOT_TOKEN not in logs and BOT_TOKEN.split(":")[1] not in logs


# --- uninstall.sh --purge removes only Reeve's own data directory ------------------------------------
def _purge_with_recorded_dir(root: Path, recorded: str) -> subprocess.CompletedProcess:
    conf = root / "etc" / "reeve" / "reeve.conf"
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("REEVE_DATA_DIR=")]
    conf.write_text("\n".join([*lines, f"REEVE_DATA_DIR={recorded}"]) + "\n")
    return subprocess.run(
        ["bash", str(UNINSTALL), "--root", str(root), "--purge"], capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "recorded", ["/var/lib", "/opt", "/usr/local", "DATA/../..", "/var/lib/someone-else"]
)
def test_purge_refuses_a_directory_that_is_not_reeves_naming_it(staged_copy, recorded):  # noqa: F811
    home, root = staged_copy
    data = home.path.relative_to("/")
    recorded = recorded.replace("DATA", f"/{data}")
    victim = root / recorded.lstrip("/") / "precious.txt"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("not Reeve's")
    proc = _purge_with_recorded_dir(root, recorded)
    assert proc.returncode != 0
    assert f"refusing to purge {recorded}" in proc.stderr
    assert victim.read_text() == "not Reeve's"
    assert (root / data / ".reeve-data-dir").is_file()  # and Reeve's own data is kept too


@pytest.mark.slow
def test_purge_refuses_a_path_that_climbs_out_of_the_staging_root(tmp_path, staged_copy):  # noqa: F811
    home, root = staged_copy
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pulse_queue.db").write_text("someone's")
    proc = _purge_with_recorded_dir(root, f"/../../../../../../../../{outside.relative_to('/')}")
    assert proc.returncode != 0 and "outside the staging root" in proc.stderr
    assert (outside / "pulse_queue.db").read_text() == "someone's"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_purge_refuses_a_marked_directory_another_user_owns(staged_copy):  # noqa: F811
    home, root = staged_copy
    data = root / home.path.relative_to("/")
    os.chown(data, 65534, 65534)  # nobody
    proc = _purge_with_recorded_dir(root, f"/{home.path.relative_to('/')}")
    assert proc.returncode != 0 and "not by the service user" in proc.stderr
    assert (data / ".reeve-data-dir").is_file()


@pytest.mark.slow
def test_purge_removes_reeves_marked_data_directory(staged_copy):  # noqa: F811
    home, root = staged_copy
    data = root / home.path.relative_to("/")
    (data / "pulse_queue.db").write_bytes(b"the queue")
    proc = subprocess.run(
        ["bash", str(UNINSTALL), "--root", str(root), "--purge"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"purged /{home.path.relative_to('/')}" in proc.stdout
    assert not data.exists()


# --- restore_db swaps in only a Reeve database --------------------------------------------------------
def _not_reeve_backups(tmp_path: Path) -> list[Path]:
    if on_postgres():
        dump = b"-- PostgreSQL database dump\nCREATE TABLE public.other (id integer);\n"
        files = {
            "other.sql.gz": gzip.compress(dump),
            "empty-dump.sql.gz": gzip.compress(dump.splitlines()[0]),
        }
    else:
        other = tmp_path / "other.db"
        with sqlite3.connect(other) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        files = {"empty.db": b"", "other.db.gz": gzip.compress(other.read_bytes())}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / name for name in files]


@pytest.mark.slow
def test_restore_db_refuses_a_sound_file_that_is_not_a_reeve_database(reeve_home, tmp_path):
    reeve_home.manage("trigger_pulse", "still queued")
    for backup in _not_reeve_backups(tmp_path):
        proc = reeve_home.manage("restore_db", str(backup), check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{backup} is not a Reeve database" in proc.stderr
        assert reeve_home.query("SELECT prompt FROM pulses") == [("still queued",)]


# --- private files, and a write gate nobody can hold forever -----------------------------------------
def _modes(home: ReeveHome) -> dict[str, str]:
    """The mode of everything Reeve wrote in its home, by relative path."""
    found = {".": oct(stat.S_IMODE(home.path.stat().st_mode))}
    for path in home.path.rglob("*"):
        relative = path.relative_to(home.path)
        if relative.parts[0] in ("desk", "checkout") or path.name.startswith(("proc-", "live.log")):
            continue  # the test's own files
        found[str(relative)] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


@pytest.mark.slow
def test_everything_reeve_writes_is_private_to_its_user(reeve_home):
    if on_postgres():
        pytest.skip("the SQLite files are what this is about")
    os.umask(0o022)  # as a login shell leaves it
    live = LiveReeve(reeve_home).start()
    try:
        status, body = live.request("POST", "/api/pulse/trigger", {"prompt": "private"})
        assert status == 201
        live.wait_for(
            lambda: reeve_home.query("SELECT status FROM pulses") == [("completed",)], what="the run"
        )
        assert live.request("GET", "/metrics", token=None)[0] == 200
        reeve_home.manage("backup_db")
    finally:
        live.stop()
    modes = _modes(reeve_home)
    for expected in ("pulse_queue.db", "pulse_queue.db.write-gate", "logs/daemon.log", "backups", "metrics"):
        assert expected in modes
    assert any(name.startswith("backups/pulse_queue_") for name in modes)
    loose = {name: mode for name, mode in modes.items() if mode not in ("0o600", "0o700")}
    assert loose == {}


@pytest.mark.slow
def test_an_existing_installation_is_tightened_on_start_and_doctor_reports_it_before(reeve_home):
    reeve_home.manage("trigger_pulse", "mode=noop")
    for folder in ("logs", "backups"):
        (reeve_home.path / folder).mkdir(exist_ok=True)
    (reeve_home.path / "backups" / "pulse_queue_20260101_030000.db.gz").write_bytes(b"old backup")
    (reeve_home.path / "logs" / "daemon.log").write_text("old lines\n")
    loose = [p for p in reeve_home.path.rglob("*") if p.name != "desk" and "desk" not in p.parts]
    for path in [reeve_home.path, *loose]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    doctor = reeve_home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert "other local users can read" in doctor.stdout
    reeve_home.manage("run_pulse_worker", "--once")
    remaining = {n: m for n, m in _modes(reeve_home).items() if m not in ("0o600", "0o700")}
    assert remaining == {}
    doctor = reeve_home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert "other local users can read" not in doctor.stdout and "are private" in doctor.stdout


@pytest.mark.slow
def test_a_held_write_gate_is_a_503_with_retry_after_once_the_busy_timeout_passes(reeve_home):
    if on_postgres():
        pytest.skip("the write gate is SQLite's")
    live = LiveReeve(reeve_home).start(web_only=True, SQLITE_BUSY_TIMEOUT_SECONDS="2")
    try:
        with open(f"{reeve_home.db_path}.write-gate", "a") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)  # a stuck process, or anyone who could open the file
            request = urllib.request.Request(
                f"{live.url}/api/pulse/trigger",
                data=json.dumps({"prompt": "blocked"}).encode(),
                headers={"Authorization": f"Bearer {live.token}", "Content-Type": "application/json"},
                method="POST",
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=20)
            assert answer.value.code == 503 and answer.value.headers["Retry-After"]
            assert "try again" in json.loads(answer.value.read())["detail"]
        assert live.request("POST", "/api/pulse/trigger", {"prompt": "after"})[0] == 201
    finally:
        live.stop()
