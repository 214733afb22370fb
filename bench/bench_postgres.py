"""Worker benchmark on PostgreSQL: drain throughput with several worker processes, dispatch latency,
and the claim query's cost with 1 k versus 1 M rows of history. Prints figures; asserts nothing.

    uv run python bench/bench_postgres.py [--workers 4] [--drain 2000] [--pulses 40] [--history 1000000]

Starts a throwaway cluster with tests/support/pg_cluster.sh unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_worker import (  # noqa: E402
    FIRST_LINE_AGENT,
    NOOP_AGENT,
    bench_latency,
    configure,
    report_latency,
)


def start_cluster(tmp: Path) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "tests" / "support" / "pg_cluster.sh"), "start", str(tmp / "pg")],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def bench_drain(env: dict[str, str], count: int, workers: int, concurrency: int) -> float:
    """Pulses per second from the commit of `count` due pulses to the last one finished, with
    `workers` worker processes already started and idle (their start-up is timed apart)."""
    from django.db import transaction
    from django.db.models import Max
    from django.utils import timezone

    from pulses.db import wakeup
    from pulses.models import Pulse, WorkerRecord

    Pulse.objects.all().delete()
    WorkerRecord.objects.all().delete()
    began = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_pulse_worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env={**env, "HAPI_COMMAND": NOOP_AGENT},
        )
        for _ in range(workers)
    ]
    try:
        while WorkerRecord.objects.count() < workers:  # each heartbeats once it is up and idle
            time.sleep(0.05)
        print(f"  {workers} workers up and idle in {time.time() - began:.2f} s")
        with transaction.atomic():
            Pulse.objects.bulk_create(
                Pulse(prompt=f"drain {i}", priority=["critical", "high", "normal", "low"][i % 4])
                for i in range(count)
            )
            wakeup.announce()
        committed = timezone.now()
        deadline = time.time() + 600
        while Pulse.objects.filter(status__in=["pending", "processing"]).exists():
            if time.time() > deadline:
                raise SystemExit("the drain did not finish within 10 minutes")
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    last = Pulse.objects.aggregate(last=Max("finished_at"))["last"]
    print(f"  completed {Pulse.objects.filter(status='completed').count()}/{count}")
    return count / (last - committed).total_seconds()


def claim_cost(rounds: int = 5, repeats: int = 200) -> float:
    """Milliseconds for one claim of a due pulse with the current history in the table: the best of
    `rounds` medians, so that a burst of load elsewhere on a shared machine does not decide it."""
    from pulses import queue
    from pulses.agent.executor import AttemptOutcome
    from pulses.models import Pulse

    logging.getLogger("pulses").setLevel(logging.ERROR)  # not a warning per probe released
    Pulse.objects.filter(status__in=["pending", "processing"]).delete()
    pulse = queue.schedule(prompt="probe").pulse
    medians = []
    for _ in range(rounds):
        samples = []
        for _ in range(repeats):
            began = time.perf_counter()
            [claimed] = queue.claim(worker="bench:1", limit=1)
            samples.append((time.perf_counter() - began) * 1000)
            queue.release(
                claimed,
                worker="bench:1",
                outcome=AttemptOutcome(
                    success=False, started_at=claimed.executed_at, finished_at=claimed.executed_at
                ),
            )
        medians.append(statistics.median(samples))
    pulse.delete()
    return min(medians)


def claim_plan() -> str:
    """PostgreSQL's plan for the claim statement itself (EXPLAIN only: nothing is claimed)."""
    from django.db import connection
    from django.utils import timezone

    from pulses.db import claims

    now = timezone.now()
    sql, params = claims.claim_statement("bench:1", 1, now, now)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        lines = [row[0].strip() for row in cursor.fetchall()]
    return " | ".join(line for line in lines if "Scan" in line or "Update" in line)


def fill_history(total: int) -> None:
    """History rows (completed pulses) inserted in bulk by the server itself."""
    from django.db import DatabaseError, connection

    from pulses.models import Pulse

    have = Pulse.objects.count()
    if total <= have:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pulses (prompt, scheduled_at, priority, status, session_id, sticky_notes, tags, "
            "source, created_at, executed_at, finished_at, execution_duration_ms, error_message, "
            "attempt_count, max_retries, lease_owner) "
            "SELECT 'history ' || g, now() - g * interval '1 second', "
            "(ARRAY['critical','high','normal','low','deferred'])[1 + g %% 5], "
            "CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'completed' END, '', '[]', '[]', 'bench', "
            "now(), now(), now(), 1000, '', 1, 3, '' FROM generate_series(1, %s) AS g",
            [total - have],
        )
        # Settle the cluster before timing: otherwise autovacuum and the checkpointer work through
        # the fresh rows while the claims are measured.
        cursor.execute("VACUUM ANALYZE pulses")
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError:  # not a superuser (nor pg_checkpoint) on this cluster: skip it
            pass


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
    # The cluster lives beside the Reeve home, not in it: Reeve makes its home private (0700), and
    # the server, running as another user when this runs as root, must reach its data directory.
    with (
        tempfile.TemporaryDirectory(prefix="reeve-bench-pg-") as tmp,
        tempfile.TemporaryDirectory(prefix="reeve-bench-pg-cluster-") as cluster_tmp,
    ):
        tmp_path, cluster_path = Path(tmp), Path(cluster_tmp)
        own_cluster = not os.environ.get("DATABASE_URL")
        url = start_cluster(cluster_path) if own_cluster else os.environ["DATABASE_URL"]
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
            print("dispatch latency (a commit in another process -> the agent's first line runs):")
            report_latency("shell agent", bench_latency(env, tmp_path, args.pulses, FIRST_LINE_AGENT))
            report_latency("Python agent", bench_latency(env, tmp_path, args.pulses))
            fill_history(1000)
            small = claim_cost()
            fill_history(args.history)
            large = claim_cost()
            print("claim plan:", claim_plan())
            print(
                f"claim cost: {small:.2f} ms with 1 k rows, {large:.2f} ms with {args.history:,} rows "
                f"(ratio {large / small:.2f}x)"
            )
        finally:
            if own_cluster:
                subprocess.run(
                    [
                        "bash",
                        str(ROOT / "tests" / "support" / "pg_cluster.sh"),
                        "stop",
                        str(cluster_path / "pg"),
                    ],
                    check=False,
                )


if __name__ == "__main__":
    main()
