"""History benchmark: the admin, the dashboard, the stats and the metrics over a large history.
Prints figures; asserts nothing.

    uv run python bench/bench_history.py [--rows 1000000] [--small 10000] [--databases sqlite postgres]
                                         [--runs 3] [--keep DIR]

For each database and each size (--small and --rows) a fresh database is migrated and loaded with
finished pulses and their attempts spread over a year (bench/history_load.py: bulk SQL, not the
ORM), then every page is fetched in-process with Django's test client, logged in as a superuser
(the API with a bearer token): one warm-up fetch, then the best of --runs. The ratio column is the
large figure over the small one. PostgreSQL: a throwaway cluster (tests/support/pg_cluster.sh) unless
DATABASE_URL names one to create databases in; the tables are VACUUM ANALYZEd after loading, as
autovacuum would. SQLite gets no ANALYZE (nothing in Reeve runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "bench-history-token-0123456789abcdef"  # noqa: S105 - a throwaway database's API token


def pages() -> list[tuple[str, str]]:
    now = datetime.now(UTC)
    admin = "/admin/pulses/pulse/"
    return [
        ("admin list", admin),
        ("admin search ?q=history", admin + "?q=history"),
        ("admin filter status=failed", admin + "?status__exact=failed"),
        ("admin filter source=telegram", admin + "?source__exact=telegram"),
        ("admin dates: this month", f"{admin}?scheduled_at__year={now.year}&scheduled_at__month={now.month}"),
        ("dashboard", "/dashboard/"),
        ("/api/stats", "/api/stats"),
        ("/api/status", "/api/status"),
        ("/metrics", "/metrics"),
        ("/api/pulses?status=failed&limit=50", "/api/pulses?status=failed&limit=50"),
        ("/api/pulse/upcoming", "/api/pulse/upcoming"),
    ]


def environment(home: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "REEVE_", "DATABASE_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="reeve_site.settings",
        REEVE_IGNORE_DOTENV="1",
        REEVE_HOME=str(home),
        PULSE_DB_PATH=str(home / "pulse_queue.db"),
        LOG_FILE=str(home / "daemon.log"),
        LOG_LEVEL="WARNING",
        SECRET_KEY="bench",
        PULSE_API_TOKEN=TOKEN,
        ALLOWED_HOSTS="testserver,localhost",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def measure(rows: int, runs: int, home: Path) -> dict:
    """In a child whose environment names the database: load (unless `home` says it was loaded by
    an earlier run), then time every page."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from bench.history_load import load_here
    from pulses import history

    marker = home / "loaded.json"
    if marker.exists():
        loaded = json.loads(marker.read_text())["load_s"]
    else:
        began = time.perf_counter()
        load_here(rows)
        loaded = round(time.perf_counter() - began, 1)
        marker.write_text(json.dumps({"load_s": loaded}))
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    began = time.perf_counter()
    history.finished_counts()
    sealing = time.perf_counter() - began
    figures, cpu_figures = {}, {}
    for name, url in pages():
        headers = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"} if url.startswith("/api/") else {}
        response = client.get(url, **headers)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.content[:300]!r}")
        best = best_cpu = float("inf")
        for _ in range(runs):
            started, cpu = time.perf_counter(), time.process_time()
            client.get(url, **headers)
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        figures[name] = round(best * 1000, 1)
        cpu_figures[name] = round(best_cpu * 1000, 1)
    facts = history.database_facts(exact=True)
    plan = []
    if connection.vendor == "postgresql":  # the search's plan: the index, not a walk of every row
        from pulses.db import search

        with connection.cursor() as cursor:
            cursor.execute("SELECT MAX(id) FROM pulses")
            high = cursor.fetchone()[0]  # the first range of ids the search reads
            first_range = ["history:*", high - search.FIRST_RANGE, high]
            cursor.execute("EXPLAIN " + search._POSTGRES_RANGE, first_range)
            plan = [row[0] for row in cursor.fetchall()]
    return {
        "search_plan": plan,
        "rows": rows,
        "attempts": facts.attempts,
        "size_mb": round((facts.size_bytes or 0) / 1_048_576),
        "load_s": loaded,
        "first_count_s": round(sealing, 2),
        "pages": figures,
        "cpu": cpu_figures,
    }


def run_one(database: str, rows: int, runs: int, tmp: Path, cluster: str) -> dict:
    """Migrate and measure one database, loading it first unless an earlier --keep run did."""
    home = tmp / f"{database}-{rows}"
    fresh = not (home / "loaded.json").exists()
    if fresh:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
    url = ""
    if database == "postgres":
        import psycopg

        name = f"bench_history_{rows}"
        if fresh:
            with psycopg.connect(cluster, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(cluster)._replace(path=f"/{name}"))
    env = environment(home, url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(rows), "--runs", str(runs), "--keep", str(home)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def kept_cluster(keep: Path) -> str:
    """The cluster an earlier --keep run left in keep/pg, started again if it stopped; else a new one."""
    import psycopg

    url_file = keep / "pg" / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return url
        except psycopg.OperationalError:
            port = urlsplit(url).port
            options = f"-p {port} -k {keep / 'pg'} -c listen_addresses=127.0.0.1 -c fsync=off"
            pg_ctl = [*sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")), "pg_ctl"][0]
            data = ["-D", str(keep / "pg" / "data"), "-l", str(keep / "pg" / "server.log")]
            as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []  # as pg_cluster.sh
            subprocess.run([*as_owner, str(pg_ctl), *data, "-w", "-o", options, "start"], check=True)
            return url
    from bench.bench_postgres import start_cluster

    url = start_cluster(keep)
    url_file.write_text(url)
    return url


def drop(database: str, tmp: Path, cluster: str, rows: int) -> None:
    shutil.rmtree(tmp / f"{database}-{rows}", ignore_errors=True)
    if database == "postgres":
        import psycopg

        with psycopg.connect(cluster, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "bench_history_{rows}"')


def report(database: str, small: dict, large: dict) -> None:
    print(
        f"\n{database}: {large['rows']:,} finished pulses ({large['attempts']:,} attempts, "
        f"{large['size_mb']:,} MB, loaded in {large['load_s']} s; the first count after loading sealed "
        f"the year in {large['first_count_s']} s), versus {small['rows']:,} ({small['size_mb']} MB)."
    )
    if large["search_plan"]:
        print("  search plan: " + " | ".join(line.strip() for line in large["search_plan"]))
    print("  Best of the runs, ms (wall clock; then this process's CPU time, which a loaded machine")
    print("  inflates less: on SQLite that is all the work, on PostgreSQL all but the server's):")
    print(f"  {'page':40} {small['rows']:>10,} {large['rows']:>10,}  ratio {'cpu':>8} {'cpu':>8}  ratio")
    for name, fast in small["pages"].items():
        slow = large["pages"][name]
        fast_cpu, slow_cpu = small["cpu"][name], large["cpu"][name]
        print(
            f"  {name:40} {fast:>10} {slow:>10}  {slow / fast if fast else float('nan'):.1f}x "
            f"{fast_cpu:>8} {slow_cpu:>8}  {slow_cpu / fast_cpu if fast_cpu else float('nan'):.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the loaded databases (and a PostgreSQL cluster, left running) in DIR and measure "
        "them again on the next run with the same DIR instead of loading",
    )
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.runs, args.keep)))
        return
    if args.keep:
        args.keep = args.keep.resolve()
        args.keep.mkdir(parents=True, exist_ok=True)
        cluster = os.environ.get("DATABASE_URL", "")
        if "postgres" in args.databases and not cluster:
            cluster = kept_cluster(args.keep)
        for database in args.databases:
            small = run_one(database, args.small, args.runs, args.keep, cluster)
            large = run_one(database, args.rows, args.runs, args.keep, cluster)
            report(database, small, large)
        if (args.keep / "pg" / "url").exists():
            print(f"\nThe cluster keeps running: bash tests/support/pg_cluster.sh stop {args.keep / 'pg'}")
        return
    with tempfile.TemporaryDirectory(prefix="reeve-bench-history-") as tmp_name:
        tmp = Path(tmp_name)
        cluster = os.environ.get("DATABASE_URL", "")
        started_cluster = False
        if "postgres" in args.databases and not cluster:
            from bench.bench_postgres import start_cluster

            cluster, started_cluster = start_cluster(tmp), True
        try:
            for database in args.databases:
                small = run_one(database, args.small, args.runs, tmp, cluster)
                large = run_one(database, args.rows, args.runs, tmp, cluster)
                report(database, small, large)
                drop(database, tmp, cluster, args.rows)  # the large one's disk space, before the next
        finally:
            if started_cluster:
                stop = ["bash", str(ROOT / "tests" / "support" / "pg_cluster.sh"), "stop", str(tmp / "pg")]
                subprocess.run(stop, check=False)


if __name__ == "__main__":
    main()
