"""What a Reeve process costs to start: CPU time (user + sys) of each kind, median of N. Asserts nothing.

    uv run python bench/bench_starts.py [--runs 8] [--checkout DIR]

Every pulse the real agent runs starts `manage.py mcp_server` (the agent's tools); cron starts
`trigger_pulse` hourly and `reeve-health-check` (`doctor`) every 5 minutes; the suite starts some two
thousand of these. Measured on a fresh SQLite home in a temp dir, with this interpreter:

- `help`, `trigger_pulse`, `pulse_queue all`, `doctor --no-api --no-telegram`: run to the end;
- `run_pulse_worker`: started, stopped with SIGTERM after 1 s (nothing due);
- `mcp_server`: the MCP handshake (initialize, tools/list) over stdin, then stdin closed;
- gunicorn (deploy/gunicorn.conf.py, one worker): started, /api/health and /api/pulses, SIGTERM.

`--checkout DIR` measures another checkout of Reeve (e.g. a git worktree of an older commit) with
this same interpreter and home, for an A/B.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_idle import free_port  # noqa: E402
from bench.bench_worker import configure  # noqa: E402
from tests.support.reeve_processes import initialize_request  # noqa: E402

TOKEN = "bench-start-token-" + "x" * 32
MCP_HANDSHAKE = "".join(
    json.dumps(message) + "\n"
    for message in (
        initialize_request(client="bench"),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="starts of each kind (default 8)")
    parser.add_argument(
        "--checkout", type=Path, default=ROOT, help="the Reeve checkout to start (default this one)"
    )
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    home = Path(tempfile.mkdtemp(prefix="reeve-bench-starts-"))
    env = configure(home) | {"PULSE_API_TOKEN": TOKEN, "HAPI_COMMAND": str(ROOT / "bench" / "noop_agent.sh")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as tests/run.sh: starts read cached bytecode

    def manage(*command: str, stdin=None, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=checkout,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    manage("migrate", "--noinput").wait()
    manage("help").wait()  # bytecode cached before anything is timed

    def worker() -> None:
        proc = manage("run_pulse_worker")
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait()

    def mcp_server() -> None:
        proc = manage("mcp_server", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        proc.stdin.write(MCP_HANDSHAKE)
        proc.stdin.flush()
        for _ in range(2):
            proc.stdout.readline()
        proc.stdin.close()
        proc.wait()

    def gunicorn() -> None:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
            cwd=checkout,
            env=env | {"PULSE_API_PORT": str(port), "WEB_CONCURRENCY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.05)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/pulses", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        urllib.request.urlopen(request, timeout=10).read()
        proc.send_signal(signal.SIGTERM)
        proc.wait()

    kinds: dict[str, Callable[[], None]] = {
        "help": lambda: manage("help").wait(),
        "trigger_pulse": lambda: manage("trigger_pulse", "bench start mode=noop").wait(),
        "pulse_queue all": lambda: manage("pulse_queue", "all").wait(),
        "doctor": lambda: manage("doctor", "--no-api", "--no-telegram").wait(),
        "run_pulse_worker (1 s idle)": worker,
        "mcp_server (handshake)": mcp_server,
        "gunicorn (2 requests)": gunicorn,
    }
    print(f"{checkout} on {sys.executable} ({sys.version.split()[0]}), {args.runs} starts each")
    print(f"{'process':<28} {'CPU s (median)':>14} {'min':>6} {'max':>6}")
    for name, start in kinds.items():
        costs = []
        for _ in range(args.runs):
            before = children_cpu()
            start()
            costs.append(children_cpu() - before)
        print(f"{name:<28} {statistics.median(costs):>14.3f} {min(costs):>6.3f} {max(costs):>6.3f}")


if __name__ == "__main__":
    main()
