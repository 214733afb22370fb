"""Worker benchmark on SQLite: dispatch latency and drain throughput. Prints figures; asserts nothing.

    uv run python bench/bench_worker.py [--pulses 30] [--drain 400] [--concurrency 4] [--workers 1]

Dispatch latency: a pulse is committed by this process (another process than the worker); the clock
stops when the agent's first line runs. Two agents: bench/first_line_agent.sh (bash, running ~1 ms
after its spawn) and tests/support/fake_agent.py under `python -S`, whose interpreter start-up (measured
apart as a baseline) adds ~7 ms.
Drain throughput: N due pulses, the no-op shell agent (bench/noop_agent.sh), one worker (or
--workers of them side by side) at the given concurrency, from the first claim to the last finish,
and the CPU time the workers and their agents used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FAKE_AGENT = f"{sys.executable} -S {ROOT / 'tests' / 'support' / 'fake_agent.py'}"
NOOP_AGENT = str(ROOT / "bench" / "noop_agent.sh")
FIRST_LINE_AGENT = str(ROOT / "bench" / "first_line_agent.sh")


def configure(home: Path, database_url: str = "") -> dict[str, str]:
    """Point this process (and the returned child environment) at a bench home: SQLite in it, or
    `database_url`."""
    database = (
        {"DATABASE_URL": database_url} if database_url else {"PULSE_DB_PATH": str(home / "pulse_queue.db")}
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "reeve_site.settings",
        "REEVE_IGNORE_DOTENV": "1",
        "REEVE_HOME": str(home),
        **database,
        "LOG_FILE": os.environ.get("BENCH_LOG_FILE", str(home / "daemon.log")),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "REEVE_DESK_PATH": str(home),
        "SECRET_KEY": "bench",
        "FAKE_AGENT_LOG": str(home / "agent.log"),
        "NOOP_AGENT_LOG": str(home / "noop.log"),
        "AGENT_ENV_PASSTHROUGH": "FAKE_AGENT_*,NOOP_AGENT_*",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def agent_starts(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    # Only whole lines: an agent may be appending its record (it carries the environment) as we read.
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    return {r["pulse_id"]: r["t"] for r in map(json.loads, lines)}


def interpreter_baseline(runs: int = 10) -> float:
    samples = []
    for _ in range(runs):
        began = time.time()
        out = subprocess.run(
            [sys.executable, "-S", "-c", "import time; print(time.time())"],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append((float(out.stdout) - began) * 1000)
    return statistics.median(samples)


def bench_latency(env: dict[str, str], home: Path, pulses: int, agent: str = FAKE_AGENT) -> list[float]:
    """Milliseconds from a pulse's commit (in this process) to the first line of `agent` running."""
    from pulses import queue

    (home / "agent.log").unlink(missing_ok=True)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_pulse_worker"], cwd=ROOT, env={**env, "HAPI_COMMAND": agent}
    )
    time.sleep(3)  # let it start and go idle
    latencies = []
    try:
        for i in range(pulses):
            pulse = queue.schedule(prompt=f"mode=noop latency {i}", priority="high").pulse
            committed = time.time()
            deadline = committed + 10
            while (started := agent_starts(home / "agent.log").get(str(pulse.pk))) is None:
                if time.time() > deadline:
                    raise SystemExit(f"pulse {pulse.pk} did not start within 10 s")
                time.sleep(0.002)
            latencies.append((started - committed) * 1000)
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return latencies


def report_latency(label: str, latencies: list[float]) -> None:
    print(
        f"  {label:>12}: p50 {percentile(latencies, 50):.1f} ms  p99 {percentile(latencies, 99):.1f} ms  "
        f"max {max(latencies):.1f} ms  ({len(latencies)} pulses)"
    )


def bench_drain(
    env: dict[str, str], home: Path, count: int, concurrency: int, workers: int = 1
) -> tuple[float, Counter]:
    from django.db.models import Max, Min

    from pulses import queue
    from pulses.models import Pulse

    Pulse.objects.all().delete()
    for i in range(count):
        queue.schedule(prompt=f"drain {i}", priority=["critical", "high", "normal", "low"][i % 4])
    began = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [sys.executable, "manage.py", "run_pulse_worker", "--once", "--concurrency", str(concurrency)]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, env={**env, "HAPI_COMMAND": NOOP_AGENT}) for _ in range(workers)
    ]
    if any(proc.wait() != 0 for proc in procs):
        raise SystemExit("a worker failed")
    wall = time.time() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    span = Pulse.objects.aggregate(first=Min("executed_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    done = Pulse.objects.filter(status="completed").count()
    runs = Counter((home / "noop.log").read_text().split())
    print(f"  wall time incl. worker start-up: {wall:.2f} s; completed {done}/{count}")
    print(f"  CPU of the worker and its agents: {cpu:.2f} s ({cpu / count * 1000:.1f} ms a pulse)")
    return count / seconds, runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pulses", type=int, default=40, help="pulses for the latency run (>= 30)")
    parser.add_argument("--drain", type=int, default=400, help="pulses for the throughput run (>= 200)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="worker processes draining side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reeve-bench-") as tmp:
        home = Path(tmp)
        env = configure(home)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        baseline = interpreter_baseline()
        print("dispatch latency (a commit in another process -> the agent's first line runs):")
        report_latency("shell agent", bench_latency(env, home, args.pulses, FIRST_LINE_AGENT))
        report_latency("Python agent", bench_latency(env, home, args.pulses))
        print(f"  (a Python agent's interpreter start-up alone, python -S, median: {baseline:.1f} ms)")
        rate, runs = bench_drain(env, home, args.drain, args.concurrency, args.workers)
        once = sum(1 for n in runs.values() if n == 1)
        print(
            f"drain throughput: {rate:.0f} pulses/s ({args.drain} pulses, no-op agent, {args.workers} "
            f"worker(s) at concurrency {args.concurrency}); ran exactly once: {once}/{args.drain}"
        )


if __name__ == "__main__":
    main()
