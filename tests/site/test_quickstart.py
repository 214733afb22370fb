"""The README's two commands, from a fresh clone with an empty HOME, as a new user would run them."""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.reeve_processes import FAKE_AGENT_COMMAND, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.database_independent,  # a fresh clone with its own SQLite database and environment
    pytest.mark.skipif(os.environ.get("REEVE_NESTED_QUICKSTART") == "1", reason="already inside one"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    base = tmp_path_factory.mktemp("fresh")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(base / "repo")], check=True)
    home = base / "home"
    home.mkdir()
    # A clean environment: nothing of ours but PATH; uv's package cache is shared only to save downloads.
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "REEVE_NESTED_QUICKSTART": "1"}
    cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    if Path(cache).is_dir():
        env["UV_CACHE_DIR"] = cache
    # Likewise the real agent programs tests/support/agents.sh installs (run by `./reeve test`).
    env["REEVE_AGENTS_DIR"] = os.environ.get("REEVE_AGENTS_DIR") or str(ROOT / ".cache" / "agents")
    for var in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE"):
        if var in os.environ:
            env[var] = os.environ[var]
    return base / "repo", home, env


def test_reeve_start_runs_the_api_and_the_worker_with_no_env_file(fresh_clone):
    repo, home, env = fresh_clone
    port = free_port()
    desk = home / "desk"
    desk.mkdir()
    env = {
        **env,
        "PULSE_API_PORT": str(port),
        "HAPI_COMMAND": FAKE_AGENT_COMMAND,
        "REEVE_DESK_PATH": str(desk),
    }

    def reeve(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["./reeve", *args], cwd=repo, env=env, check=check, capture_output=True, text=True, timeout=120
        )

    log = open(home / "start.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(["./reeve", "start"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
                    health = resp.status
                    break
            except OSError:
                time.sleep(0.5)
        assert health == 200, (home / "start.log").read_text()[-3000:]
        assert (home / ".reeve" / "pulse_queue.db").exists()
        reeve("trigger_pulse", "hello from the quick start mode=noop", check=True)
        deadline = time.monotonic() + 60
        listing = ""
        while time.monotonic() < deadline and "hello from the quick start" not in listing:
            listing = reeve("pulse_queue", "completed").stdout
            time.sleep(0.5)
        assert "hello from the quick start" in listing
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, (home / "start.log").read_text()[-3000:]


def system_python() -> Path | None:
    """The interpreter ./reeve makes .venv from: the first system python3 that is 3.11 or later."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.access(candidate, os.X_OK):
            continue
        recent = subprocess.run([candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
        if recent.returncode == 0:
            return Path(candidate).resolve()
    return None


def test_the_environment_is_made_from_the_system_python_that_the_services_can_run(fresh_clone):
    # install.sh refuses a .venv whose interpreter sits in another user's home (a pyenv shim under
    # ~root comes first on this PATH): the units run it as the service user.
    repo, home, env = fresh_clone
    system = system_python()
    if system is None:
        pytest.skip("no system python3 3.11 or later: uv picks the interpreter")
    subprocess.run(["./reeve", "help"], cwd=repo, env=env, check=True, capture_output=True, timeout=300)
    assert (repo / ".venv" / "bin" / "python").resolve() == system
    # A user's own choice still wins: UV_PYTHON naming the PATH's python3, when that is another one.
    chosen = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"], env=env, capture_output=True, text=True
    ).stdout.strip()
    if not chosen or Path(chosen).resolve() == system:
        return
    pinned = home / "pinned-venv"
    made = subprocess.run(
        ["./reeve", "help"],
        cwd=repo,
        env={**env, "UV_PROJECT_ENVIRONMENT": str(pinned), "UV_PYTHON": chosen},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    assert (pinned / "bin" / "python").resolve() == Path(chosen).resolve()


def test_reeve_test_runs_the_suite_from_a_fresh_clone(fresh_clone):
    repo, home, env = fresh_clone
    proc = subprocess.run(
        ["./reeve", "test", "tests/agent/test_stream.py", "-p", "no:cacheprovider"],
        cwd=repo,
        # One pytest-xdist process a half: a file of parser tests needs no more, and each costs
        # seconds of CPU to start, taken from the suite around it.
        env={**env, "REEVE_TEST_WORKERS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^=+ \d+ passed in ", proc.stdout, re.M), proc.stdout[-2000:]  # however many there are
    assert "reeve test: all checks passed" in proc.stdout
