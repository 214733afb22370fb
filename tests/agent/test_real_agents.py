"""The real programs a user installs: Hapi (npm `@twsxtd/hapi`) in front of Claude Code (npm
`@anthropic-ai/claude-code`, not logged in), as tests/support/agents.sh installs them into .cache/agents.

Each test gets a throwaway HOME holding Hapi's credential (~/.hapi/settings.json), so Hapi starts its
hub by itself, and runs Reeve's real worker (or command) with the guide's setting HAPI_COMMAND=hapi.
Claude, not logged in, answers every prompt with real stream-json: an init event, then a result
"Not logged in · Please run /login", and it keeps a transcript of what it was asked under
~/.claude/projects. Hapi leaves its background runner behind; each test stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from pulses.limits import is_session_id
from tests.support.reeve_processes import ROOT, on_postgres

pytestmark = pytest.mark.slow

AGENTS_BIN = Path(os.environ.get("REEVE_AGENTS_DIR") or ROOT / ".cache" / "agents") / "node_modules" / ".bin"
HAPI_CREDENTIAL = "reeve-test-hapi-credential"
NOT_LOGGED_IN = "Not logged in · Please run /login"


@pytest.fixture
def real_home(tmp_path, migrated_home):
    """A Reeve home whose agent is the real `hapi` (HAPI_COMMAND=hapi), with a HOME of its own."""
    if not ((AGENTS_BIN / "hapi").exists() and (AGENTS_BIN / "claude").exists()):
        pytest.skip(
            "the real Hapi and Claude Code are not installed: run tests/support/agents.sh (needs npm)"
        )
    if on_postgres():
        pytest.skip("runs in the SQLite half only: Hapi's hub listens on the fixed port 3006")
    user_home = tmp_path / "user-home"
    (user_home / ".hapi").mkdir(parents=True)
    (user_home / ".hapi" / "settings.json").write_text(json.dumps({"cliApiToken": HAPI_CREDENTIAL}))
    home = migrated_home.copy_to(tmp_path)
    home.extra_env.update(
        HOME=str(user_home),
        PATH=f"{AGENTS_BIN}:{os.environ['PATH']}",
        HAPI_COMMAND="hapi",
        PULSE_API_TOKEN="a-long-enough-api-token-for-the-doctor-0123456789",
    )
    home.user_home = user_home
    yield home
    stop_hapi_runner(home)
    home.stop_all()


def stop_hapi_runner(home) -> None:
    """Hapi's background runner (`hapi runner start-sync`, detached from the run) is Hapi's, not ours."""
    subprocess.run(
        [str(AGENTS_BIN / "hapi"), "runner", "stop"],
        env=home.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    state = home.user_home / ".hapi" / "runner.state.json"
    if state.exists():
        pid = json.loads(state.read_text()).get("pid")
        if pid and _processes(home, "runner"):
            os.kill(pid, signal.SIGKILL)


def _processes(home, word: str) -> list[int]:
    """Live processes running with this test's HOME whose command line holds `word`."""
    found = []
    needle = f"HOME={home.user_home}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ and word in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def claude_processes(home) -> list[int]:
    """Claude, and Hapi running it (`hapi claude ...`); Hapi's runner and hub do not name claude."""
    return _processes(home, "claude")


def doctor_line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line[6:].startswith(f"{name} "))


def attempts(home) -> list[dict]:
    columns = ("number", "error", "session_id", "stdout_tail", "exit_code")
    rows = home.query(f"SELECT {', '.join(columns)} FROM pulse_attempts ORDER BY id")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def transcript(home, session_id: str) -> list[dict]:
    """What Claude recorded of a session (its own file under ~/.claude/projects)."""
    [path] = (home.user_home / ".claude" / "projects").glob(f"*/{session_id}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def schedule(home, prompt: str, *extra: str) -> None:
    home.manage("trigger_pulse", *extra, "--", prompt)


def test_the_guides_hapi_setting_runs_claude_and_the_attempt_keeps_claudes_words(real_home):
    # The prompt reaches Claude as the prompt, not as an option, through Hapi as well.
    schedule(real_home, "--dangerously-skip-permissions")
    real_home.manage("run_pulse_worker", "--once", timeout=300)
    [attempt] = attempts(real_home)
    assert NOT_LOGGED_IN in attempt["error"], attempt
    assert is_session_id(attempt["session_id"])
    asked = [e for e in transcript(real_home, attempt["session_id"]) if e.get("type") == "user"]
    assert asked[0]["message"]["content"] == "--dangerously-skip-permissions"
    assert asked[0]["permissionMode"] == "default"


def test_a_stale_resume_is_retried_as_a_new_session(real_home):
    stale = str(uuid.uuid4())
    schedule(real_home, "Carry on", "--session", stale)
    real_home.manage("run_pulse_worker", "--once", timeout=300)
    [attempt] = attempts(real_home)
    assert NOT_LOGGED_IN in attempt["error"], attempt
    assert is_session_id(attempt["session_id"]) and attempt["session_id"] != stale
    log = (real_home.path / "logs" / "daemon.log").read_text()
    assert f"agent_resume_rejected pulse=1 session={stale} retrying_as_new_session" in log


def test_claude_started_through_hapi_in_a_desk_set_up_by_mcp_config_lists_reeves_server(real_home):
    real_home.manage("mcp_config", "--write")
    for name in (".mcp.json", ".claude/settings.json"):
        text = (real_home.desk / name).read_text()
        assert str(real_home.db_path) not in text and "DATABASE_URL" not in text
    schedule(real_home, "Which tools do you have?")
    real_home.manage("run_pulse_worker", "--once", timeout=300)
    [attempt] = attempts(real_home)
    events = [
        json.loads(line[line.index("{") :]) for line in attempt["stdout_tail"].splitlines() if "{" in line
    ]
    [init] = [e for e in events if e.get("type") == "system" and e.get("subtype") == "init"]
    assert "reeve" in [server["name"] for server in init["mcp_servers"]], init["mcp_servers"]


def test_agent_probe_and_doctor_against_the_real_programs(real_home):
    probe = real_home.manage("agent_probe", "Test prompt", check=False)
    assert probe.returncode == 1
    out = probe.stdout
    argv = "hapi claude --print --output-format stream-json --verbose --allowedTools=mcp__reeve"
    assert f"argv:     {argv} -- 'Test prompt'" in out
    assert f"error:    {NOT_LOGGED_IN}" in out
    session = next(line.split()[1] for line in out.splitlines() if line.startswith("session:"))
    assert is_session_id(session)
    assert "the agent run failed" in probe.stderr

    doctor = real_home.manage("doctor", "--no-api", "--no-telegram", check=False).stdout
    assert doctor_line(doctor, "agent command").startswith("ok") and "runs `hapi claude ...`" in doctor
    assert doctor_line(doctor, "hapi") == "ok    hapi           Hapi 0.30.7, agent claude (HAPI_AGENT)"
    credential = doctor_line(doctor, "credential")
    assert credential.startswith("ok") and str(real_home.user_home / ".hapi" / "settings.json") in credential
    assert doctor_line(doctor, "agent cli").endswith(f"claude -> {AGENTS_BIN / 'claude'}")
    real_home.manage("mcp_config", "--write")
    doctor = real_home.manage("doctor", "--no-api", "--no-telegram", check=False).stdout
    assert doctor_line(doctor, "agent tools").startswith("ok")

    (real_home.user_home / ".hapi" / "settings.json").unlink()
    doctor = real_home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert doctor.returncode == 1
    line = doctor_line(doctor.stdout, "credential")
    assert line.startswith("FAIL") and "hapi auth login" in line and "CLI_API_TOKEN" in line


class SilentApi:
    """A loopback 'model API' that accepts connections and never answers: Claude waits on it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_api(real_home):
    api = SilentApi()
    real_home.extra_env.update(ANTHROPIC_API_KEY="sk-ant-test-not-a-key", ANTHROPIC_BASE_URL=api.url)
    yield api
    api.close()


def test_a_timeout_ends_hapi_and_claude_under_it(real_home, silent_api):
    schedule(real_home, "Think for a long time")
    worker = real_home.start("run_pulse_worker", "--once", PULSE_TIMEOUT_SECONDS="25")
    seen = real_home.wait_for(lambda: claude_processes(real_home), timeout=120, what="claude to run")
    real_home.wait_for(lambda: silent_api.connections, timeout=180, what="claude to call the model's API")
    assert worker.wait(timeout=180) == 0
    [attempt] = attempts(real_home)
    assert "timed out after 25s" in attempt["error"]
    real_home.wait_for(
        lambda: not claude_processes(real_home), timeout=10, what="every claude process to end"
    )
    assert set(seen).isdisjoint(claude_processes(real_home))
    assert not _processes(real_home, "hapi hub")  # Hapi's hub went with the run's process group


def test_a_dead_worker_takes_hapi_and_claude_with_it(real_home, silent_api):
    schedule(real_home, "Think for a long time")
    worker = real_home.start("run_pulse_worker")
    real_home.wait_for(lambda: claude_processes(real_home), timeout=120, what="claude to run")
    real_home.wait_for(lambda: silent_api.connections, timeout=180, what="claude to call the model's API")
    worker.kill()
    worker.wait(timeout=10)
    real_home.wait_for(
        lambda: not claude_processes(real_home), timeout=20, what="every claude process to end"
    )
    assert not _processes(real_home, "hapi claude")


def _init_event(attempt: dict) -> dict:
    events = [
        json.loads(line[line.index("{") :]) for line in attempt["stdout_tail"].splitlines() if "{" in line
    ]
    [init] = [e for e in events if e.get("type") == "system" and e.get("subtype") == "init"]
    return init


@pytest.mark.parametrize(("command", "model"), [("hapi", "sonnet"), ("claude", "haiku")])
def test_a_pulses_model_reaches_claude_directly_and_through_hapi(real_home, command, model):
    # Claude Code takes --model=M (and the hidden --max-turns=N) before `--`. Hapi 0.30.7 moves a
    # --model option after `--`, where Claude reads it as prompt words: through Hapi the model goes as
    # ANTHROPIC_MODEL instead (pulses/agent/command.py), and Claude starts on it either way.
    real_home.extra_env["HAPI_COMMAND"] = command
    schedule(real_home, "Which model are you?", "--model", model, "--max-turns", "3")
    real_home.manage("run_pulse_worker", "--once", timeout=300)
    [attempt] = attempts(real_home)
    assert model in _init_event(attempt)["model"], _init_event(attempt)["model"]
    assert NOT_LOGGED_IN in attempt["error"], attempt
    asked = [e for e in transcript(real_home, attempt["session_id"]) if e.get("type") == "user"]
    assert asked[0]["message"]["content"] == "Which model are you?"
