"""The Telegram listener and the MCP server stop when their parent dies, however it died."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.support.reeve_processes import ROOT, ReeveHome, initialize_request, process_alive

pytestmark = pytest.mark.slow

# A parent that starts the command given to it, says the child's pid and waits to be killed. The child
# inherits its stdin and stdout, which the test holds: the child's stdin never sees EOF.
PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(600)\n"
)


def start_under_a_parent(home: ReeveHome, *command: str) -> tuple[subprocess.Popen, int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=home.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(home.path / "child.stderr").open("w"),
        text=True,
    )
    home.children.append(parent)
    return parent, int(parent.stdout.readline())


def kill_parent_and_wait_for(home: ReeveHome, parent: subprocess.Popen, child: int) -> None:
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    try:
        home.wait_for(lambda: not process_alive(child), timeout=15, what="the orphan to stop")
    finally:
        if process_alive(child):
            subprocess.run(["kill", "-9", str(child)], check=False)


def test_the_telegram_listener_stops_when_its_parent_is_killed(reeve_home, fake_telegram):
    reeve_home.extra_env.update(fake_telegram.env(42))
    parent, listener = start_under_a_parent(reeve_home, "run_telegram_listener", "--poll-timeout", "5")
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the listener's first poll")
    kill_parent_and_wait_for(reeve_home, parent, listener)
    log = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert "parent_gone process=telegram_listener" in log
    assert "telegram_listener_stopped" in log  # a clean stop, not a kill


def test_the_mcp_server_stops_when_the_agent_that_started_it_is_killed(reeve_home):
    parent, server = start_under_a_parent(reeve_home, "mcp_server")
    parent.stdin.write(json.dumps(initialize_request(client="t")) + "\n")
    parent.stdin.flush()
    assert json.loads(parent.stdout.readline())["id"] == 1  # the server answers: it is serving
    kill_parent_and_wait_for(reeve_home, parent, server)
    assert "parent_gone process=mcp_server" in (reeve_home.path / "logs" / "daemon.log").read_text()
