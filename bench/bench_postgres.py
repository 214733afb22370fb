"""Worker benchmark on PostgreSQL: drain throughput with several worker processes, dispatch latency,
and the claim query's cost with 1 k versus 1 M rows of history. Prints figures; asserts nothing.

    uv run python bench/bench_postgres.py [--workers 4] [--drain 2000] [--pulses 40] [--history 1000000]

Starts a throwaway cluster with tests/pg_cluster.sh unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_worker import NOOP_AGENT, bench_latency, configure, percentile  # noqa: E402


def start_cluster(tmp: Path) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "tests" / "pg_cluster.sh"), "start", str(tmp / "pg")],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def bench_drain(env: dict[str, str], count: int, workers: int, concurrency: int) -> float:
    from django.db.models import Max, Min

    from pulses.models import Pulse

    Pulse.objects.all().delete()
    Pulse.objects.bulk_create(
        Pulse(prompt=f"drain {i}", priority=["critical", "high", "normal", "low"][i % 4])
        for i in range(count)
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_pulse_worker", "--once", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env={**env, "HAPI_COMMAND": NOOP_AGENT},
        )
        for _ in range(workers)
    ]
    for proc in procs:
        proc.wait()
    span = Pulse.objects.aggregate(first=Min("executed_at"), last=Max("finished_at"))
    done = Pulse.objects.filter(status="completed").count()
    print(f"  completed {done}/{count}")
    return count / (span["last"] - span["first"]).total_seconds()


def claim_cost(repeats: int = 300) -> float:
    """Median ms for one claim + release of a due pulse, with the current history in the table."""
    from pulses import queue
    from pulses.executor import AttemptOutcome
    from pulses.models import Pulse

    Pulse.objects.filter(status__in=["pending", "processing"]).delete()
    pulse = queue.schedule(prompt="probe").pulse
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        [claimed] = queue.claim(worker="bench:1", limit=1)
        samples.append((time.perf_counter() - began) * 1000)
        queue.release(
            claimed.pk,
            worker="bench:1",
            outcome=AttemptOutcome(
                success=False, started_at=claimed.executed_at, finished_at=claimed.executed_at
            ),
        )
    pulse.delete()
    return statistics.median(samples)


def fill_history(total: int) -> None:
    """History rows (completed pulses) inserted in bulk by the server itself."""
    from django.db import connection

    from pulses.models import Pulse

    have = Pulse.objects.count()
    if total <= have:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pulses (prompt, scheduled_at, priority, status, session_id, sticky_notes, tags, "
            "source, created_at, executed_at, finished_at, execution_duration_ms, error_message, attempts, "
            "max_retries, lease_owner) "
            "SELECT 'history ' || g, now() - g * interval '1 second', "
            "(ARRAY['critical','high','normal','low','deferred'])[1 + g %% 5], "
            "CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'completed' END, '', '[]', '[]', 'bench', "
            "now(), now(), now(), 1000, '', 1, 3, '' FROM generate_series(1, %s) AS g",
            [total - have],
        )
        cursor.execute("ANALYZE pulses")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="pulses at once per worker")
    parser.add_argument("--drain", type=int, default=2000)
    parser.add_argument("--pulses", type=int, default=40)
    parser.add_argument("--history", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reeve-bench-pg-") as tmp:
        tmp_path = Path(tmp)
        own_cluster = not os.environ.get("DATABASE_URL")
        url = start_cluster(tmp_path) if own_cluster else os.environ["DATABASE_URL"]
        try:
            env = configure(tmp_path, url)
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            import django

            django.setup()
            rate = bench_drain(env, args.drain, args.workers, args.concurrency)
            print(
                f"drain throughput: {rate:.0f} pulses/s ({args.drain} pulses, no-op agent, "
                f"{args.workers} workers x {args.concurrency})"
            )
            latencies = bench_latency(env, tmp_path, args.pulses)
            print(
                f"dispatch latency over {len(latencies)} pulses (commit in another process -> agent code "
                f"runs): p50 {percentile(latencies, 50):.1f} ms  p99 {percentile(latencies, 99):.1f} ms"
            )
            fill_history(1000)
            small = claim_cost()
            fill_history(args.history)
            large = claim_cost()
            from pulses.models import Pulse

            print("claim query plan:", " | ".join(Pulse.objects.due()[:10].explain().splitlines()[:4]))
            print(
                f"claim cost: {small:.2f} ms with 1 k rows, {large:.2f} ms with {args.history:,} rows "
                f"(ratio {large / small:.2f}x)"
            )
        finally:
            if own_cluster:
                subprocess.run(
                    ["bash", str(ROOT / "tests" / "pg_cluster.sh"), "stop", str(tmp_path / "pg")], check=False
                )


if __name__ == "__main__":
    main()
