"""Express-lane benchmark: how soon a critical pulse's agent starts while a low pulse holds the only
ordinary slot (PULSE_MAX_CONCURRENT=1). Prints figures; asserts nothing.

    uv run python bench/bench_express.py [--tries 20] [--database-url postgresql://...]

One real worker process and the fake agent (tests/support/fake_agent.py). A low pulse runs the whole time
(its agent sleeps); each try commits a critical pulse from this process, as the Telegram listener
would, 1 s after the low pulse's agent started or the previous try ended, and the clock stops when
the critical pulse's agent runs its first line. With PULSE_CRITICAL_RESERVED=1 (the default) it
takes the reserved slot; with 0 (the old behaviour, measured for comparison) it waits for the low
pulse to end, so that delay is the low pulse's remaining run time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_worker import FAKE_AGENT, ROOT, agent_starts, configure, percentile  # noqa: E402


def start_delays(
    env: dict[str, str], home: Path, *, tries: int, reserved: int, low_seconds: float
) -> list[float]:
    """Seconds from each critical pulse's commit to its agent's first line, with `reserved` slots."""
    from pulses import queue
    from pulses.models import Pulse

    Pulse.objects.all().delete()
    log = home / "agent.log"
    log.unlink(missing_ok=True)
    worker_env = {**env, "HAPI_COMMAND": FAKE_AGENT, "PULSE_MAX_CONCURRENT": "1"}
    worker_env.update(PULSE_CRITICAL_RESERVED=str(reserved), PULSE_SHUTDOWN_GRACE_SECONDS="0")
    worker = subprocess.Popen([sys.executable, "manage.py", "run_pulse_worker"], cwd=ROOT, env=worker_env)
    delays = []
    try:
        low = queue.schedule(prompt=f"background research mode=sleep:{low_seconds}", priority="low").pulse
        wait_for_start(log, low.pk, timeout=60)
        for i in range(tries):
            time.sleep(1.0)  # "a critical pulse triggered 1 s later"
            critical = queue.schedule(
                prompt=f"what is on my calendar? {i} mode=noop", priority="critical"
            ).pulse
            committed = time.time()
            delays.append(wait_for_start(log, critical.pk, timeout=low_seconds + 60) - committed)
            while Pulse.objects.filter(pk=critical.pk, status="processing").exists():
                time.sleep(0.01)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return delays


def wait_for_start(log: Path, pulse_id: int, *, timeout: float) -> float:
    deadline = time.time() + timeout
    while (started := agent_starts(log).get(str(pulse_id))) is None:
        if time.time() > deadline:
            raise SystemExit(f"pulse {pulse_id}'s agent did not start within {timeout:.0f} s")
        time.sleep(0.002)
    return started


def report(label: str, delays: list[float]) -> None:
    print(
        f"  {label}: p50 {percentile(delays, 50) * 1000:.0f} ms  p99 {percentile(delays, 99) * 1000:.0f} ms  "
        f"max {max(delays) * 1000:.0f} ms  ({len(delays)} tries)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tries", type=int, default=20, help="critical pulses with the reserved slot")
    parser.add_argument("--database-url", default="", help="a PostgreSQL database to use instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reeve-bench-") as tmp:
        home = Path(tmp)
        env = configure(home, args.database_url)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        database = "PostgreSQL" if args.database_url else "SQLite"
        print(f"critical pulse's start delay while a low pulse holds the only ordinary slot ({database}):")
        report(
            "PULSE_CRITICAL_RESERVED=1",
            start_delays(env, home, tries=args.tries, reserved=1, low_seconds=600),
        )
        # Without the reserved slot each try waits for a low pulse of 5 s, triggered 1 s after it started.
        before = [start_delays(env, home, tries=1, reserved=0, low_seconds=5)[0] for _ in range(3)]
        report("PULSE_CRITICAL_RESERVED=0 (low pulse of 5 s)", before)


if __name__ == "__main__":
    main()
