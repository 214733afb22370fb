"""The README as a newcomer follows it: a fresh clone, an empty HOME, every shell block run as written.

The blocks are read from README.md here, so the README cannot drift from what works. Every ```bash
block runs, in order (the README is a newcomer's front door; sudo and systemd live in docs/). What a
person would change is changed the same way: a free port for 8765 (PULSE_API_PORT), the fake Bot API
for Telegram's (the Telegram section's settings, as a person with a bot has them in .env), and, from
"Set up your real agent" on, the agent a person set up (here the demo agent, in .env). A command a
person leaves running in its own terminal (`./reeve start`, the Telegram listener) runs in the
background until the end, then gets Ctrl+C; a second `./reeve start` first stops the one running, as
the README says (Ctrl+C); `createsuperuser` is answered in a terminal. `./reeve test` (the whole suite)
is the one command not run here: tests/site/test_quickstart.py runs it from a fresh clone.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.site.test_quickstart import free_port
from tests.support.reeve_processes import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.database_independent,  # a fresh clone with its own SQLite database and environment
    pytest.mark.skipif(os.environ.get("REEVE_NESTED_QUICKSTART") == "1", reason="already inside one"),
]

REAL_AGENT_SECTION = "## Set up your real agent"
TELEGRAM_SECTION = "## Telegram in five lines"
LEFT_RUNNING = ("./reeve start", "HAPI_COMMAND=demo ./reeve start", "./reeve run_telegram_listener")
MAX_LINES = 150
PASSWORD = "a newcomer's long passphrase 42"


def readme_blocks(text: str) -> list[list[str]]:
    """The commands of each ```bash block, continuation lines joined, comment lines dropped (a
    trailing comment stays)."""
    blocks = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        lines = re.sub(r"\\\n\s*", " ", block).splitlines()
        blocks.append([line for line in lines if line.strip() and not line.lstrip().startswith("#")])
    return blocks


def test_the_readme_is_read_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= MAX_LINES


def test_the_readme_blocks_are_found():
    commands = [c for block in readme_blocks((ROOT / "README.md").read_text()) for c in block]
    assert commands[0].startswith("./reeve start")
    assert any(c.startswith("./reeve trigger_pulse --wait") for c in commands)
    assert any(c.startswith("id=$(./reeve trigger_pulse -q") for c in commands)
    assert any(c.startswith("./reeve notify") for c in commands)
    assert readme_blocks("```bash\ncurl -X POST x \\\n  -d '{}'  # a comment\n# alone\n```\n") == [
        ["curl -X POST x  -d '{}'  # a comment"]
    ]


def test_the_readmes_links_lead_to_files_of_the_repository():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    assert links
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (ROOT / link).is_file(), link


def starts_reeve(command: str) -> bool:
    return command.split("#")[0].strip().endswith("./reeve start")


def in_a_terminal(command: str, *, cwd: Path, env: dict, answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as its stdin/stdout, replying to each prompt in turn."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once (this process has threads)
        os.chdir(cwd)
        os.execve("/bin/bash", ["bash", "-c", command], env)
    output, seen, pending = b"", 0, list(answers)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the terminal closed with the command's exit
                break
            if not chunk:
                break
            output += chunk
            while pending and (at := output.find(pending[0][0].encode(), seen)) >= 0:
                seen = at + len(pending[0][0])
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(fd)
    return code, output.decode(errors="replace")


def wait_for_health(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300  # the first start creates .venv
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the API never answered:\n{log.read_text()[-3000:]}")


def test_a_newcomer_runs_every_readme_command_from_a_fresh_clone(tmp_path, fake_telegram):
    repo, home = tmp_path / "repo", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    port = free_port()
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "REEVE_NESTED_QUICKSTART": "1",
        "PULSE_API_PORT": str(port),
    }
    # uv's package cache is shared only to save downloads; it holds nothing of Reeve's.
    cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    if Path(cache).is_dir():
        env["UV_CACHE_DIR"] = cache
    for var in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE"):
        if var in os.environ:
            env[var] = os.environ[var]

    text = (repo / "README.md").read_text()
    blocks = readme_blocks(text)
    # The blocks from "Set up your real agent" on run with the agent a person set up by then.
    after_real_agent = len(readme_blocks(text[: text.index(REAL_AGENT_SECTION)]))
    # From "Telegram in five lines" on, .env holds the bot's token and chat id (here the fake Bot API's):
    # before that, a newcomer has no Telegram, and doctor rightly fails while a configured one has no
    # listener polling.
    after_telegram = len(readme_blocks(text[: text.index(TELEGRAM_SECTION)]))
    running: list[tuple[str, subprocess.Popen, Path]] = []
    ran = []
    outputs = []

    def run_in_one_shell(commands: list[str]) -> None:
        """Consecutive commands of a block, in one shell as a person types them (TOKEN=... carries)."""
        if not commands:
            return
        script = "\n".join(commands)
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-x", "-c", script],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{script}\n{proc.stderr}"
        outputs.append(proc.stdout)
        ran.extend(commands)
        commands.clear()

    def run_alone(command: str) -> None:
        """A command a person leaves running in its own terminal, or answers in one."""
        if "createsuperuser" in command:
            code, output = in_a_terminal(
                command,
                cwd=repo,
                env=env,
                answers=[("Username", "newcomer"), ("Email address", ""), ("Password:", PASSWORD)]
                + [("Password (again)", PASSWORD)],
            )
            assert code == 0, f"{command}\n{output}"
            assert "Superuser created successfully" in output, output
        else:
            if starts_reeve(command):  # the README says: stop Reeve (Ctrl+C) and start it again
                for earlier_command, earlier, earlier_log in running:
                    if starts_reeve(earlier_command) and earlier.poll() is None:
                        os.killpg(earlier.pid, signal.SIGINT)
                        assert earlier.wait(timeout=60) == 0, earlier_log.read_text()[-3000:]
            log = home / f"background-{len(running)}.log"
            proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=repo,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            running.append((command, proc, log))
            if starts_reeve(command):
                wait_for_health(port, proc, log)
        ran.append(command)

    try:
        for number, block in enumerate(blocks):
            if number == after_real_agent:
                (repo / ".env").write_text("HAPI_COMMAND=demo\n")  # the agent a person set up
            if number == after_telegram:
                with (repo / ".env").open("a") as dotenv:
                    dotenv.writelines(f"{name}={value}\n" for name, value in fake_telegram.env(42).items())
            typed: list[str] = []
            for command in block:
                command = command.replace("8765", str(port))
                if command.startswith("./reeve test"):
                    continue  # the whole suite: tests/site/test_quickstart.py runs it from a fresh clone
                if command.startswith(LEFT_RUNNING) or "createsuperuser" in command:
                    run_in_one_shell(typed)
                    run_alone(command)
                else:
                    typed.append(command)
            run_in_one_shell(typed)

        # What those commands did, seen from outside: the pulses, the notification.
        queue = subprocess.run(
            ["./reeve", "pulse_queue", "all"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
        )
        assert "Check my calendar for tomorrow" in queue.stdout and "What time is it?" in queue.stdout
        said = "".join(outputs)
        assert "Hello! I am" in said  # trigger_pulse --wait printed the demo agent's answer
        assert "What time is it?" in said  # pulse_queue "$id" showed the pulse -q named
        assert "Backup finished" in fake_telegram.sent_texts
        # The first start said what it was doing, and installed what Reeve runs on, not the test tools.
        first_start = (home / "background-0.log").read_text()
        assert "reeve: first run: creating .venv/ from uv.lock (runtime dependencies only)" in first_start
        assert re.search(r"^ \+ django==", first_start, re.M), first_start[:3000]  # uv's progress
        assert (repo / ".venv/bin/gunicorn").exists() and not (repo / ".venv/bin/pytest").exists()
    finally:
        for command, proc, log in reversed(running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C in its terminal
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            assert code == 0, f"{command} ended {code}:\n{log.read_text()[-3000:]}"
    assert len(ran) == sum(map(len, blocks)) - 1  # all but ./reeve test
