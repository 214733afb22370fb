import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulses.agent.command import agent_command, build_prompt
from pulses.agent.executor import AgentRequest, Executor
from pulses.agent.output import Tail
from tests.support.reeve_processes import FAKE_AGENT_COMMAND, agent_starts, process_alive

pytestmark = pytest.mark.database_independent  # the executor and the fake agent: no database


@pytest.fixture
def desk(fake_agent):
    return fake_agent / "desk"


def run(desk, prompt, *, session_id="", timeout=30.0, notes=(), on_session=None):
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=desk, timeout=timeout, passthrough=["FAKE_AGENT_*"])
    return executor.run(
        AgentRequest(prompt=prompt, session_id=session_id, sticky_notes=notes, pulse_id=7),
        on_session=on_session,
    )


def test_the_agent_gets_the_hapi_argv_in_the_desk(desk, agent_log):
    outcome = run(desk, "hello", session_id="", notes=("call mom", "buy milk"))
    assert outcome.success, outcome.error
    [start] = agent_starts(agent_log)
    assert start["argv"] == [
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--",
        "hello\n\n📌 Reminders:\n  - call mom\n  - buy milk",
    ]
    assert start["cwd"] == str(desk)
    assert start["pulse_id"] == "7"


@pytest.mark.parametrize("prompt", ["--dangerously-skip-permissions", "-5°C tomorrow?", "--", "-p"])
def test_a_prompt_that_looks_like_an_option_comes_after_the_end_of_options(desk, agent_log, prompt):
    outcome = run(desk, prompt, session_id="--mcp-config=evil.json")
    assert outcome.success, outcome.error
    [start] = agent_starts(agent_log)
    assert start["argv"][4:] == ["--resume=--mcp-config=evil.json", "--", prompt]
    assert start["prompt"] == prompt and start["resume"] == "--mcp-config=evil.json"


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("hapi", ["hapi", "claude"]),
        ("/opt/bin/hapi --yolo", ["/opt/bin/hapi", "claude", "--yolo"]),
        ("hapi codex", ["hapi", "codex"]),
        ("hapi claude --model opus", ["hapi", "claude", "--model", "opus"]),
        ("claude", ["claude"]),
        ("/usr/local/bin/claude --model opus", ["/usr/local/bin/claude", "--model", "opus"]),
    ],
)
def test_a_bare_hapi_runs_the_configured_agent_and_anything_else_is_used_as_is(command, argv):
    assert agent_command(command, agent="claude") == argv


@pytest.mark.parametrize(
    ("command", "allowed"),
    [("claude", True), ("/usr/local/bin/claude --model opus", True), ("hapi", True), ("hapi codex", False)],
)
def test_claude_is_allowed_reeves_tools_on_its_command_line_and_other_agents_are_not(desk, command, allowed):
    # Claude Code ignores the Desk's permissions.allow in a folder nobody trusted interactively.
    argv = Executor(command=command, desk=desk, timeout=1).argv(AgentRequest(prompt="hi"))
    assert ("--allowedTools=mcp__reeve" in argv) is allowed
    assert argv[-2:] == ["--", "hi"]


def test_hapi_agent_names_the_agent_a_bare_hapi_runs():
    assert agent_command("hapi", agent="codex") == ["hapi", "codex"]


def test_success_reports_session_result_cost_and_turns(desk, agent_log):
    seen = []
    outcome = run(desk, "mode=success", on_session=seen.append)
    assert outcome.success and outcome.exit_code == 0
    assert outcome.session_id and seen == [outcome.session_id]
    assert outcome.result_text.startswith("Done:")
    assert outcome.cost_usd == pytest.approx(0.0123) and outcome.num_turns == 2


def test_a_resume_passes_the_session_and_keeps_it(desk, agent_log):
    outcome = run(desk, "again", session_id="5b6e1f4e-2a7c-4d8e-9f10-3c2d1e0f9a8b")
    assert outcome.success and outcome.session_id == "5b6e1f4e-2a7c-4d8e-9f10-3c2d1e0f9a8b"
    assert agent_starts(agent_log)[0]["resume"] == "5b6e1f4e-2a7c-4d8e-9f10-3c2d1e0f9a8b"


def test_an_error_result_with_exit_zero_is_a_failure_in_the_agents_words(desk, agent_log):
    outcome = run(desk, "mode=error_result")
    assert not outcome.success and outcome.exit_code == 0
    assert outcome.error == "Tool Bash failed: permission denied"


def test_a_nonzero_exit_reports_the_agents_stderr(desk, agent_log):
    outcome = run(desk, "mode=exit_nonzero")
    assert not outcome.success and outcome.exit_code == 2
    assert "the agent crashed: API overloaded" in outcome.error
    assert "exit code 2" in outcome.error


def test_an_exit_zero_without_a_result_event_is_a_failure(desk, agent_log):
    outcome = run(desk, "mode=no_result")
    assert not outcome.success and outcome.exit_code == 0
    assert "without a result event" in outcome.error and "agent_probe" in outcome.error


def test_noise_lines_are_tolerated(desk, agent_log):
    outcome = run(desk, "mode=noise")
    assert outcome.success and outcome.session_id


def test_a_rejected_resume_is_retried_once_as_a_new_session(desk, agent_log):
    outcome = run(desk, "mode=reject_resume", session_id="gone-session")
    assert outcome.success, outcome.error
    assert [s["resume"] for s in agent_starts(agent_log)] == ["gone-session", None]
    assert outcome.session_id and outcome.session_id != "gone-session"


def test_a_timeout_kills_the_whole_process_group(desk, agent_log, tmp_path):
    pids_file = tmp_path / "children.pids"
    began = time.monotonic()
    outcome = run(desk, f"mode=children_ignore_term:{pids_file}", timeout=2)
    assert time.monotonic() - began < 20
    assert not outcome.success and outcome.timed_out
    assert "timed out after 2s" in outcome.error
    agent_pid = agent_starts(agent_log)[0]["pid"]
    children = [int(p) for p in pids_file.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
    while any(process_alive(pid) for pid in [agent_pid, *children]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [agent_pid, *children]:
        assert not process_alive(pid), f"process {pid} survived the timeout"


def test_a_missing_agent_command_names_the_variable(desk):
    executor = Executor(command="/nonexistent/hapi", desk=desk, timeout=5)
    outcome = executor.run(AgentRequest(prompt="x"))
    assert not outcome.success and "HAPI_COMMAND" in outcome.error


def test_a_missing_desk_names_the_variable(tmp_path):
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=tmp_path / "nowhere", timeout=5)
    outcome = executor.run(AgentRequest(prompt="x"))
    assert not outcome.success and "REEVE_DESK_PATH" in outcome.error


def test_100_mb_of_output_is_read_in_bounded_memory(desk, agent_log, tmp_path):
    # In a fresh interpreter, so the peak RSS measured is this run's alone.
    script = tmp_path / "flood.py"
    script.write_text(
        "import os, resource, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "import django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'reeve_site.settings_test'\n"
        "django.setup()\n"
        "from pathlib import Path\n"
        "from pulses.agent.executor import AgentRequest, Executor\n"
        f"ex = Executor(command={FAKE_AGENT_COMMAND!r}, desk=Path({str(desk)!r}), timeout=300)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = ex.run(AgentRequest(prompt='mode=flood:100'))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(out.success, len(out.stdout_tail), before, after)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    success, tail_len, before_kb, after_kb = proc.stdout.strip().splitlines()[-1].split()
    assert success == "True"
    assert int(tail_len) <= 16 * 1024
    # 100 MB went through; the reader's peak grew by far less than that (one 4 MiB line at most).
    assert int(after_kb) - int(before_kb) < 40 * 1024, (before_kb, after_kb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_tail_keeps_only_the_last_bytes():
    tail = Tail(limit=10)
    for chunk in (b"abc", b"defghij", b"klmnopqrstuvwxyz"):
        tail.write(chunk)
    assert tail.text() == "qrstuvwxyz"


def test_build_prompt_without_notes_is_the_prompt():
    assert build_prompt("hi", ()) == "hi"


def test_a_run_retrying_a_refused_key_is_stopped_at_once_and_names_the_fix(desk, agent_log):
    started = time.monotonic()
    outcome = run(desk, "hi mode=retry_401", timeout=60)
    assert time.monotonic() - started < 10  # the fake retries forever, as the real CLI does for minutes
    assert not outcome.success and not outcome.timed_out
    assert outcome.error.startswith(
        "stopped by Reeve: the agent's CLI was retrying its model's API (1 retry, last status 401"
    )
    assert outcome.unavailable.reason == "invalid_key"
    # The person reads the detail as the agent's words: the CLI's, not Reeve's note that it stopped it.
    assert outcome.unavailable.detail == "API retry 1: authentication_failed (HTTP 401)"
    assert not process_alive(agent_starts(agent_log)[0]["pid"])


def test_a_run_stuck_in_the_clis_retries_is_stopped_at_the_bound(desk):
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=desk, timeout=60, max_api_retries=3)
    outcome = executor.run(AgentRequest(prompt="hi mode=retry:529"))
    assert outcome.unavailable.reason == "stuck_retrying"
    assert "3 retries, last status 529" in outcome.error
    unbounded = Executor(command=FAKE_AGENT_COMMAND, desk=desk, timeout=60, max_api_retries=0)
    outcome = unbounded.run(AgentRequest(prompt="hi mode=retry:529"))  # ten retries, then it gives up
    assert outcome.unavailable is None and outcome.exit_code == 1


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("not_logged_in", "not_logged_in"),
        ("no_hapi_credential", "no_hapi_credential"),
        ("usage_limit", "usage_limit"),
        ("hit_limit", "usage_limit"),
    ],
)
def test_a_run_that_finds_the_agent_unable_to_run_says_why(desk, mode, reason):
    outcome = run(desk, f"hi mode={mode}")
    assert not outcome.success and outcome.unavailable.reason == reason


def test_ordinary_failures_and_a_usage_warning_are_not_the_agent_unable_to_run(desk):
    for mode in ("error_result", "exit_nonzero", "no_result"):
        assert run(desk, f"hi mode={mode}").unavailable is None
    warned = run(desk, "hi mode=usage_warning")
    assert warned.success and "close to its limit (five_hour)" in warned.warning


# Issue 33: a pulse's own agent options (pulses/limits.py checked them where they were stored).


def test_a_runs_model_and_turn_limit_reach_the_agent_as_single_words_before_the_end_of_options(
    desk, agent_log
):
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=desk, timeout=30, passthrough=["FAKE_AGENT_*"])
    request = AgentRequest(prompt="--model=evil", model="sonnet", max_turns=12, session_id="s-1")
    assert executor.run(request).success
    [start] = agent_starts(agent_log)
    assert start["argv"][4:] == ["--model=sonnet", "--max-turns=12", "--resume=s-1", "--", "--model=evil"]
    assert start["prompt"] == "--model=evil" and "ANTHROPIC_MODEL" not in start["env"]


@pytest.mark.parametrize(
    ("default", "own", "shown"),
    [("", "", None), ("opus", "", "--model=opus"), ("opus", "haiku", "--model=haiku")],
)
def test_a_run_without_a_model_of_its_own_takes_agent_model_and_without_either_the_agents_own(
    desk, default, own, shown
):
    argv = Executor(command="claude", desk=desk, timeout=1, model=default).argv(AgentRequest("hi", model=own))
    assert [word for word in argv if word.startswith("--model")] == ([shown] if shown else [])
    assert not any(word.startswith("--max-turns") for word in argv)
    assert argv[-2:] == ["--", "hi"]


def test_through_hapi_the_model_is_claudes_anthropic_model_variable_and_the_turn_limit_an_option(desk):
    # Hapi 0.30.7 takes --model off its command line and appends it after `--`, where Claude reads it
    # as prompt words (measured): so the model goes by the variable Claude Code reads instead.
    executor = Executor(command="hapi", desk=desk, timeout=1)
    request = AgentRequest(prompt="hi", model="sonnet", max_turns=3)
    argv = executor.argv(request)
    assert argv == [
        "hapi", "claude", "--print", "--output-format", "stream-json", "--verbose",
        "--allowedTools=mcp__reeve", "--max-turns=3", "--", "hi",
    ]  # fmt: skip
    assert executor.environment(request)["ANTHROPIC_MODEL"] == "sonnet"
    assert "ANTHROPIC_MODEL" not in executor.environment(AgentRequest(prompt="hi"))


def test_a_runs_own_timeout_replaces_the_executors_and_the_error_names_it(desk, agent_log):
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=desk, timeout=60, passthrough=["FAKE_AGENT_*"])
    began = time.monotonic()
    outcome = executor.run(AgentRequest(prompt="mode=sleep:60", timeout=1))
    assert time.monotonic() - began < 15
    assert outcome.timed_out and not outcome.success
    assert outcome.error.startswith("timed out after 1s (the pulse's timeout_seconds)")
    assert not process_alive(agent_starts(agent_log)[0]["pid"])


def test_an_agent_model_that_is_no_model_name_keeps_every_run_from_starting(desk):
    executor = Executor(
        command=FAKE_AGENT_COMMAND, desk=desk, timeout=1, model="--dangerously-skip-permissions"
    )
    assert executor.setup_problem().startswith(
        "AGENT_MODEL '--dangerously-skip-permissions' is not a model name"
    )
    outcome = executor.run(AgentRequest(prompt="hi"))
    assert not outcome.success and outcome.exit_code is None and "AGENT_MODEL" in outcome.error


def test_doctor_the_dashboard_and_api_status_name_an_agent_model_that_is_no_model_name(settings, fake_agent):
    from pulses.agent import check

    assert check.setup_problem() == ""
    settings.AGENT_MODEL = "-x"
    assert check.setup_problem().startswith("AGENT_MODEL '-x' is not a model name")
