"""API trigger benchmark: 8 concurrent keep-alive clients POST /api/pulse/trigger to gunicorn on
127.0.0.1 (deploy/gunicorn.conf.py, SQLite in a temp dir). Prints throughput and latency; asserts nothing.

    uv run python bench/bench_api.py [--clients 8] [--seconds 20] [--warmup 3]
    uv run python bench/bench_api.py --url http://127.0.0.1:8765 --token TOKEN   # an existing server

Each client is one HTTP/1.1 connection reused for every request (asyncio streams, so the load
generator stays light on this 2-core machine); latency is from the first byte sent to the last byte of
the response read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def start_gunicorn(home: Path, token: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reeve_site.settings",
        "REEVE_IGNORE_DOTENV": "1",
        "REEVE_HOME": str(home),
        "PULSE_DB_PATH": str(home / "pulse_queue.db"),
        "PROMETHEUS_MULTIPROC_DIR": str(home / "metrics"),
        "LOG_FILE": str(home / "daemon.log"),
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": "bench",
        "PULSE_API_TOKEN": token,
        "PULSE_API_PORT": str(port),
        "PYTHONWARNINGS": "ignore",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=(home / "gunicorn.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start; see " + str(home / "gunicorn.log"))


async def client(host: str, port: int, token: str, number: int, stop_at: float, record: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    sent = 0
    while time.perf_counter() < stop_at:
        body = json.dumps(
            {
                "prompt": f"bench client {number} request {sent}",
                "scheduled_at": "in 1 day",
                "priority": "normal",
            }
        ).encode()
        request = (
            f"POST /api/pulse/trigger HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        started = time.perf_counter()
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        record.append(time.perf_counter() - started)
        sent += 1
        if b" 201 " not in status_line:
            errors += 1
    writer.close()
    return errors


async def load(
    host: str, port: int, token: str, clients: int, seconds: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(*(client(host, port, token, n, stop_at, latencies) for n in range(clients)))
    return latencies, sum(errors), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=20, help="measured duration")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured warm-up before it")
    parser.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8765")
    parser.add_argument("--token", default="bench-token-" + "x" * 32, help="its PULSE_API_TOKEN")
    args = parser.parse_args()

    proc = None
    with tempfile.TemporaryDirectory(prefix="reeve-bench-api-") as tmp:
        if args.url:
            host, port = args.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
            port = int(port)
        else:
            host, port = "127.0.0.1", free_port()
            proc = start_gunicorn(Path(tmp), args.token, port)
        try:
            asyncio.run(load(host, port, args.token, args.clients, args.warmup))
            latencies, errors, elapsed = asyncio.run(load(host, port, args.token, args.clients, args.seconds))
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    workers = os.environ.get("WEB_CONCURRENCY", "1")
    threads = os.environ.get("GUNICORN_THREADS", "4")
    ms = [v * 1000 for v in latencies]
    print(
        f"API trigger: {args.clients} keep-alive clients, {elapsed:.1f} s, "
        f"gunicorn {workers} workers x {threads} threads (gthread)"
    )
    print(f"  requests:   {len(ms)} ({errors} not 201)")
    print(f"  throughput: {len(ms) / elapsed:.0f} req/s")
    print(
        f"  latency:    p50 {percentile(ms, 50):.1f} ms  p90 {percentile(ms, 90):.1f} ms  "
        f"p99 {percentile(ms, 99):.1f} ms  max {max(ms):.1f} ms"
    )


if __name__ == "__main__":
    main()
