"""The API as users run it: `manage.py run_reeve` (gunicorn + worker) on 127.0.0.1, driven over HTTP.

`LiveReeve` is shared by the fuzz, metrics and browser tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.reeve_processes import ROOT, ReeveHome

GUIDE_TOKEN = "your_token_here"
GUIDE_HEALTH = "curl http://localhost:8765/api/health"
GUIDE_TRIGGER = """curl -X POST http://localhost:8765/api/pulse/trigger \\
  -H "Authorization: Bearer your_token_here" \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "Test pulse from curl",
    "scheduled_at": "now",
    "priority": "normal",
    "source": "manual_test"
  }'"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (read from /proc), so a failed test never leaves servers behind."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found += [child, *_children(child)]
    return found


@dataclass
class LiveReeve:
    """Reeve's web process (and by default its worker) on a free port, with its own database."""

    home: ReeveHome
    token: str = "live-test-token-long-enough-to-be-served"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # One gunicorn worker, the product's default (each more costs ~1 s of CPU to start); the tests of
    # what crosses processes (metrics, a whole process tree stopping) ask for two.
    web_workers: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home.path / "live.log"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.home.env,
            "PULSE_API_PORT": str(self.port),
            "PULSE_API_TOKEN": self.token,
            "PROMETHEUS_MULTIPROC_DIR": str(self.home.path / "metrics"),
            "WEB_CONCURRENCY": str(self.web_workers),
            "PYTHONWARNINGS": "ignore",
            **extra,
        }

    def start(self, *, web_only: bool = False, **extra: str) -> LiveReeve:
        argv = (
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
            if web_only
            else [sys.executable, "manage.py", "run_reeve"]
        )
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(**extra),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"reeve exited early:\n{self.log.read_text()[-3000:]}"
            try:
                self.request("GET", "/api/health", token=None)
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the web process did not answer within 90 s:\n{self.log.read_text()[-3000:]}")

    def request(self, method: str, path: str, body: object = None, token: str | None = "default"):
        """(status, parsed JSON or text) for one request; HTTP errors are answers, not exceptions."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        return status, json.loads(raw) if kind.startswith("application/json") else raw.decode()

    def wait_for(self, predicate, *, timeout: float = 60, what: str = "condition"):
        return self.home.wait_for(predicate, timeout=timeout, interval=0.2, what=what)

    def interrupt(self, *, timeout: float = 60) -> int:
        """Ctrl+C, as a person in the terminal would; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        leftovers = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _run_guide_command(command: str, port: int, token: str = "") -> subprocess.CompletedProcess:
    """The guide's command as a user runs it: with their port and their own token in place of
    the guide's placeholder (Reeve refuses to serve the placeholder itself)."""
    command = command.replace("localhost:8765", f"localhost:{port}")
    return subprocess.run(
        ["bash", "-c", command.replace(GUIDE_TOKEN, token) if token else command],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_run_reeve_serves_the_guides_curl_commands_and_runs_the_pulse_and_ctrl_c_stops_both(live_reeve):
    live_reeve.start()

    health = _run_guide_command(GUIDE_HEALTH, live_reeve.port)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["status"] == "healthy"

    triggered = _run_guide_command(GUIDE_TRIGGER, live_reeve.port, live_reeve.token)
    assert triggered.returncode == 0, triggered.stderr
    pulse = json.loads(triggered.stdout)
    assert (pulse["prompt"], pulse["priority"], pulse["source"]) == (
        "Test pulse from curl",
        "normal",
        "manual_test",
    )

    # The worker started by the same command runs it with the (fake) agent.
    live_reeve.wait_for(
        lambda: (
            live_reeve.home.query("SELECT status FROM pulses WHERE id=?", (pulse["id"],)) == [("completed",)]
        ),
        what="the curl pulse to complete",
    )
    children = _children(live_reeve.proc.pid)
    assert live_reeve.interrupt() == 0
    time.sleep(0.5)
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
    assert "Test pulse from curl" in live_reeve.home.agent_log.read_text()


@pytest.mark.slow
def test_tokens_never_reach_the_logs(live_reeve):
    live_reeve.start()
    assert live_reeve.request("GET", "/api/pulses")[0] == 200
    assert live_reeve.request("GET", "/api/pulses", token="wrong-secret-value")[0] == 401
    assert live_reeve.request("POST", "/api/pulse/trigger", {"prompt": "x", "bad": 1})[0] == 400
    live_reeve.interrupt()
    logs = live_reeve.log.read_text() + (live_reeve.home.path / "logs" / "daemon.log").read_text()
    assert "Bad Request" in logs or "pulse" in logs
    assert live_reeve.token not in logs
    assert "wrong-secret-value" not in logs


@pytest.mark.slow
def test_health_is_503_when_the_database_is_unreachable(live_reeve):
    closed = free_port()
    live_reeve.start(web_only=True, DATABASE_URL=f"postgres://reeve:pw@127.0.0.1:{closed}/reeve")
    status, body = live_reeve.request("GET", "/api/health", token=None)
    assert status == 503
    assert body["status"] == "unhealthy" and body["database"].startswith("unreachable")
