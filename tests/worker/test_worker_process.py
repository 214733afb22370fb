"""The real `run_pulse_worker` process, killed and signalled as systemd and crashes would."""

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.reeve_processes import FAKE_AGENT_COMMAND, noop_agent_env, noop_starts, process_alive

pytestmark = pytest.mark.slow


def schedule(home, prompt, *extra):
    home.manage("trigger_pulse", prompt, *extra)


def statuses(home):
    return dict(home.query("SELECT status, COUNT(*) FROM pulses GROUP BY status"))


def test_kill_9_during_a_pulse_kills_the_agent_and_the_next_worker_runs_it_again_at_once(reeve_home):
    reeve_home.extra_env["PULSE_LEASE_SECONDS"] = "120"  # a lease wait would outlast the test
    schedule(reeve_home, "mode=sleep:4")
    worker = reeve_home.start("run_pulse_worker")
    first = reeve_home.wait_for(lambda: reeve_home.agent_starts(), what="the agent to start")[0]
    worker.kill()
    worker.wait(timeout=10)
    # The dead worker's agent dies with it: nothing can run the pulse twice at once.
    reeve_home.wait_for(lambda: not process_alive(first["pid"]), timeout=10, what="the orphaned agent to die")
    assert statuses(reeve_home) == {"processing": 1}
    # It finds the instance lock free (no other worker alive): the dead one's claim returns at once.
    survivor = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: statuses(reeve_home) == {"completed": 1},
        timeout=30,
        what="the pulse to complete on the second worker",
    )
    [(attempts, error)] = reeve_home.query("SELECT attempt_count, error_message FROM pulses")
    assert attempts == 2
    errors = [row[0] for row in reeve_home.query("SELECT error FROM pulse_attempts ORDER BY id")]
    assert errors[0].startswith(f"interrupted: worker {socket.gethostname()}:{worker.pid} died")
    assert errors[1] == ""
    assert len(reeve_home.agent_starts()) == 2
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=30) == 0


def test_a_worker_joining_a_live_one_leaves_a_dead_workers_claim_to_its_lease(reeve_home):
    schedule(reeve_home, "mode=sleep:300")
    doomed = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(lambda: reeve_home.agent_starts(), what="the agent to start")
    # A second worker joins while the first lives: it proves nothing about the first.
    bystander = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: reeve_home.query("SELECT count(*) FROM pulse_workers") == [(2,)], what="both workers"
    )
    doomed.kill()
    doomed.wait(timeout=10)
    time.sleep(1)
    assert statuses(reeve_home) == {"processing": 1}  # the lease (2 s) still runs
    reeve_home.wait_for(lambda: len(reeve_home.agent_starts()) == 2, timeout=30, what="the lease to expire")
    errors = [row[0] for row in reeve_home.query("SELECT error FROM pulse_attempts ORDER BY id")]
    assert errors[0].startswith("lease expired")
    bystander.send_signal(signal.SIGTERM)
    bystander.wait(timeout=30)


def test_kill_9_of_the_worker_during_a_wake_check_leaves_no_sh_behind(reeve_home):
    marker = f"reeve-wake-check-{os.getpid()}-{time.monotonic_ns()}"
    schedule(reeve_home, "mode=sleep:0", "--check", f"echo {marker} >/dev/null; sleep 30; echo done")
    worker = reeve_home.start("run_pulse_worker")

    def checks() -> list[int]:
        return [pid for pid in _pids_with(marker) if process_alive(pid)]

    [sh] = reeve_home.wait_for(checks, what="the wake check to start")
    worker.kill()
    worker.wait(timeout=10)
    reeve_home.wait_for(lambda: not checks(), timeout=10, what="the wake check's sh to die with its worker")
    assert not process_alive(sh)


def _pids_with(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_sigterm_lets_a_running_pulse_finish(reeve_home):
    schedule(reeve_home, "mode=sleep:1.5")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(lambda: reeve_home.agent_starts(), what="the agent to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert statuses(reeve_home) == {"completed": 1}


def test_sigterm_past_the_grace_period_returns_the_pulse_to_pending(reeve_home):
    schedule(reeve_home, "mode=sleep:60")
    worker = reeve_home.start("run_pulse_worker", PULSE_SHUTDOWN_GRACE_SECONDS="1")
    start = reeve_home.wait_for(lambda: reeve_home.agent_starts(), what="the agent to start")[0]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert statuses(reeve_home) == {"pending": 1}
    assert reeve_home.query("SELECT attempt_count FROM pulses") == [(0,)]
    assert not process_alive(start["pid"])
    assert "pulse_released" in reeve_home.output(worker)


def test_a_second_signal_stops_at_once_leaving_nothing_processing(reeve_home):
    schedule(reeve_home, "mode=children_ignore_term")
    worker = reeve_home.start("run_pulse_worker", PULSE_SHUTDOWN_GRACE_SECONDS="600")
    reeve_home.wait_for(lambda: reeve_home.agent_starts(), what="the agent to start")
    worker.send_signal(signal.SIGTERM)
    reeve_home.wait_for(lambda: "worker_draining" in reeve_home.output(worker), what="draining")
    began = time.monotonic()
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    assert time.monotonic() - began < 15
    assert statuses(reeve_home) == {"pending": 1}


def test_two_workers_on_one_sqlite_file_run_500_pulses_exactly_once(reeve_home):
    reeve_home.manage(
        "shell",
        "-c",
        (
            "from pulses import queue\n"
            "for i in range(500):\n"
            "    p = ['critical', 'high', 'normal', 'low'][i % 4]\n"
            "    queue.schedule(prompt=f'pulse {i}', priority=p)\n"
        ),
    )
    noop_log = reeve_home.path / "noop.log"
    env = {**noop_agent_env(noop_log), "PULSE_MAX_CONCURRENT": "4", "LOG_LEVEL": "WARNING"}
    workers = [reeve_home.start("run_pulse_worker", "--once", **env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    assert statuses(reeve_home) == {"completed": 500}
    runs = noop_starts(noop_log)
    assert len(runs) == 500 and set(runs.values()) == {1}
    for worker in workers:
        assert "database is locked" not in reeve_home.output(worker)
    assert reeve_home.query("SELECT COUNT(*) FROM pulse_attempts") == [(500,)]


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_a_storm_of_signals_stops_the_worker_within_its_grace_every_time(reeve_home, busy):
    """The handlers only count the signal and wake the waiter's self-pipe: a burst of SIGTERM, SIGINT
    and SIGHUP, some landing while the main thread holds a lock, never hangs the worker."""
    if busy:
        schedule(reeve_home, "mode=sleep:60")
    for round_ in range(4):
        worker = reeve_home.start("run_pulse_worker", PULSE_SHUTDOWN_GRACE_SECONDS="5")
        if busy:
            started = round_ + 1
            ready = lambda: len(reeve_home.agent_starts()) == started  # noqa: E731, B023
        else:
            sql, args = "SELECT count(*) FROM pulse_workers WHERE pid = ?", (worker.pid,)
            ready = lambda: reeve_home.query(sql, args) == [(1,)]  # noqa: E731, B023
        reeve_home.wait_for(ready, what="the agent to start" if busy else "the worker's heartbeat")
        for n in range(300):
            if worker.poll() is not None:
                break
            worker.send_signal((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[n % 3])
        assert worker.wait(timeout=5 + 10) == 0, reeve_home.output(worker)
    if busy:
        assert statuses(reeve_home) == {"pending": 1}


def test_the_agent_is_started_with_the_prompt_after_the_options_and_without_reeves_secrets(reeve_home):
    # A pulse stored with a prompt and a session id that look like options (issue 11, point 1): the
    # executor must pass both as data, whatever validation they met on the way in.
    reeve_home.manage(
        "shell",
        "-c",
        "from pulses.models import Pulse; Pulse.objects.create(prompt='--dangerously-skip-permissions', "
        "session_id='--mcp-config=evil.json')",
    )
    worker_env = {
        "PULSE_API_TOKEN": "a-long-api-token-the-agent-must-never-see-0123456789",
        "TELEGRAM_BOT_TOKEN": "123456:telegram-token-the-agent-must-never-see",
        "SECRET_KEY": "django-secret-the-agent-must-never-see",
        "CLI_API_TOKEN": "hapi-credential",
        "HAPI_HOME": str(reeve_home.path / "hapi-home"),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "MY_TOOL_KEY": "passed on request",
        "UNRELATED_SETTING": "not passed",
        "AGENT_ENV_PASSTHROUGH": "FAKE_AGENT_*,MY_TOOL_*,SECRET_KEY",
    }
    worker = reeve_home.start("run_pulse_worker", **worker_env)
    [start] = reeve_home.wait_for(lambda: reeve_home.agent_starts(), what="the agent to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    argv = start["argv"]
    assert argv[-2:] == ["--", "--dangerously-skip-permissions"]
    assert "--resume=--mcp-config=evil.json" in argv[: argv.index("--")]
    assert "--mcp-config=evil.json" not in argv and "--dangerously-skip-permissions" not in argv[:-1]
    assert start["prompt"] == "--dangerously-skip-permissions"
    env = start["env"]
    for secret in ("PULSE_API_TOKEN", "TELEGRAM_BOT_TOKEN", "SECRET_KEY"):
        assert secret not in env, f"{secret} reached the agent"
    assert not [value for value in env.values() if "must-never-see" in value]
    assert "UNRELATED_SETTING" not in env and "AGENT_ENV_PASSTHROUGH" not in env
    assert env["REEVE_PULSE_ID"] == start["pulse_id"]
    assert env["CLI_API_TOKEN"] == "hapi-credential" and env["HAPI_HOME"] == worker_env["HAPI_HOME"]
    assert env["LC_ALL"] == "C.UTF-8" and env["TZ"] == "UTC" and env["MY_TOOL_KEY"] == "passed on request"
    assert {"PATH", "HOME"} <= set(env)


def test_a_missing_agent_spends_no_retries_and_the_worker_carries_on_once_it_is_installed(reeve_home):
    agent = reeve_home.path / "bin" / "agent"  # HAPI_COMMAND names a program not installed yet
    reeve_home.extra_env["HAPI_COMMAND"] = str(agent)
    schedule(reeve_home, "first")
    schedule(reeve_home, "second", "--priority", "low")
    once = reeve_home.manage("run_pulse_worker", "--once")
    assert "worker_waiting_for_agent" in once.stdout + once.stderr  # --once stops instead of waiting

    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: "worker_waiting_for_agent" in reeve_home.output(worker), what="the worker's warning"
    )
    time.sleep(2)  # four safety polls (PULSE_POLL_SECONDS=0.5): still nothing claimed
    assert reeve_home.query("SELECT status, attempt_count FROM pulses ORDER BY id") == [("pending", 0)] * 2
    assert reeve_home.agent_starts() == []

    agent.parent.mkdir()
    agent.write_text(f'#!/bin/sh\nexec {FAKE_AGENT_COMMAND} "$@"\n')
    agent.chmod(0o755)
    reeve_home.wait_for(
        lambda: statuses(reeve_home) == {"completed": 2}, timeout=60, what="both pulses to run"
    )
    output = reeve_home.output(worker)
    assert output.count("worker_waiting_for_agent") == 1  # one warning, not one per poll
    assert "worker_agent_ready" in output
    assert reeve_home.query("SELECT attempt_count FROM pulses") == [(1,), (1,)]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_a_routines_model_reaches_the_agent_before_the_end_of_options_and_its_own_timeout_kills_it(
    reeve_home,
):
    # Issue 33's acceptance through the real commands and worker: the routine's options, carried by the
    # pulse `routine run` makes, outlast a lease of 2 s (renewed) and end the run at 10 s, not at the
    # hour PULSE_TIMEOUT_SECONDS gives every other run.
    reeve_home.extra_env["PULSE_TIMEOUT_SECONDS"] = "3600"
    reeve_home.manage(
        "routine", "add", "research", "@weekly", "mode=sleep:120", "--model", "sonnet",
        "--timeout-seconds", "10", "--max-turns", "7", "--max-retries", "0",
    )  # fmt: skip
    reeve_home.manage("routine", "run", "research")
    began = time.monotonic()
    reeve_home.manage("run_pulse_worker", "--once", timeout=60)
    assert 10 <= time.monotonic() - began < 30
    [start] = reeve_home.agent_starts()
    end = start["argv"].index("--")
    assert start["argv"][end - 2 :] == ["--model=sonnet", "--max-turns=7", "--", "mode=sleep:120"]
    assert not process_alive(start["pid"])
    [(status, error)] = reeve_home.query("SELECT status, error_message FROM pulses")
    assert status == "failed"
    assert error.startswith("timed out after 10s (the pulse's timeout_seconds); the agent's process group")
