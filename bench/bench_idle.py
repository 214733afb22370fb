"""Idle cost of `./reeve start`: CPU and resident memory per process and in total. Asserts nothing.

    uv run python bench/bench_idle.py [--seconds 20] [--settle 5] [--listener]

Starts `./reeve start` on a fresh SQLite database in a temp dir (a free port, nothing due), waits
until the API answers and the worker has heartbeated, lets it settle, then reads every process of
the tree from /proc: time on a CPU over the window (schedstat, all threads), in percent of one core, and the
resident set (VmRSS) and proportional set (Pss: shared pages split between the processes sharing
them) at its end. `--listener` also runs `./reeve run_telegram_listener` against the fake Bot API
(tests/support/fake_telegram.py, served by this process and not counted), as a user with a bot does.
`--units` runs the systemd units' commands instead of `./reeve start` (their ExecStart lines:
reeve-web and reeve-worker, plus reeve-telegram with `--listener`); the journal relay of
reeve-daemon needs a journal and is not started.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_worker import configure  # noqa: E402


@dataclass
class Sample:
    pid: int
    name: str
    cpu_ns: int
    rss_kb: int
    pss_kb: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children(pid)
    return pids


def describe(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [Path(a.decode()).name if i == 0 else a.decode() for i, a in enumerate(argv) if a]
    text = " ".join(w for w in words if w not in ("-m", "-S", "--frozen", "--no-sync"))
    title = Path(f"/proc/{pid}/comm").read_text().strip()
    return text if len(text) <= 60 else f"{text[:57]}… ({title})"


def sample(pid: int) -> Sample | None:
    try:
        # Nanoseconds on a CPU, summed over the threads (schedstat; stat's clock ticks are 10 ms coarse).
        cpu_ns = sum(
            int(t.joinpath("schedstat").read_text().split()[0]) for t in Path(f"/proc/{pid}/task").iterdir()
        )
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        pss = next((int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0)
        return Sample(
            pid=pid,
            name=describe(pid),
            cpu_ns=cpu_ns,
            rss_kb=int(status.get("VmRSS", "0 kB").split()[0]),
            pss_kb=pss,
        )
    except (OSError, ValueError):
        return None


def snapshot(roots: list[int]) -> dict[int, Sample]:
    return {s.pid: s for s in (sample(pid) for root in roots for pid in tree(root)) if s}


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"bench_idle: gave up waiting for {what}")


def api_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def heartbeated(db: Path) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return bool(conn.execute("SELECT count(*) FROM pulse_workers").fetchone()[0])
    except sqlite3.Error:
        return False


def report(title: str, first: dict[int, Sample], last: dict[int, Sample], seconds: float) -> None:
    print(f"\n{title} ({seconds:.0f} s window)")
    print(f"{'pid':>7}  {'CPU % core':>10}  {'RSS MB':>7}  {'PSS MB':>7}  process")
    total_cpu = total_rss = total_pss = 0.0
    for pid, end in sorted(last.items()):
        start = first.get(pid)
        # A thread that exits takes its time with it (uv's runtime threads): never below zero.
        cpu = max(end.cpu_ns - start.cpu_ns, 0) / 1e9 / seconds * 100 if start else float("nan")
        total_cpu += cpu if start else 0
        total_rss += end.rss_kb / 1024
        total_pss += end.pss_kb / 1024
        print(f"{pid:>7}  {cpu:>10.3f}  {end.rss_kb / 1024:>7.1f}  {end.pss_kb / 1024:>7.1f}  {end.name}")
    print(f"{'total':>7}  {total_cpu:>10.3f}  {total_rss:>7.1f}  {total_pss:>7.1f}  {len(last)} processes")


def unit_command(name: str) -> list[str]:
    """The unit's ExecStart, with this environment's Python."""
    line = next(
        line
        for line in (ROOT / "deploy" / "systemd" / f"reeve-{name}.service.in").read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    return line.removeprefix("ExecStart=").replace("@VENV_PYTHON@", sys.executable).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="measured idle window (>= 20)")
    parser.add_argument("--settle", type=float, default=5, help="idle seconds before the window")
    parser.add_argument("--listener", action="store_true", help="also run the Telegram listener")
    parser.add_argument("--units", action="store_true", help="the systemd units' commands instead")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="reeve-bench-idle-"))
    port = free_port()
    env = configure(home)
    env.update(PULSE_API_PORT=str(port), PULSE_API_TOKEN="bench-token-" + "x" * 32, HAPI_COMMAND="true")
    env["LOG_LEVEL"] = "WARNING"
    fake = None
    if args.listener:
        from tests.support.fake_telegram import FakeTelegram

        fake = FakeTelegram().start()
        env.update(fake.env(42))
    if args.units:
        subprocess.run([str(ROOT / "reeve"), "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        procs = [subprocess.Popen(unit_command(name), cwd=ROOT, env=env) for name in ("web", "worker")]
    else:
        procs = [subprocess.Popen([str(ROOT / "reeve"), "start"], cwd=ROOT, env=env)]
    try:
        wait_until(lambda: api_up(port), 120, "the API")
        wait_until(lambda: heartbeated(home / "pulse_queue.db"), 60, "the worker's heartbeat")
        if fake:
            listener = (
                unit_command("telegram") if args.units else [str(ROOT / "reeve"), "run_telegram_listener"]
            )
            procs.append(subprocess.Popen(listener, cwd=ROOT, env=env))
            wait_until(lambda: fake.calls_to("getUpdates"), 60, "the listener's first poll")
        time.sleep(args.settle)
        roots = [p.pid for p in procs]
        first = snapshot(roots)
        began = time.monotonic()
        time.sleep(args.seconds)
        last = snapshot(roots)
        what = "units reeve-web + reeve-worker" if args.units else "./reeve start"
        title = what + (" + the Telegram listener" if fake else "") + ", SQLite, idle"
        report(title, first, last, time.monotonic() - began)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if fake:
            fake.stop()


if __name__ == "__main__":
    main()
