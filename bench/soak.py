"""The soak: Reeve's processes killed with `kill -9` at random under load, then every pulse checked.

    uv run python bench/soak.py [--minutes 10] [--database sqlite|postgres] [--seed N]

For `--minutes`, one of the web process (gunicorn, its whole process group), the workers
(`run_pulse_worker`, two by default) and the Telegram listener is killed with SIGKILL every 1-4 s
and started again at once; on PostgreSQL (a throwaway cluster from tests/support/pg_cluster.sh on
127.0.0.1) the server itself is stopped in immediate mode and started again every 30-60 s. All the
while:

- API clients POST /api/pulse/trigger, each request with an idempotency key, retried with that key
  until it is acknowledged (a 200 or 201);
- people in several chats write to the bot (the fake Bot API of tests/support/fake_telegram.py); the
  fake agent (tests/support/fake_agent.py) answers each message;
- routines fire every minute.

Then the killing stops, everything is started once more, the load's last requests are acknowledged and
the routines disabled, and the queue settles (bounded by `--settle`). The checks: every acknowledged
key is exactly one pulse; every pulse completed with exactly one successful run; every message is
exactly one pulse and got exactly one answer; every routine fire between its creation and its
disabling made exactly one pulse. It prints the figures (kills, restarts, pulses, messages, answers,
lost, doubled, wall time) and exits 1 on any loss or double (the home is then kept for reading).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The soak picks its database itself (--database): a DATABASE_URL from the shell would otherwise make
# tests/support/reeve_processes.py put the SQLite soak's home on that server.
os.environ.pop("DATABASE_URL", None)
from bench.soak_checks import Load, check, report  # noqa: E402
from tests.support.fake_telegram import FakeTelegram  # noqa: E402
from tests.support.reeve_processes import ReeveHome  # noqa: E402

PG_CLUSTER = ROOT / "tests" / "support" / "pg_cluster.sh"
TOKEN = "soak-api-token-long-enough-to-be-served"
CHATS = [101, 102, 103, 104, 105, 106, 107, 108]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Role:
    """One of Reeve's processes, killed and started again by the soak."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    group: bool = False  # killed as a process group (gunicorn: the master and its workers)
    proc: subprocess.Popen | None = None
    kills: int = 0
    exits: list[int] = field(default_factory=list)  # exit codes of the times it ended on its own

    def start(self) -> None:
        with self.log.open("a") as log:
            log.write(f"--- started {datetime.now(UTC).isoformat()}\n")
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.group,
            )

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or `kill -9` would: no handler runs, nothing is flushed."""
        assert self.proc is not None
        try:
            if self.group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.kills += 1

    def revive(self) -> bool:
        """Start it again if it ended on its own (noting its exit code); True if it had."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            self.start()
            return True
        return False

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 30 s): the soak's end, not one of its kills."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.group:  # gunicorn's workers follow their master; make sure
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Cluster:
    """The throwaway PostgreSQL server (tests/support/pg_cluster.sh), restarted in immediate mode."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.restarts = 0

    def start(self) -> str:
        url = self._script("start").stdout.strip()
        # The test cluster commits asynchronously (synchronous_commit=off, for the suite's speed): an
        # immediate stop may then drop a transaction the server had already acknowledged, which no
        # program can survive. A real server commits synchronously, as the soak's does.
        options = self.path / "options"
        options.write_text(options.read_text().replace("synchronous_commit=off", "synchronous_commit=on"))
        self._script("restart")
        return url

    def restart(self, down_seconds: float) -> None:
        """`pg_ctl -m immediate stop` (every connection cut, no checkpoint), then start."""
        self._script("restart", f"{down_seconds:.1f}")
        self.restarts += 1

    def stop(self) -> None:
        self._script("stop", check=False)

    def _script(self, action: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(PG_CLUSTER), action, str(self.path), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


class ApiClient(threading.Thread):
    """POSTs pulses with idempotency keys, each retried with its key until acknowledged."""

    def __init__(self, number: int, *, url: str, seed: int, load: Load, stop: threading.Event) -> None:
        super().__init__(name=f"api-{number}", daemon=True)
        self.number, self.url, self.load, self.stop_sending = number, url, load, stop
        self.rng = random.Random(seed * 1000 + number)

    def run(self) -> None:
        sent = 0
        while not self.stop_sending.is_set():
            sent += 1
            key = f"soak-{self.number}-{sent}"
            self.acknowledge(key)  # the last key is acknowledged after the load stops, too
            self.stop_sending.wait(self.rng.uniform(0.5, 2.5))

    def acknowledge(self, key: str) -> None:
        body = json.dumps(
            {
                "prompt": f"api pulse {key}",
                "idempotency_key": key,
                "priority": self.rng.choice(["high", "normal", "low"]),
                "max_retries": 10,
            }
        ).encode()
        while True:
            request = urllib.request.Request(
                f"{self.url}/api/pulse/trigger",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as response:
                    pulse_id = json.loads(response.read())["id"]
                self.load.acknowledged(key, pulse_id)
                return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:  # a refusal is the soak's own mistake: say so, do not retry it
                    self.load.refused(key, f"HTTP {exc.code}: {exc.read()[:200]!r}")
                    return
            except (OSError, ValueError, http.client.HTTPException):  # refused, reset, timed out, cut short
                pass
            self.load.retry()
            time.sleep(self.rng.uniform(0.2, 1.0))


class Person(threading.Thread):
    """People in CHATS writing to the bot, one message every 0.5-2.5 s."""

    def __init__(self, fake: FakeTelegram, *, seed: int, load: Load, stop: threading.Event) -> None:
        super().__init__(name="telegram", daemon=True)
        self.fake, self.load, self.stop_sending = fake, load, stop
        self.rng = random.Random(seed * 1000 + 999)

    def run(self) -> None:
        number = 0
        while not self.stop_sending.wait(self.rng.uniform(0.5, 2.5)):
            number += 1
            chat = self.rng.choice(CHATS)
            update_id = self.fake.send_text(chat, f"soak message {number}: what is next?")
            self.load.message(chat, self.fake.message_id_of(update_id))


def reeve_roles(home: ReeveHome, env: dict[str, str], workers: int) -> list[Role]:
    logs = home.path / "logs"
    logs.mkdir(exist_ok=True)
    python = sys.executable
    roles = [
        Role("web", [python, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"], env, logs / "web.out", True)
    ]
    roles += [
        Role(f"worker-{n}", [python, "manage.py", "run_pulse_worker"], env, logs / f"worker-{n}.out")
        for n in range(1, workers + 1)
    ]
    listener = [python, "manage.py", "run_telegram_listener", "--poll-timeout", "5", "--backoff-cap", "2"]
    roles.append(Role("listener", listener, env, logs / "listener.out"))
    return roles


def create_routines(home: ReeveHome, count: int) -> None:
    home.manage(
        "shell",
        "-c",
        (
            "from pulses.routines import changes\n"
            f"for i in range({count}):\n"
            "    changes.create(name=f'soak-{i}', prompt=f'routine {i}', schedule='every 1 minutes',"
            " priority='normal', max_retries=10)\n"
        ),
    )


def wait_for_web(url: str, roles: list[Role], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for role in roles:
            role.revive()
        try:
            urllib.request.urlopen(f"{url}/api/health", timeout=5).read()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the web process did not answer within {timeout:.0f} s")


class Readiness:
    """Since when each process is up: a worker once it logged `worker_started`, the listener once it
    logged `telegram_listener_started` (both read from the shared log), the web process once it
    answers HTTP at all. The soak kills only processes that have been up a moment: killing one
    while it starts (seconds of CPU on a loaded machine) would mostly keep Reeve down, and prove
    nothing more."""

    MARKS = ("worker_started", "telegram_listener_started")

    def __init__(self, log: Path, url: str) -> None:
        self.log, self.url = log, url
        self._offset = 0
        self._logged: set[int] = set()
        self._since: dict[int, float] = {}  # pid -> when it was first seen up

    def up_for(self, role: Role) -> float:
        """Seconds `role`'s current process has been up (0 while it starts)."""
        assert role.proc is not None
        pid = role.proc.pid
        if pid not in self._since:
            if role.group:
                if not self._answers():
                    return 0.0
            else:
                self._read()
                if pid not in self._logged:
                    return 0.0
            self._since[pid] = time.monotonic()
        return time.monotonic() - self._since[pid]

    def _read(self) -> None:
        try:
            with self.log.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        complete = chunk.rfind(b"\n") + 1
        self._offset += complete
        for line in chunk[:complete].decode(errors="replace").splitlines():
            if any(mark in line for mark in self.MARKS):
                self._logged.add(int(line.split()[3]))

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/api/health", timeout=1).read()
        except urllib.error.HTTPError:
            pass  # an answer all the same (503: the database is restarting)
        except OSError:
            return False
        return True


def chaos(
    roles: list[Role],
    cluster: Cluster | None,
    readiness: Readiness,
    *,
    until: float,
    rng: random.Random,
    kill_every: tuple[float, float],
    min_up: float,
) -> None:
    """Until `until`: every kill_every seconds kill one of the processes up for min_up seconds or more,
    chosen at random among the least killed, and start it again (none is up: the kill waits for one);
    on PostgreSQL restart the server every 30-60 s. A process that ended on its own is started again
    and counted."""
    next_kill = time.monotonic() + rng.uniform(*kill_every)
    next_restart = time.monotonic() + rng.uniform(30, 60)
    while (now := time.monotonic()) < until:
        for role in roles:
            role.revive()
        up = [role for role in roles if readiness.up_for(role) >= min_up]
        if now >= next_kill and up:
            # The web process starts quicker than the others, so it would be up (and killed) more
            # often: of those up, one of the least killed so far.
            fewest = min(role.kills for role in up)
            victim = rng.choice([role for role in up if role.kills == fewest])
            victim.kill()
            victim.start()
            next_kill = now + rng.uniform(*kill_every)
        if cluster is not None and now >= next_restart:
            cluster.restart(rng.uniform(0, 2))
            next_restart = time.monotonic() + rng.uniform(30, 60)
        time.sleep(0.05)


def soak(args: argparse.Namespace, workdir: Path) -> bool:
    """One soak in `workdir`; True if nothing was lost or doubled."""
    began = time.monotonic()
    rng = random.Random(args.seed)
    cluster = Cluster(workdir / "pg") if args.database == "postgres" else None
    url = cluster.start() if cluster else ""
    fake = FakeTelegram().start()
    home = ReeveHome(workdir / "home", database_url=url)
    roles: list[Role] = []
    try:
        home.migrate()
        create_routines(home, args.routines)
        routines_from = datetime.now(UTC)
        port = free_port()
        env = {
            **home.env,
            **fake.env(*CHATS),
            "PULSE_API_PORT": str(port),
            "PULSE_API_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(home.path / "metrics"),
            "PULSE_LEASE_SECONDS": str(args.lease_seconds),
            "PULSE_MAX_CONCURRENT": "2",
            "FAKE_AGENT_MODE": "sleep:0.2",
            "PYTHONWARNINGS": "ignore",
        }
        roles = reeve_roles(home, env, args.workers)
        for role in roles:
            role.start()
        api_url = f"http://127.0.0.1:{port}"
        wait_for_web(api_url, roles)
        load, stop_sending = Load(), threading.Event()
        senders = [
            ApiClient(n, url=api_url, seed=args.seed, load=load, stop=stop_sending)
            for n in range(1, args.api_clients + 1)
        ]
        senders.append(Person(fake, seed=args.seed, load=load, stop=stop_sending))
        for sender in senders:
            sender.start()
        print(f"soak: {args.database}, {args.minutes:g} min of kills, seed {args.seed}, home {home.path}")
        readiness = Readiness(Path(env["LOG_FILE"]), api_url)
        until = time.monotonic() + args.minutes * 60
        chaos(
            roles,
            cluster,
            readiness,
            until=until,
            rng=rng,
            kill_every=tuple(args.kill_every),
            min_up=args.min_up,
        )

        settle_began = time.monotonic()
        stop_sending.set()
        for role in roles:
            role.revive()
        for sender in senders:
            sender.join(timeout=args.settle)
        home.query("UPDATE pulse_routines SET enabled = ? WHERE name LIKE ?", (False, "soak-%"))
        routines_until = datetime.now(UTC)
        settled = settle(home, fake, load, roles, timeout=args.settle)
        time.sleep(2)  # a stray second answer would show now
        outcome = check(home, fake, load, routines=(routines_from, routines_until))
        figures = {
            "database": args.database,
            "minutes": args.minutes,
            "kills": {role.name: role.kills for role in roles},
            "exits": {role.name: role.exits for role in roles if role.exits},
            "server_restarts": cluster.restarts if cluster else None,
            "settled": time.monotonic() - settle_began if settled else None,
            "wall": time.monotonic() - began,
        }
        report(outcome, figures)
        return outcome.passed
    finally:
        for role in roles:
            role.stop()
        home.close_connection()
        fake.stop()
        if cluster:
            cluster.stop()


def settle(home: ReeveHome, fake: FakeTelegram, load: Load, roles: list[Role], *, timeout: float) -> bool:
    """Wait (at most `timeout` s, restarting what ends) until every message is taken, no pulse is left
    to run and no answer to send; False if that never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for role in roles:
            role.revive()
        left = home.query(
            "SELECT (SELECT COUNT(*) FROM pulses WHERE status IN ('pending', 'processing')), "
            "(SELECT COUNT(*) FROM pulse_deliveries WHERE state = 'waiting'), "
            "(SELECT COUNT(*) FROM telegram_messages WHERE edit_date = 0)"
        )[0]
        if left[0] == 0 and left[1] == 0 and left[2] >= len(load.messages) and not fake.pending_update_ids:
            return True
        time.sleep(0.5)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10, help="how long the kills go on (default: 10)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=1, help="the random kills' and load's seed")
    parser.add_argument("--workers", type=int, default=2, help="run_pulse_worker processes (default: 2)")
    parser.add_argument("--api-clients", type=int, default=2, help="API clients sending at once (default: 2)")
    parser.add_argument("--routines", type=int, default=2, help="routines firing every minute (default: 2)")
    parser.add_argument(
        "--kill-every",
        type=float,
        nargs=2,
        default=(1.0, 4.0),
        metavar=("MIN", "MAX"),
        help="seconds between two kills, drawn uniformly (default: 1 4)",
    )
    parser.add_argument(
        "--min-up",
        type=float,
        default=2,
        help="seconds a process is up (serving, polling, looping) before it may be killed (default: 2)",
    )
    parser.add_argument(
        "--lease-seconds", type=float, default=10, help="PULSE_LEASE_SECONDS of the workers (default: 10)"
    )
    parser.add_argument(
        "--settle", type=float, default=300, help="longest wait for the queue to settle, in s (default: 300)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the home (logs, database) even if it passed"
    )
    args = parser.parse_args()
    # The cluster beside the home, not in it: Reeve makes its home private (0700), and the server,
    # running as another user when this runs as root, must reach its data directory.
    workdir = Path(tempfile.mkdtemp(prefix=f"reeve-soak-{args.database}-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop what was started
    passed = False
    try:
        passed = soak(args, workdir)
    finally:
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept: {workdir}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
