"""A newcomer's first `./reeve start`: seconds until the API answers, size of `.venv/`. Asserts nothing.

    python3 bench/bench_first_start.py [--cold] [--keep] [--rev COMMIT]

Clones this repository (its committed HEAD) into a temp dir and runs `./reeve start` there as a new
user would: an empty HOME, only PATH and LANG from this shell, a free port. It prints the seconds
until `/api/health` answers (uv into `.tools/` when none is on PATH, `.venv/` from uv.lock with the
runtime dependencies only, the migrations, the worker and gunicorn), the size of `.venv/` and of
`.tools/`, then the size `./reeve test` makes `.venv/` by adding the dev group (test tools).

By default uv's package cache is this machine's (`UV_CACHE_DIR` or ~/.cache/uv): the figure is the
install and start-up, not the network. `--cold` gives uv and pip an empty cache of their own, so every
package is downloaded as on a new machine (needs the package index; slower and noisier).
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def size_mb(path: Path) -> float:
    """Disk usage in MB (du: hard links to uv's cache count once, as they cost once)."""
    if not path.exists():
        return 0.0
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="empty package caches: download everything")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed)")
    parser.add_argument("--rev", help="check out this commit in the clone (a before/after comparison)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="reeve-first-start-"))
    repo, home = base / "repo", base / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    if args.rev:
        subprocess.run(["git", "-C", str(repo), "checkout", "-q", args.rev], check=True)
    port = free_port()
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PULSE_API_PORT": str(port)}
    if args.cold:
        env["UV_CACHE_DIR"] = str(base / "uv-cache")
        env["PIP_NO_CACHE_DIR"] = "1"
    else:
        env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    for var in ("PIP_INDEX_URL", "UV_INDEX_URL", "PIP_CERT", "SSL_CERT_FILE"):
        if var in os.environ:
            env[var] = os.environ[var]

    log = open(base / "start.log", "w")  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(["./reeve", "start"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    healthy_after = None
    try:
        while proc.poll() is None and time.monotonic() - started < 900:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        healthy_after = time.monotonic() - started
                        break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    if healthy_after is None:
        print((base / "start.log").read_text()[-3000:], file=sys.stderr)
        sys.exit("the API never answered")

    runtime_mb, tools_mb = size_mb(repo / ".venv"), size_mb(repo / ".tools")
    uv = shutil.which("uv", path=env["PATH"]) or str(repo / ".tools" / "bin" / "uv")
    subprocess.run([uv, "sync", "--frozen", "--quiet", "--group", "dev"], cwd=repo, env=env, check=True)
    dev_mb = size_mb(repo / ".venv")

    cache = "empty package caches (everything downloaded)" if args.cold else "this machine's uv cache"
    print(f"first ./reeve start on a fresh clone, empty HOME, {cache}:")
    print(f"  /api/health answered after {healthy_after:.1f} s")
    print(f"  .venv (runtime only) {runtime_mb:.0f} MB; .tools (uv) {tools_mb:.0f} MB")
    print(f"  .venv after ./reeve test adds the dev group: {dev_mb:.0f} MB")
    if args.keep:
        print(f"  kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
