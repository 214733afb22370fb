"""Real Reeve processes for process-level tests: each test gets its own database, Desk and logs.

`ReeveHome.manage(...)` runs a management command to completion; `start(...)` starts a long-running
one (the worker) as a child that the test signals. `query(...)` reads the database directly.

When the suite runs against PostgreSQL (DATABASE_URL set, see tests/run.sh), each home gets a
database of its own on that cluster, dropped at the end; otherwise a SQLite file in the temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
FAKE_AGENT = ROOT / "tests" / "support" / "fake_agent.py"
FAKE_AGENT_COMMAND = f"{sys.executable} -S {FAKE_AGENT}"
NOOP_AGENT = str(ROOT / "bench" / "noop_agent.sh")
POSTGRES_URL = os.environ.get("DATABASE_URL", "")
# Set by tests/run.sh for the SQLite half while the PostgreSQL half runs beside it: a PostgreSQL test
# that would otherwise start a cluster of its own in the SQLite half leaves it to that half.
POSTGRES_HALF_ALONGSIDE = "REEVE_TEST_POSTGRES_HALF_ALONGSIDE"


def agent_starts(log: Path) -> list[dict]:
    """The fake agent's starts, one a run, from the log FAKE_AGENT_LOG names (none yet: [])."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def noop_agent_env(log: Path, *, seconds: float = 0) -> dict[str, str]:
    """Settings for a worker that runs bench/noop_agent.sh: each run sleeps `seconds` (if any) and
    writes its pulse id to `log` (read by noop_starts and assert_every_pulse_ran_once). A test that
    runs hundreds of pulses and needs nothing of the agent but its start uses it: a start costs ~2 ms
    of CPU there, ~35 ms under the Python fake agent."""
    env = {"HAPI_COMMAND": NOOP_AGENT, "NOOP_AGENT_LOG": str(log)}
    return {**env, "NOOP_AGENT_SECONDS": str(seconds)} if seconds else env


def noop_starts(log: Path) -> Counter[str]:
    """How many times bench/noop_agent.sh started for each pulse id (see noop_agent_env)."""
    return Counter(log.read_text().split()) if log.exists() else Counter()


def running_on(home: ReeveHome, pid: int) -> int:
    """How many pulses the worker process `pid` holds a lease on."""
    return home.query(
        "SELECT COUNT(*) FROM pulses WHERE status = 'processing' AND lease_owner LIKE ?", (f"%:{pid}",)
    )[0][0]


def assert_every_pulse_ran_once(home: ReeveHome, noop_log: Path, total: int) -> None:
    """After workers were killed mid-run: all `total` pulses completed, each with one successful
    attempt, and one agent start (a line in `noop_log`) per recorded attempt."""
    assert home.query("SELECT status, COUNT(*) FROM pulses GROUP BY status") == [("completed", total)]
    starts = noop_starts(noop_log)
    # A run whose worker was killed, found by its expired lease or by the next start that proved the
    # worker dead ("interrupted"), may have been claimed just before the agent could start: such an
    # attempt has no start. Every other attempt has exactly one, and no start is without its attempt.
    attempts = {
        str(pulse_id): (n, lost)
        for pulse_id, n, lost in home.query(
            "SELECT pulse_id, COUNT(*), SUM(CASE WHEN NOT succeeded AND (error LIKE ? OR error LIKE ?) "
            "THEN 1 ELSE 0 END) FROM pulse_attempts GROUP BY pulse_id",
            ("lease expired%", "interrupted%"),
        )
    }
    assert set(starts) == set(attempts) and len(attempts) == total
    for pulse_id, (n, lost) in attempts.items():
        assert n - lost <= starts[pulse_id] <= n, (pulse_id, starts[pulse_id], n, lost)
    assert home.query("SELECT COUNT(*) FROM pulse_attempts WHERE succeeded") == [(total,)]
    assert sum(1 for n, _ in attempts.values() if n > 1) >= 1  # the killed workers were running some


def process_alive(pid: int) -> bool:
    """Running, not a zombie; a process that is reaped while we look counts as gone."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


# The real agent CLIs' runs cost seconds of CPU each and prove the agent's side, which no database
# changes: they run in the SQLite half only; what they store is proved on both with the fake agent.
REAL_CLI_ONCE = "the real CLI's runs are proved once, in the SQLite half (the fake agent covers PostgreSQL)"


def on_postgres() -> bool:
    return POSTGRES_URL.startswith(("postgres://", "postgresql://"))


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)


def _database_url(name: str) -> str:
    return urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))


def _new_database(template: str = "") -> str:
    """The URL of a new, empty database on the test cluster (a copy of `template` when one is named)."""
    name = f"reeve_home_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return _database_url(name)


@dataclass
class ReeveHome:
    path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    children: list[subprocess.Popen] = field(default_factory=list)
    database_url: str = ""
    _connection: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.desk.mkdir(parents=True, exist_ok=True)
        if on_postgres() and not self.database_url:
            self.database_url = _new_database()

    @property
    def db_path(self) -> Path:
        return self.path / "pulse_queue.db"

    @property
    def desk(self) -> Path:
        return self.path / "desk"

    @property
    def agent_log(self) -> Path:
        return self.path / "agent.log"

    @property
    def env(self) -> dict[str, str]:
        # Reeve's settings come from this home, never from the test process: PROMETHEUS_MULTIPROC_DIR
        # too (the test settings export theirs), or every home of one pytest-xdist process would add its
        # counters to the others' and a scrape would sum another test's runs.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PULSE_", "REEVE_", "TELEGRAM_", "PROMETHEUS_MULTIPROC_DIR"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="reeve_site.settings",
            REEVE_IGNORE_DOTENV="1",
            REEVE_HOME=str(self.path),
            PULSE_DB_PATH=str(self.db_path),
            LOG_FILE=str(self.path / "logs" / "daemon.log"),
            REEVE_DESK_PATH=str(self.desk),
            HAPI_COMMAND=FAKE_AGENT_COMMAND,
            FAKE_AGENT_LOG=str(self.agent_log),
            AGENT_ENV_PASSTHROUGH="FAKE_AGENT_*,NOOP_AGENT_*",
            # The fake agent logs into this home, which the sandbox masks: tests that want it ask.
            AGENT_SANDBOX="off",
            SECRET_KEY="process-test-secret",
            PULSE_LEASE_SECONDS="2",
            PULSE_POLL_SECONDS="0.5",
            PULSE_SHUTDOWN_GRACE_SECONDS="10",
            DATABASE_URL=self.database_url,
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        self.close_connection()
        proc = manage_in(ROOT, self.env, *args, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v0")

    def copy_to(self, path: Path) -> ReeveHome:
        """A new home at `path` holding what this (migrated, stopped) home holds: its database (a file
        copy, or on PostgreSQL a database made with this one as TEMPLATE) and the folders and files
        Reeve made beside it, modes kept. Copying costs milliseconds where `migrate` costs seconds."""
        self.close_connection()  # PostgreSQL copies a template nobody is connected to
        database_url = _new_database(urlsplit(self.database_url).path[1:]) if self.database_url else ""
        home = ReeveHome(path, database_url=database_url)
        for entry in self.path.iterdir():
            if entry.name == "desk":
                continue
            if entry.is_dir():
                shutil.copytree(entry, path / entry.name)
            else:
                shutil.copy2(entry, path / entry.name)
        return home

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        log = open(self.path / f"proc-{len(self.children)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.children.append(proc)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return (self.path / f"proc-{self.children.index(proc)}.log").read_text()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of `sql` (with `?` placeholders) from this home's database, SQLite or PostgreSQL."""
        if self.database_url:
            import psycopg

            try:
                cursor = self._postgres().execute(sql.replace("?", "%s"), params)
            except psycopg.OperationalError:  # the server ended that session (a test's outage): once more
                self.close_connection()
                cursor = self._postgres().execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def _postgres(self):
        """This home's PostgreSQL session, kept between queries: a test polling a condition would
        otherwise make the server start a backend process twenty times a second."""
        if self._connection is None or self._connection.closed:
            import psycopg
            from psycopg.types.string import TextLoader

            # Autocommit and no prepared statements: it holds no lock and no plan across a restore.
            conn = psycopg.connect(self.database_url, autocommit=True, prepare_threshold=None)
            # Rows as SQLite gives them: JSON and times as text, so tests read both alike.
            for type_name in ("json", "jsonb", "timestamptz", "timestamp"):
                conn.adapters.register_loader(type_name, TextLoader)
            self._connection = conn
        return self._connection

    def close_connection(self) -> None:
        """Close the session `query` keeps (a command such as restore_db wants the database alone)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def agent_starts(self) -> list[dict]:
        return agent_starts(self.agent_log)

    def wait_for(self, predicate, *, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def stop_children(self) -> None:
        """Kill what `start` started and is still running, and forget them all (the database stays)."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.children.clear()

    def stop_all(self) -> None:
        self.close_connection()
        self.stop_children()
        if self.database_url:
            _admin(f'DROP DATABASE IF EXISTS "{urlsplit(self.database_url).path[1:]}" WITH (FORCE)')


def manage_in(
    checkout: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in `checkout` with exactly `env`, run to completion, its output captured."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def checkout_with_dotenv(tmp_path: Path, dotenv: str) -> Path:
    """A checkout of its own with `dotenv` as its .env (0600; settings read the .env beside them),
    sharing this one's code and .venv."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copytree(
        ROOT / "reeve_site", checkout / "reeve_site", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "manage.py", checkout / "manage.py")
    for name in ("pulses", "telegram_bridge", "templates", "deploy", ".venv", "pyproject.toml"):
        (checkout / name).symlink_to(ROOT / name)
    (checkout / ".env").write_text(dotenv)
    (checkout / ".env").chmod(0o600)
    return checkout


def copy_checkout(dest: Path) -> Path:
    """This working tree as it is (tracked and new files, uncommitted edits included) copied to `dest`,
    sharing its .venv: a checkout of its own, whose .env a test may write."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def initialize_request(*, client: str) -> dict:
    """The MCP handshake's first request, as a client named `client` sends it on stdin (id 1)."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": client, "version": "0"},
        },
    }
