"""Routine benchmark: prints figures, asserts nothing.

    uv run python bench/bench_routines.py [--routines 10000] [--fires 40] [--burst 1000] [--idle 20]

On SQLite. With --routines stored (none due during the run), one worker process (`run_pulse_worker`, the shell
agent bench/first_line_agent.sh, which notes its start ~1 ms after its spawn):
- lone fire: a routine's next fire is set to a moment 1 s ahead (committed with the queue's wake-up,
  as an edit of the routine would be); the clock runs from the fire time to the agent's first line.
  The worker sleeps until the fire time itself, there is no tick.
- burst: --burst routines, all due in the same second, priorities mixed: each is dispatched once,
  in priority order (the order the runs were claimed), and the time from the fire time to the last
  agent start.
- idle: the worker's CPU over --idle seconds with the routines stored, against the same worker on an
  empty database (no per-routine polling: the wait is for the soonest fire, one index probe).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_idle import snapshot  # noqa: E402
from bench.bench_worker import FIRST_LINE_AGENT, agent_starts, configure, percentile  # noqa: E402

PRIORITIES = ["critical", "high", "normal", "low", "deferred"]


def store_routines(count: int, *, prefix: str = "stored") -> None:
    """`count` routines at fixed times on January 1st: stored, enabled, none due during the run."""
    from pulses.routines.models import Routine
    from pulses.routines.schedule import parse, zone

    now = datetime.now(UTC)
    utc = zone("UTC")
    rows = []
    for i in range(count):
        expression = f"{i % 60} {i // 60 % 24} 1 1 *"
        rows.append(
            Routine(
                name=f"{prefix}-{i:05}",
                prompt=f"stored routine {i}",
                schedule=expression,
                timezone="UTC",
                priority=PRIORITIES[i % len(PRIORITIES)],
                next_fire_at=parse(expression).next_after(now, utc),
                next_fire_zone="UTC",
            )
        )
    Routine.objects.bulk_create(rows, batch_size=1000)


def start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen:
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_pulse_worker", "--concurrency", str(concurrency)],
        cwd=ROOT,
        env={**env, "HAPI_COMMAND": FIRST_LINE_AGENT},
    )
    time.sleep(4)  # start-up, then idle
    return worker


def stop(worker: subprocess.Popen) -> None:
    worker.terminate()
    worker.wait(timeout=60)


def set_fire(names: list[str], at: datetime) -> None:
    """Make these routines fire at `at`, committed with the wake-up an edit sends."""
    from django.db import transaction

    from pulses.db import wakeup
    from pulses.routines.models import Routine

    with transaction.atomic():
        Routine.objects.filter(name__in=names).update(next_fire_at=at, next_fire_zone="UTC", enabled=True)
        wakeup.announce()


def wait_starts(log: Path, pulse_ids: set[str], timeout: float) -> dict[str, float]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        starts = agent_starts(log)
        if pulse_ids <= set(starts):
            return starts
        time.sleep(0.005)
    raise SystemExit(
        f"bench_routines: {len(pulse_ids - set(agent_starts(log)))} runs did not start in {timeout} s"
    )


def pulse_of(name: str, fire_at: datetime, timeout: float = 10) -> int:
    from pulses.models import Pulse

    deadline = time.time() + timeout
    while time.time() < deadline:
        found = Pulse.objects.filter(routine__name=name, fire_at=fire_at).values_list("pk", flat=True).first()
        if found:
            return found
        time.sleep(0.005)
    raise SystemExit(f"bench_routines: the fire of {name} at {fire_at} made no pulse within {timeout} s")


def bench_lone_fire(env: dict[str, str], home: Path, fires: int) -> list[float]:
    from pulses.routines import changes

    changes.create(name="lone", prompt="the lone fire", schedule="@yearly", timezone="UTC")
    worker = start_worker(env, 1)
    delays = []
    try:
        for _ in range(fires):
            # A second ahead: room for this process's own commit, which a loaded machine can delay.
            at = datetime.now(UTC) + timedelta(seconds=1)
            set_fire(["lone"], at)
            if datetime.now(UTC) > at:
                print(f"  (a fire committed {(datetime.now(UTC) - at).total_seconds():.2f} s after its time)")
            pulse_id = str(pulse_of("lone", at))
            started = wait_starts(home / "agent.log", {pulse_id}, 10)[pulse_id]
            delays.append((started - at.timestamp()) * 1000)
            time.sleep(0.1)
    finally:
        stop(worker)
    return delays


def bench_burst(env: dict[str, str], home: Path, count: int, concurrency: int) -> None:
    from pulses.models import PRIORITY_RANK, Pulse
    from pulses.routines.models import Routine

    store_routines(count, prefix="burst")
    Routine.objects.filter(name__startswith="burst-").update(enabled=False)  # armed below, all at once
    names = list(Routine.objects.filter(name__startswith="burst-").values_list("name", flat=True))
    random.shuffle(names)
    worker = start_worker(env, concurrency)
    try:
        at = datetime.now(UTC) + timedelta(seconds=1)
        set_fire(names, at)
        deadline = time.time() + 120
        while Pulse.objects.filter(routine__name__startswith="burst-").count() < count:
            if time.time() > deadline:
                raise SystemExit("bench_routines: the burst's pulses were not all made within 120 s")
            time.sleep(0.05)
        ids = {
            str(pk)
            for pk in Pulse.objects.filter(routine__name__startswith="burst-").values_list("pk", flat=True)
        }
        starts = wait_starts(home / "agent.log", ids, 300)
    finally:
        stop(worker)
    runs = Counter(
        line.split('"pulse_id": "')[1].split('"')[0] for line in (home / "agent.log").read_text().splitlines()
    )
    per_routine = Counter(
        Pulse.objects.filter(routine__name__startswith="burst-").values_list("routine_id", flat=True)
    )
    # A claim takes several at one instant: within it, the order is the claim's own (priority).
    claimed = Pulse.objects.filter(routine__name__startswith="burst-").order_by(
        "executed_at", "priority_rank", "id"
    )
    ranks = [PRIORITY_RANK[p] for p in claimed.values_list("priority", flat=True)]
    inversions = sum(1 for a, b in zip(ranks, ranks[1:], strict=False) if b < a)
    last = max(starts[i] for i in ids) - at.timestamp()
    print(
        f"burst: {count} routines due in the same second -> {len(per_routine)} routines fired, "
        f"{sum(1 for n in per_routine.values() if n == 1)} exactly once; runs started exactly once: "
        f"{sum(1 for i in ids if runs[i] == 1)}/{count}; claimed out of priority order: {inversions}; "
        f"fire time -> last agent start: {last:.2f} s (concurrency {concurrency})"
    )


def idle_cpu(env: dict[str, str], seconds: float) -> float:
    """Percent of one core the idle worker process used over `seconds`."""
    worker = start_worker(env, 1)
    try:
        first = snapshot([worker.pid])
        began = time.monotonic()
        time.sleep(seconds)
        last = snapshot([worker.pid])
        elapsed = time.monotonic() - began
    finally:
        stop(worker)
    used = sum(max(last[p].cpu_ns - first[p].cpu_ns, 0) for p in last if p in first)
    return used / 1e9 / elapsed * 100


def fresh_home(tmp: Path, name: str) -> tuple[Path, dict[str, str]]:
    home = tmp / name
    home.mkdir()
    env = configure(home)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return home, env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routines", type=int, default=10_000, help="routines stored")
    parser.add_argument("--fires", type=int, default=40, help="lone fires measured (>= 30)")
    parser.add_argument("--burst", type=int, default=1000, help="routines due in the same second")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's slots for the burst")
    parser.add_argument("--idle", type=float, default=20, help="seconds of the idle CPU window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reeve-bench-routines-") as tmp:
        empty_home, empty_env = fresh_home(Path(tmp), "empty")
        empty_cpu = idle_cpu(empty_env, args.idle)
        home, env = fresh_home(Path(tmp), "stored")
        import django

        django.setup()
        store_routines(args.routines)
        stored_cpu = idle_cpu(env, args.idle)
        print(
            f"idle worker CPU over {args.idle:.0f} s: {stored_cpu:.3f} % of a core with "
            f"{args.routines} routines stored, {empty_cpu:.3f} % with none"
        )
        delays = bench_lone_fire(env, home, args.fires)
        print(
            f"lone fire, {args.routines} routines stored (fire time -> the agent's first line): "
            f"p50 {percentile(delays, 50):.1f} ms  p99 {percentile(delays, 99):.1f} ms  "
            f"max {max(delays):.1f} ms  ({len(delays)} fires)"
        )
        bench_burst(env, home, args.burst, args.concurrency)


if __name__ == "__main__":
    main()
