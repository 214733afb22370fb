"""Spend benchmark: the reads of pulses/budget.py over a year of history. Prints figures; asserts nothing.

    uv run python bench/bench_budget.py [--rows 1000000] [--runs 5] [--keep DIR] [--database-url URL]

A fresh database (SQLite, or a database created in --database-url's PostgreSQL) is migrated and
loaded with --rows finished pulses and their attempts over a year (bench/history_load.py, the same
load as bench_history.py: a million is a busy assistant, about two pulses a minute). Then, best of
--runs: `budget.status()` (today's and this month's sums: what a worker under a cap reads every 15 s,
and /metrics at each scrape), `budget.with_newer()` (what it reads after each of its runs: the
attempts since its last read), `budget.spend()` (the dashboard's, /api/stats', pulse_queue's: plus
per source and per routine), and the plan of the status query.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_history import environment  # noqa: E402


def measure(rows: int, runs: int) -> dict:
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.history_load import load_here
    from pulses import budget
    from pulses.models import PulseAttempt

    if not PulseAttempt.objects.exists():
        connection.close()  # the bulk load changes the journal mode: no other connection may be open
        load_here(rows)
    if connection.vendor == "postgresql":  # as autovacuum would after a migration built an index
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE pulse_attempts")
    figures = {}
    st = budget.status()
    one_before = dataclasses.replace(st, last_attempt_id=st.last_attempt_id - 1)
    reads = (
        ("status: the month summed (a worker every 15 s; /metrics)", budget.status),
        (
            "with_newer: one newer attempt (a worker after each run)",
            lambda: budget.with_newer(one_before, st.at),
        ),
        ("spend: plus per source and routine (dashboard, /api/stats)", budget.spend),
    )
    for name, read in reads:
        read()
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            read()
            best = min(best, time.perf_counter() - started)
        figures[name] = round(best * 1000, 2)
    with CaptureQueriesContext(connection) as queries:
        budget.status()
    [query] = queries.captured_queries
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    _, month = budget.periods()
    with connection.cursor() as cursor:
        # The captured SQL has its parameters in place: EXPLAIN it as it ran.
        cursor.execute(explain + query["sql"])
        plan = [" ".join(str(part) for part in row) for row in cursor.fetchall()]
    in_month = PulseAttempt.objects.filter(finished_at__gte=month.starts_at, finished_at__lt=month.ends_at)
    return {
        "database": connection.vendor,
        "rows": rows,
        "month_attempts": in_month.count(),
        "ms": figures,
        "plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="load into (or reuse) this folder")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server to create the database in")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.rows, args.runs)))
        return
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-budget-"))
    home.mkdir(parents=True, exist_ok=True)
    url = ""
    if args.database_url:
        import psycopg

        name = f"bench_budget_{args.rows}"
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(args.database_url)._replace(path=f"/{name}"))
    env = environment(home, url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, __file__, "--measure", "--rows", str(args.rows), "--runs", str(args.runs)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    print(json.dumps(json.loads(out.stdout.strip().splitlines()[-1]), indent=2))


if __name__ == "__main__":
    main()
