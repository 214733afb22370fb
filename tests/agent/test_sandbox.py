"""The agent's sandbox (pulses/agent/sandbox.py) and the end of a run (pulses/agent/executor.py, its
pipes' drain in pulses/agent/output.py): what the agent sees under bubblewrap, and that a run ends when
its agent does, with or without it."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from pulses.agent import sandbox
from pulses.agent.executor import AgentRequest, Executor
from pulses.agent.process_groups import Reaper
from pulses.agent.sandbox import Layout, prefix
from tests.support.reeve_processes import FAKE_AGENT_COMMAND, ROOT, process_alive

pytestmark = pytest.mark.database_independent  # the executor, bwrap and the fake agent: no database

needs_bwrap = pytest.mark.skipif(bool(sandbox.bwrap_problem()), reason=sandbox.bwrap_problem() or "")


@pytest.fixture
def desk(fake_agent):
    return fake_agent / "desk"


def run(desk, prompt, *, mode=sandbox.OFF, timeout=60.0):
    executor = Executor(
        command=FAKE_AGENT_COMMAND, desk=desk, timeout=timeout, passthrough=["FAKE_AGENT_*"], sandbox=mode
    )
    return executor.run(AgentRequest(prompt=prompt, pulse_id=7))


@pytest.mark.parametrize("mode", [sandbox.OFF, pytest.param(sandbox.BWRAP, marks=needs_bwrap)])
def test_a_detached_child_holding_the_agents_output_does_not_keep_the_run_going(desk, mode):
    started = time.monotonic()
    outcome = run(desk, "mode=detach:30", mode=mode)
    assert outcome.success, outcome.error
    assert outcome.result_text == "Left something running."
    assert time.monotonic() - started < 15


@needs_bwrap
def test_under_bwrap_the_agent_sees_no_process_of_reeves_and_none_of_their_environments(
    desk, monkeypatch, settings, tmp_path
):
    # This test process stands for Reeve's worker: a secret in its environment, its home masked.
    monkeypatch.setenv("REEVE_WORKER_ONLY_SECRET", "worker-secret-0123456789")
    reeve_home = tmp_path / "reeve-home"
    reeve_home.mkdir()
    (reeve_home / "secret_key").write_text("the-secret-key")
    settings.REEVE_HOME = reeve_home
    settings.SECRET_KEY_FILE = reeve_home / "secret_key"
    monkeypatch.setenv(
        "FAKE_AGENT_ATTACK", json.dumps({"read": [str(reeve_home / "secret_key"), "/etc/hostname"]})
    )
    outcome = run(desk, "mode=attack", mode=sandbox.BWRAP)
    assert outcome.success, outcome.error
    report = json.loads((desk / "attack-report.json").read_text())
    assert "worker-secret-0123456789" not in report["processes"]
    assert f"== /proc/{os.getpid()} " not in report["processes"]
    assert "-m pytest" not in report["processes"]
    seen = [line for line in report["processes"].splitlines() if line.startswith("== /proc/")]
    assert len(seen) < 10, seen  # bwrap's init, the agent, its shells: a namespace of its own
    code, text = report["read"][str(reeve_home / "secret_key")]
    assert code != 0 and "the-secret-key" not in text
    assert report["read"]["/etc/hostname"][0] == 0  # the rest of the system stays readable


def test_the_desk_inside_a_masked_folder_is_bound_again_and_masks_inside_it_stay(tmp_path):
    home, reeve_home = tmp_path / "home", tmp_path / "home" / ".reeve"
    desk = reeve_home / "desk"
    checkout = home / "reeve"
    for folder in (desk, checkout):
        folder.mkdir(parents=True)
    (checkout / ".env").write_text("SECRET_KEY=x\n")
    (desk / "private.db").write_text("")
    argv = prefix(
        Layout(
            home=home,
            desk=desk,
            read_only=(checkout,),
            masked=(reeve_home, checkout / ".env", desk / "private.db", tmp_path / "missing"),
        )
    )
    pairs = [argv[i : i + 3] for i in range(len(argv) - 2)]
    order = [
        argv.index("--bind") + 1,  # HOME first (the shallowest)
        pairs.index(["--ro-bind", str(checkout), str(checkout)]),
        argv.index(str(reeve_home)) - 1,  # "--tmpfs" over REEVE_HOME
        len(argv) - 1 - argv[::-1].index(str(desk)),  # the Desk, bound again after the mask
    ]
    assert argv[order[0]] == str(home) and argv[order[2]] == "--tmpfs" and order == sorted(order)
    assert ["--ro-bind", "/dev/null", str(checkout / ".env")] in pairs
    last_desk_mask = max(
        i for i, p in enumerate(pairs) if p == ["--ro-bind", "/dev/null", str(desk / "private.db")]
    )
    assert last_desk_mask > order[-1]
    assert str(tmp_path / "missing") not in argv
    assert "--unshare-pid" in argv and "--die-with-parent" in argv and argv[-1] == "--"
    assert "--new-session" not in argv  # the worker stops a run through its process group


def test_a_folder_holding_home_is_never_masked_whole(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret_key").write_text("k")
    argv = prefix(Layout(home=home, desk=home, masked=(tmp_path, home, home / "secret_key")))
    assert "--tmpfs" not in argv[argv.index("--bind") :]
    assert ["--ro-bind", "/dev/null", str(home / "secret_key")] == argv[-4:-1]


def test_auto_without_a_working_bwrap_runs_uncontained_and_bwrap_is_a_setup_problem(monkeypatch):
    sandbox.bwrap_problem.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        assert sandbox.containment("auto").active == "none" and not sandbox.containment("auto").problem
        assert "not installed" in sandbox.containment("auto").note
        assert "AGENT_SANDBOX=bwrap but bwrap is not installed" in sandbox.containment("bwrap").problem
        assert sandbox.containment("off").active == "none"
        assert "use auto, bwrap or off" in sandbox.containment("on").problem
    finally:
        sandbox.bwrap_problem.cache_clear()


def test_what_the_sandbox_hides_from_the_agent(tmp_path):
    home, desk, checkout, reeve = (tmp_path / name for name in ("home", "desk", "checkout", "reeve"))
    for folder in (home, desk, checkout, reeve / "bin"):
        folder.mkdir(parents=True)
    layout = Layout(home=home, desk=desk, read_only=(checkout,), masked=(reeve,))
    assert sandbox.hidden_from_agent(tmp_path / "elsewhere", layout) == Path("/tmp")  # its /tmp is private
    assert sandbox.hidden_from_agent(reeve / "bin", layout) == reeve.resolve()
    for seen in (home, desk, checkout, Path("/usr/bin/env")):
        assert sandbox.hidden_from_agent(seen, layout) is None


@needs_bwrap
def test_an_agent_command_under_tmp_runs_contained_and_one_among_reeves_private_files_is_a_setup_problem(
    desk, tmp_path, monkeypatch, settings
):
    # Claude Code installed under /tmp (npm --prefix /tmp/...): the sandbox's /tmp is private, so the
    # command's own folders are bound into it, read-only.
    script = tmp_path / "npm" / "bin" / "claude"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\nexec {FAKE_AGENT_COMMAND} "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("HOME", str(desk))  # a home the agent keeps, away from the script
    contained = Executor(
        command=str(script), desk=desk, timeout=60, passthrough=["FAKE_AGENT_*"], sandbox=sandbox.BWRAP
    )
    assert contained.setup_problem() == ""
    outcome = contained.run(AgentRequest(prompt="mode=success", pulse_id=7))
    assert outcome.success, outcome.error

    # Inside a folder Reeve masks (its home, with the secret key), no bind may show it: nothing runs.
    settings.REEVE_HOME = str(tmp_path / "npm")
    problem = contained.setup_problem()
    assert f"the agent command {script} lies in {(tmp_path / 'npm').resolve()}" in problem, problem
    assert "AGENT_SANDBOX=off" in problem
    assert Executor(command=str(script), desk=desk, timeout=30, sandbox=sandbox.OFF).setup_problem() == ""


def _running(marker: str) -> list[str]:
    """The command lines of the processes (bwrap and the agent included) whose argv holds `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = open(f"/proc/{entry.name}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and process_alive(int(entry.name)):
                found.append(cmdline.replace("\0", " "))
    return found


def _start(executor: Executor, prompt: str) -> tuple[threading.Thread, list]:
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.append(executor.run(AgentRequest(prompt=prompt))))
    thread.start()
    return thread, outcomes


@needs_bwrap
def test_stopping_a_contained_run_through_its_process_group_ends_the_sandbox_and_all_in_it(desk):
    marker = f"marker-{uuid.uuid4().hex}"
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=desk, timeout=60, sandbox=sandbox.BWRAP)
    thread, outcomes = _start(executor, f"mode=children_ignore_term {marker}")
    deadline = time.monotonic() + 20
    while len(_running(marker)) < 2 and time.monotonic() < deadline:  # bwrap and the agent
        time.sleep(0.1)
    executor.interrupt_all(grace=1)
    thread.join(timeout=20)
    assert outcomes and outcomes[0].interrupted
    assert _running(marker) == []


@needs_bwrap
def test_the_reaper_still_kills_a_contained_run_when_its_worker_dies(desk):
    marker = f"marker-{uuid.uuid4().hex}"
    reaper = Reaper()
    executor = Executor(
        command=FAKE_AGENT_COMMAND, desk=desk, timeout=60, sandbox=sandbox.BWRAP, reaper=reaper
    )
    thread, outcomes = _start(executor, f"mode=hang {marker}")
    deadline = time.monotonic() + 20
    while len(_running(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(marker)
    reaper._proc.stdin.close()  # what the kernel does to the reaper's pipe when the worker dies
    thread.join(timeout=20)
    assert outcomes and not outcomes[0].success
    assert _running(marker) == []


@needs_bwrap
def test_a_reeve_command_in_the_sandbox_with_the_key_file_hidden_runs_on_a_throwaway_key(tmp_path):
    reeve_home = tmp_path / "reeve"
    reeve_home.mkdir()
    (reeve_home / "secret_key").write_text("the-real-key")
    user_home = reeve_home / "user"  # a HOME inside REEVE_HOME: the folder cannot be hidden whole
    user_home.mkdir()
    layout = Layout(
        home=user_home,
        desk=user_home,
        read_only=(ROOT, *sandbox.linked_targets(ROOT)),  # the checkout, wherever it is (/tmp too)
        masked=(reeve_home, reeve_home / "secret_key"),
    )
    argv = prefix(layout)
    show = "from django.conf import settings as s; print(len(s.SECRET_KEY), 'the-real-key' in s.SECRET_KEY)"
    env = {"PATH": os.environ["PATH"], "HOME": str(user_home), "REEVE_HOME": str(reeve_home)}
    proc = subprocess.run(
        [*argv, sys.executable, str(ROOT / "manage.py"), "shell", "-c", show],
        env={**env, "DJANGO_SETTINGS_MODULE": "reeve_site.settings", "REEVE_IGNORE_DOTENV": "1"},
        cwd=user_home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split()[-2:] == ["67", "False"], proc.stderr
    assert (reeve_home / "secret_key").read_text() == "the-real-key"


def _run_processes(marker: str) -> list[str]:
    """The command lines of the live processes whose environment holds FAKE_AGENT_STOP_MARK=`marker`
    (the agent, what it started, and bwrap's own two when contained)."""
    wanted = f"FAKE_AGENT_STOP_MARK={marker}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                environment = open(f"/proc/{entry.name}/environ", "rb").read().split(b"\0")
                cmdline = open(f"/proc/{entry.name}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if wanted in environment and process_alive(int(entry.name)):
                found.append(cmdline.replace("\0", " "))
    return found


@pytest.mark.parametrize("mode", [sandbox.OFF, pytest.param(sandbox.BWRAP, marks=needs_bwrap)])
def test_a_stop_ends_the_agent_and_its_children_that_ignore_sigterm_with_or_without_the_sandbox(
    desk, monkeypatch, mode
):
    """What a stop (`Executor.interrupt`, as the worker calls it) does to a run whose agent and two
    children ignore SIGTERM. Uncontained, the group's SIGTERM is ignored and the SIGKILL after the
    grace ends them all. Under bwrap the SIGTERM ends bwrap itself (it does not forward it), and the
    agent's PID namespace dies with it: no grace for the agent, but nothing is left either."""
    marker = uuid.uuid4().hex
    monkeypatch.setenv("FAKE_AGENT_STOP_MARK", marker)
    executor = Executor(
        command=FAKE_AGENT_COMMAND, desk=desk, timeout=60, passthrough=["FAKE_AGENT_*"], sandbox=mode
    )
    outcomes: list = []
    thread = threading.Thread(
        target=lambda: outcomes.append(
            executor.run(AgentRequest(prompt="mode=children_ignore_term", pulse_id=7))
        )
    )
    thread.start()
    agent_and_children = 3 + (2 if mode == sandbox.BWRAP else 0)
    deadline = time.monotonic() + 20
    while len(_run_processes(marker)) < agent_and_children and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_run_processes(marker)) == agent_and_children

    began = time.monotonic()
    assert executor.interrupt(7, because="stopped by command", grace=1.0)
    thread.join(timeout=20)
    took = time.monotonic() - began
    assert outcomes and outcomes[0].interrupted and outcomes[0].error == "stopped by command"
    assert _run_processes(marker) == []
    if mode == sandbox.BWRAP:
        assert took < 1.0  # at once: the namespace went with bwrap
    else:
        assert took >= 1.0  # the SIGKILL after the grace
