"""Issue 30, black-box: the agent is untrusted code with a shell. Real Reeve (`manage.py run_reeve`:
the worker, gunicorn, the reaper) from a checkout whose `.env` holds every secret, on SQLite and on a
PostgreSQL cluster that wants a password; the fake agent tries with its own shell what an injected
one would (tests/support/fake_agent.py, mode=attack)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pulses.agent import sandbox
from tests.api.test_api_live import free_port
from tests.support.reeve_processes import (
    FAKE_AGENT_COMMAND,
    POSTGRES_HALF_ALONGSIDE,
    ReeveHome,
    checkout_with_dotenv,
    manage_in,
    on_postgres,
)

pytestmark = pytest.mark.slow
needs_bwrap = pytest.mark.skipif(bool(sandbox.bwrap_problem()), reason=sandbox.bwrap_problem() or "")

API_TOKEN = "api-token-the-agent-must-never-see-0123456789"
BOT_TOKEN = "123456:bot-token-the-agent-must-never-see"
SECRET_KEY = "secret-key-the-agent-must-never-see-0123456789"
DB_PASSWORD = "db-password-the-agent-must-never-see"
KEY_FILE_SECRET = "key-file-the-agent-must-never-see"
LOGIN = '{"claudeAiOauth": {"accessToken": "the-agents-own-login"}}'


@dataclass
class Cluster:
    """A PostgreSQL cluster that wants a password over TCP (scram) and trusts its socket folder."""

    path: Path
    port: int
    sockets: Path

    def url(self, *, password: bool = True) -> str:
        auth = f"reeve:{DB_PASSWORD}" if password else "reeve"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/reeve"


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture
def password_cluster():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries")
    if not on_postgres() and os.environ.get(POSTGRES_HALF_ALONGSIDE):
        pytest.skip("the PostgreSQL half runs it")
    path = Path(tempfile.mkdtemp(prefix="reeve-pg-scram-"))
    path.chmod(0o755)
    (path / "pw").write_text(DB_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(path, "postgres")
        shutil.chown(path / "pw", "postgres")
    cluster = Cluster(path, free_port(), path)
    init = [str(bin_dir / "initdb"), "-D", str(path / "data"), "-U", "reeve", f"--pwfile={path / 'pw'}"]
    init += ["--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-locale"]
    subprocess.run(_as_owner(init), check=True, capture_output=True)
    options = f"-p {cluster.port} -k {path} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(bin_dir / "pg_ctl"), "-D", str(path / "data"), "-l", str(path / "log"), "-w", "-o", options]
    subprocess.run(_as_owner([*start, "start"]), check=True, capture_output=True)
    try:
        create = [str(bin_dir / "createdb"), "-h", str(path), "-p", str(cluster.port), "-U", "reeve", "reeve"]
        subprocess.run(_as_owner(create), check=True, capture_output=True)
        yield cluster
    finally:
        stop = [str(bin_dir / "pg_ctl"), "-D", str(path / "data"), "-m", "immediate", "stop"]
        subprocess.run(_as_owner(stop), capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Installation:
    """Reeve run from `checkout` for `home`, as its user `user_home` (HOME), with its .env's secrets."""

    home: ReeveHome
    checkout: Path
    user_home: Path
    port: int
    database_url: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in self.home.env.items() if k not in SET_BY_DOTENV}
        return {**keep, "HOME": str(self.user_home), "PULSE_API_PORT": str(self.port), **extra}

    def manage(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        proc = manage_in(self.checkout, self.env(**extra), *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def start(self, **extra: str) -> subprocess.Popen:
        log = open(self.home.path / "reeve.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_reeve"],
            cwd=self.checkout,
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.home.children.append(proc)
        self.home.wait_for(lambda: "reeve_started" in self.log(), timeout=90, what="run_reeve to start")
        return proc

    def log(self) -> str:
        return (self.home.path / "reeve.log").read_text()


# What the installation's .env holds and the test environment must not override.
SET_BY_DOTENV = ("REEVE_IGNORE_DOTENV", "SECRET_KEY", "DATABASE_URL", "PULSE_API_TOKEN", "TELEGRAM_BOT_TOKEN")


def _installation(
    tmp_path: Path, home: ReeveHome, *, database_url: str = "", home_in_dot_reeve: bool = True
) -> Installation:
    dotenv = f"PULSE_API_TOKEN={API_TOKEN}\nTELEGRAM_BOT_TOKEN={BOT_TOKEN}\nSECRET_KEY={SECRET_KEY}\n"
    dotenv += f"DATABASE_URL={database_url}\n" if database_url else ""
    dotenv += "ANTHROPIC_BASE_URL=http://127.0.0.1:9\n"  # the agent's own settings still reach it
    checkout = checkout_with_dotenv(tmp_path, dotenv)
    user_home = tmp_path / "user"
    (user_home / ".claude").mkdir(parents=True)
    (user_home / ".claude" / ".credentials.json").write_text(LOGIN)
    if home_in_dot_reeve:  # REEVE_HOME where it usually is: ~/.reeve (else elsewhere, as install.sh puts it)
        (user_home / ".reeve").symlink_to(home.path)
    (home.path / "secret_key").write_text(KEY_FILE_SECRET)
    return Installation(home, checkout, user_home, free_port(), database_url)


@pytest.fixture
def sqlite_installation(tmp_path, migrated_home):
    if on_postgres():
        pytest.skip("the SQLite half runs it")
    # REEVE_HOME beside the user's home and the checkout, not around them.
    home = migrated_home.copy_to(tmp_path / "reeve")
    yield _installation(tmp_path, home)
    home.stop_all()


@pytest.fixture
def postgres_installation(tmp_path, password_cluster):
    home = ReeveHome(tmp_path / "reeve", database_url=password_cluster.url())
    installation = _installation(tmp_path, home, database_url=password_cluster.url(), home_in_dot_reeve=False)
    installation.manage("migrate", "--noinput", "-v0")
    yield installation
    home.stop_children()
    home.close_connection()


def _attack(installation: Installation, *, connect: list[str]) -> dict:
    """Back up, start Reeve with the sandbox required, let the fake agent attack, stop: its report."""
    home = installation.home
    installation.manage("backup_db")
    installation.manage("mcp_config", "--write")  # the Desk's deny rules, and its MCP server's entry
    backups = sorted((home.path / "backups").iterdir())
    assert backups
    plan = {
        "read": [
            str(installation.checkout / ".env"),
            str(home.path / "secret_key"),
            str(home.db_path),
            str(home.db_path) + "-wal",
            str(backups[0]),
            str(home.path / "logs" / "daemon.log"),
        ],
        "connect": connect,
        "login": str(installation.user_home / ".claude" / ".credentials.json"),
    }
    reeve = installation.start(
        AGENT_SANDBOX="bwrap",
        HAPI_COMMAND=FAKE_AGENT_COMMAND,
        FAKE_AGENT_ATTACK=json.dumps(plan),
        PULSE_TIMEOUT_SECONDS="100",
    )
    installation.manage("trigger_pulse", "Look around mode=attack", "--max-retries", "0")
    home.wait_for(
        lambda: home.query("SELECT status FROM pulses") in ([("completed",)], [("failed",)]),
        timeout=120,
        interval=0.2,
        what="the pulse to run",
    )
    assert home.query("SELECT status, error_message FROM pulses") == [("completed", "")], installation.log()
    os.killpg(reeve.pid, signal.SIGTERM)
    assert reeve.wait(timeout=60) == 0, installation.log()
    return json.loads((home.desk / "attack-report.json").read_text())


def _assert_contained(report: dict, installation: Installation) -> None:
    secrets = (API_TOKEN, BOT_TOKEN, SECRET_KEY, DB_PASSWORD, KEY_FILE_SECRET)
    for path, (code, text) in report["read"].items():
        assert code != 0 or text == "", f"the agent read {path}: {text[:200]}"
        assert not [s for s in secrets if s in text], path
    processes = report["processes"]
    assert not [s for s in secrets if s in processes], "a secret in a /proc/*/environ the agent read"
    assert "run_reeve" not in processes and "gunicorn" not in processes and "reaper.sh" not in processes
    code, text = report["login"]
    assert (code, text) == (0, LOGIN)  # Claude Code still finds its login
    assert report["mcp"]["is_error"] is False, report["mcp"]  # Reeve's tools still work, over the API
    deny = json.loads((installation.home.desk / ".claude" / "settings.json").read_text())["permissions"][
        "deny"
    ]
    assert f"Read(/{installation.checkout.resolve() / '.env'})" in deny
    # Reeve's MCP server, started inside without .env, wrote nothing into the agent's home.
    assert sorted(p.name for p in installation.user_home.iterdir()) in ([".claude"], [".claude", ".reeve"])
    if not (installation.user_home / ".reeve").is_symlink():
        assert not (installation.user_home / ".reeve").exists()


@needs_bwrap
def test_the_agent_under_bwrap_reaches_no_secret_of_reeves_on_sqlite(sqlite_installation):
    report = _attack(sqlite_installation, connect=[])
    _assert_contained(report, sqlite_installation)


@needs_bwrap
def test_the_agent_under_bwrap_reaches_no_secret_and_not_the_database_on_postgresql(
    postgres_installation, password_cluster
):
    without_password = password_cluster.url(password=False)
    socket = f"psql -h {password_cluster.sockets} -p {password_cluster.port} -U reeve reeve"
    report = _attack(postgres_installation, connect=[f"psql {without_password}", socket])
    _assert_contained(report, postgres_installation)
    by_url, by_socket = report["connect"][f"psql {without_password}"], report["connect"][socket]
    assert by_url[0] != 0 and "password" in by_url[1], by_url
    assert by_socket[0] != 0 and "No such file or directory" in by_socket[1], by_socket
    # Reeve itself reaches it (the same URL with the password, from .env), and so does this test.
    assert (
        subprocess.run(
            ["psql", password_cluster.url(), "-w", "-c", "select 1"], capture_output=True
        ).returncode
        == 0
    )


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def test_reeves_helpers_carry_none_of_the_dotenv_secrets_in_their_environment(sqlite_installation):
    installation = sqlite_installation
    reeve = installation.start(AGENT_SANDBOX="off")
    installation.home.wait_for(
        lambda: len(_descendants(reeve.pid)) >= 4, what="the reaper and gunicorn's processes"
    )
    time.sleep(1)
    tree = {
        pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in _descendants(reeve.pid)
    }
    assert any(b"reaper.sh" in cmd for cmd in tree.values()) and any(
        b"gunicorn" in cmd for cmd in tree.values()
    )
    for pid, cmdline in tree.items():
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        for secret in (API_TOKEN, BOT_TOKEN, SECRET_KEY):
            assert secret.encode() not in environ, f"{secret[:12]}… in the environment of {cmdline!r}"
    os.killpg(reeve.pid, signal.SIGTERM)
    assert reeve.wait(timeout=60) == 0, installation.log()


@pytest.mark.parametrize("mode", ["off", pytest.param("bwrap", marks=needs_bwrap)])
def test_a_pulse_whose_agent_left_a_detached_child_holding_its_output_completes_at_once(reeve_home, mode):
    reeve_home.manage("trigger_pulse", "Leave something behind mode=detach:90")
    worker = reeve_home.start("run_pulse_worker", AGENT_SANDBOX=mode)
    started = time.monotonic()
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT status FROM pulses") == [("completed",)],
        timeout=30,
        what="the pulse to complete",
    )
    assert time.monotonic() - started < 20  # not the 90 s the child holds the agent's stdout
    assert reeve_home.query("SELECT result_text FROM pulse_attempts") == [("Left something running.",)]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
