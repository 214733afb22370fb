"""pulses/ops/doctor.py and `manage.py doctor`: every failure is one line that says what to fix."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from pulses.agent.sandbox import bwrap_problem
from pulses.management.commands.doctor import MARKS
from pulses.ops import doctor, doctor_agent
from tests.support.factories import PulseFactory
from tests.support.reeve_processes import FAKE_AGENT_COMMAND, ROOT, copy_checkout, manage_in, on_postgres

GOOD_TOKEN = "Vq3x9LrT0bNk2WcYp7HsZe4MdFa8GjUo1Ri6"


def agent_named_claude(folder) -> str:
    """An agent command Reeve recognises as Claude Code (so its runs get Reeve's tools allowed): a
    script named `claude` in `folder` that runs the fake agent."""
    script = folder / "bin" / "claude"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f'#!/bin/sh\nexec {FAKE_AGENT_COMMAND} "$@"\n')
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def good(settings, fake_agent, db):
    """A configuration every offline check accepts."""
    settings.HAPI_COMMAND = agent_named_claude(fake_agent)
    settings.PULSE_API_TOKEN = GOOD_TOKEN
    settings.TELEGRAM_BOT_TOKEN = ""
    return settings


def run_doctor(capsys, *args: str) -> tuple[int, str]:
    try:
        call_command("doctor", *args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def line_for(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line[6:].startswith(name))


def offline_check(capsys, name: str) -> tuple[int, str]:
    """Run doctor without the API and Telegram checks: its exit code and the line of check `name`."""
    code, out = run_doctor(capsys, "--no-api", "--no-telegram")
    return code, line_for(out, name)


def test_doctor_passes_the_offline_checks_on_a_good_setup(good, capsys):
    code, out = run_doctor(capsys, "--no-api", "--no-telegram")
    assert code == 0, out
    assert "doctor: all checks passed" in out
    assert "FAIL" not in out


def test_no_main_api_token_is_a_working_setup_and_a_warning_with_how_to_make_one(good, capsys):
    good.PULSE_API_TOKEN = ""
    code, line = offline_check(capsys, "api token")
    assert code == 0
    assert line.startswith("WARN")
    assert "only named tokens (./reeve create_api_token NAME) reach the API" in line
    assert "secrets.token_urlsafe(32)" in line


def test_the_guides_placeholder_token_and_a_short_token_fail(good):
    good.PULSE_API_TOKEN = "your_secure_random_token_here"
    assert "placeholder" in doctor.check_api_token().message
    good.PULSE_API_TOKEN = "abc"
    check = doctor.check_api_token()
    assert check.failed and "only 3 characters" in check.message


def test_a_missing_desk_fails_naming_the_directory_and_the_variable(good, tmp_path, capsys):
    good.REEVE_DESK_PATH = tmp_path / "no-desk-here"
    code, line = offline_check(capsys, "desk")
    assert code == 1
    assert line.startswith("FAIL")
    assert f"Desk directory {tmp_path / 'no-desk-here'} does not exist" in line
    assert "REEVE_DESK_PATH" in line


def test_a_missing_agent_command_fails_naming_hapi_command(good, capsys):
    good.HAPI_COMMAND = "/nowhere/bin/hapi --flag"
    code, line = offline_check(capsys, "agent command")
    assert code == 1
    assert line.startswith("FAIL")
    assert "'/nowhere/bin/hapi --flag' not found" in line and "HAPI_COMMAND" in line
    assert "the worker claims no pulse" in line and "HAPI_COMMAND=demo" in line


def test_the_demo_agent_is_a_warning_naming_it_a_demo(good):
    good.HAPI_COMMAND = "demo"
    [check] = doctor_agent.check_agent()
    assert check.level == doctor.WARN and "demo agent" in check.message


def test_an_agent_command_with_broken_quoting_fails(good):
    good.HAPI_COMMAND = "hapi 'unclosed"
    [check] = doctor_agent.check_agent()
    assert check.failed and "quoting" in check.message


@pytest.mark.slow
def test_unapplied_migrations_fail_with_the_command_that_applies_them(reeve_home):
    # An upgrade pulled new code but did not migrate: the newest pulses migration is missing.
    names = sorted(p.stem for p in (ROOT / "pulses" / "migrations").glob("0*.py"))
    home = reeve_home
    home.extra_env["PULSE_API_TOKEN"] = GOOD_TOKEN
    home.manage("migrate", "pulses", names[-2] if len(names) > 1 else "zero", "-v0")
    proc = home.manage("doctor", "--no-api", "--no-telegram", check=False)
    home.stop_all()  # on PostgreSQL: drops the home's database
    assert proc.returncode == 1
    line = line_for(proc.stdout, "migrations")
    assert line.startswith("FAIL")
    assert "unapplied migration(s)" in line and f"pulses.{names[-1]}" in line
    assert "run `./reeve migrate`" in line


def test_an_unreachable_api_fails_with_how_to_start_it(good, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        good.PULSE_API_PORT = sock.getsockname()[1]  # bound, never listening: refused
        check = doctor.check_api()
    assert check.failed
    assert f"http://127.0.0.1:{good.PULSE_API_PORT}/api/health not reachable" in check.message
    assert "sudo systemctl start reeve-daemon" in check.message


def test_a_wildcard_bind_is_checked_on_loopback(settings):
    settings.PULSE_API_HOST = "0.0.0.0"  # noqa: S104
    settings.PULSE_API_PORT = 8765
    assert doctor.api_base_url() == "http://127.0.0.1:8765"


def test_telegram_unset_is_only_a_warning(good):
    check = doctor.check_telegram()
    assert check.level == doctor.WARN and "TELEGRAM_BOT_TOKEN is not set" in check.message


def test_a_malformed_telegram_token_fails_without_calling_telegram(good, telegram_settings):
    good.TELEGRAM_BOT_TOKEN = "not-a-token"
    check = doctor.check_telegram()
    assert check.failed and "does not look like a bot token" in check.message
    assert telegram_settings.calls_to("getMe") == []


def test_a_telegram_token_the_bot_api_rejects_fails_with_where_to_get_a_new_one(good, telegram_settings):
    good.TELEGRAM_BOT_TOKEN = "999999:REVOKED-token-abcdef"
    check = doctor.check_telegram()
    assert (
        check.failed
        and "Telegram rejected TELEGRAM_BOT_TOKEN" in check.message
        and "@BotFather" in check.message
    )
    assert "REVOKED" not in check.message


def test_a_valid_telegram_token_names_the_bot(good, telegram_settings):
    check = doctor.check_telegram()
    assert check.level == doctor.OK and check.message == "token accepted: bot @reeve_test_bot"


def test_telegram_without_a_chat_id_fails(good, telegram_settings):
    good.TELEGRAM_CHAT_ID = []
    check = doctor.check_telegram()
    assert check.failed and "TELEGRAM_CHAT_ID is empty" in check.message


def test_the_heartbeat_check_warns_when_cron_has_not_scheduled_one_lately(good):
    assert doctor.check_heartbeat().level == doctor.WARN
    stale = PulseFactory(source="heartbeat")
    type(stale).objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=5))
    check = doctor.check_heartbeat()
    assert check.level == doctor.WARN and "5 h ago" in check.message
    fresh = PulseFactory(source="heartbeat")
    check = doctor.check_heartbeat()
    assert check.level == doctor.OK and f"#{fresh.pk}" in check.message


def test_the_heartbeat_check_knows_the_hourly_prompt_routine_once_it_is_resumed(good):
    from pulses.routines import changes
    from pulses.routines.models import Routine

    assert "./reeve routine resume hourly-prompt" in doctor.check_heartbeat().message
    routine = changes.resume(Routine.objects.get(name="hourly-prompt"))

    check = doctor.check_heartbeat()
    assert check.level == doctor.OK and "no heartbeat pulse yet" not in check.message
    assert check.message.startswith("the hourly-prompt routine fires hourly: its first heartbeat at ")

    fired = changes.run_now(routine)
    check = doctor.check_heartbeat()
    assert (
        check.level == doctor.OK
        and f"#{fired.pk}" in check.message
        and "the hourly-prompt routine" in check.message
    )


def test_doctor_paths_prints_shell_assignments_for_install_sh(good, capsys):
    call_command("doctor", "--paths")
    out = capsys.readouterr().out
    assert f"REEVE_DESK_PATH={good.REEVE_DESK_PATH}" in out
    assert "PULSE_API_URL=http://127.0.0.1:" in out
    assert f"DATABASE_IS_SQLITE={0 if on_postgres() else 1}" in out
    # install.sh checks the agent command against the units' PATH and writes the keep-alive's claude.
    assert "\nHAPI_COMMAND=" in out and "\nCLAUDE_COMMAND_SETTING=" in out


@pytest.mark.slow
def test_doctor_passes_everything_on_a_good_running_setup(reeve_home, fake_telegram):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = reeve_home
    home.extra_env.update(PULSE_API_TOKEN=GOOD_TOKEN, PULSE_API_PORT=str(port), **fake_telegram.env(42))
    home.extra_env["HAPI_COMMAND"] = agent_named_claude(home.path)
    home.extra_env["AGENT_SANDBOX"] = "auto"  # bubblewrap: .ci/run installs it
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env={**home.env, "WEB_CONCURRENCY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    return True
            except OSError:
                return False

        home.wait_for(up, timeout=60, interval=0.2, what="gunicorn")
        # Telegram is configured: a good setup has its listener polling (the watchdog's `health`).
        home.start("run_telegram_listener")
        home.wait_for(
            lambda: home.query("SELECT COUNT(*) FROM pulse_listeners")[0][0], timeout=60, what="the listener"
        )
        home.manage("trigger_pulse", "--heartbeat")
        home.manage("mcp_config", "--write")
        proc = home.manage("doctor", check=False)
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        home.stop_all()  # on PostgreSQL: drops the home's database
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and "WARN" not in proc.stdout
    assert "doctor: all checks passed" in proc.stdout
    assert "bot @reeve_test_bot" in proc.stdout


@pytest.mark.skipif(bool(bwrap_problem()), reason="bubblewrap is not installed here")
def test_doctor_says_which_containment_the_agent_runs_in_and_warns_when_none(good, capsys):
    good.AGENT_SANDBOX = "auto"
    assert offline_check(capsys, "containment")[1].startswith("ok    containment    bubblewrap")
    good.AGENT_SANDBOX = "off"
    code, line = offline_check(capsys, "containment")
    assert code == 0 and line.startswith("WARN  containment    none (AGENT_SANDBOX=off)")
    assert "sudo apt-get install bubblewrap" in line


def test_a_required_sandbox_that_cannot_run_fails(good, capsys, monkeypatch):
    good.AGENT_SANDBOX = "bwrap"
    bwrap_problem.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        code, line = offline_check(capsys, "containment")
    finally:
        bwrap_problem.cache_clear()
    assert code != 0 and line.startswith(
        "FAIL  containment    AGENT_SANDBOX=bwrap but bwrap is not installed"
    )


def test_a_desk_without_reeves_mcp_tools_is_a_warning_that_names_the_fix(good, capsys):
    code, out = run_doctor(capsys, "--no-api", "--no-telegram")
    assert code == 0, out
    line = line_for(out, "agent tools")
    assert line.startswith("WARN") and "mcp_config --write" in line
    call_command("mcp_config", "--write")
    capsys.readouterr()
    code, out = run_doctor(capsys, "--no-api", "--no-telegram")
    assert line_for(out, "agent tools").startswith("ok")


def test_an_agent_command_whose_runs_would_not_get_reeves_tools_allowed_fails_naming_the_fix(
    good, capsys, tmp_path
):
    call_command("mcp_config", "--write")
    wrapper = tmp_path / "my-claude.sh"  # a wrapper that runs Claude Code, under a name Reeve cannot know
    wrapper.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "2.1.337 (Claude Code)"; exit 0; }\nexec claude "$@"\n'
    )
    wrapper.chmod(0o755)
    good.HAPI_COMMAND = str(wrapper)

    code, line = offline_check(capsys, "agent tools")

    assert code == 1 and line.startswith("FAIL"), line
    assert "--allowedTools=mcp__reeve" in line and "name your wrapper script `claude`" in line
    good.HAPI_COMMAND, good.HAPI_AGENT = "hapi", "codex"
    code, line = offline_check(capsys, "agent tools")
    assert line.startswith("WARN") and "Hapi runs `codex`" in line  # not Claude: its own rules apply
    assert "set HAPI_AGENT=claude" in line
    good.HAPI_COMMAND = FAKE_AGENT_COMMAND  # an agent Reeve does not know, and not Claude Code
    code, line = offline_check(capsys, "agent tools")
    assert line.startswith("WARN") and "not Claude Code as Reeve recognises it" in line
    good.HAPI_COMMAND = "hapi"

    good.HAPI_AGENT = "claude"
    code, line = offline_check(capsys, "agent tools")
    assert (
        line.startswith("ok")
        and "allows them on Claude Code's command line (--allowedTools=mcp__reeve" in line
    )


@pytest.mark.database_independent  # a checkout of its own, on the SQLite file its .env names
def test_doctor_on_a_fresh_copy_of_env_example_reports_only_what_the_user_must_choose(tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    shutil.copy(checkout / ".env.example", checkout / ".env")
    home = tmp_path / "home"
    home.mkdir()
    (home / "my_reeve").mkdir()  # the Desk .env.example names (./reeve start creates it)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def manage(*args: str) -> subprocess.CompletedProcess:
        return manage_in(checkout, env, *args)

    assert manage("migrate", "-v0").returncode == 0
    proc = manage("doctor", "--no-api")
    marks = {
        line[6:21].strip(): line[:4].strip()
        for line in proc.stdout.splitlines()
        if line[:4] in MARKS.values()
    }
    problems = {name: mark for name, mark in marks.items() if mark != "ok"}
    # What is left to choose: the agent (none installed here) and its tools in the Desk, a main API
    # token, Telegram; the rest (heartbeat, file modes on a new home) says what happens next.
    choices = {
        "agent command",
        "agent tools",
        "api token",
        "telegram",
        "heartbeat",
        "file modes",
        "containment",
    }
    assert set(problems) <= choices, proc.stdout
    assert [name for name, mark in problems.items() if mark == "FAIL"] in ([], ["agent command"]), proc.stdout
    assert "TELEGRAM_BOT_TOKEN is not set" in proc.stdout
    # The guide's token rotation (a sed on the PULSE_API_TOKEN= line) sets the token in a fresh copy too.
    rotate = 'NEW_TOKEN=$(python3 -c "import secrets; print(secrets.token_urlsafe(32))")\n'
    rotate += 'sed -i "s/PULSE_API_TOKEN=.*/PULSE_API_TOKEN=$NEW_TOKEN/" .env'
    subprocess.run(["bash", "-e", "-c", rotate], cwd=checkout, check=True)
    assert line_for(manage("doctor", "--no-api").stdout, "api token").startswith("ok    api token")


def test_install_turns_telegram_on_only_for_a_token_shaped_like_one(settings):
    settings.TELEGRAM_BOT_TOKEN = "your_bot_token_here"  # the old .env.example's placeholder
    assert doctor.resolved_paths()["TELEGRAM_CONFIGURED"] == "0"
    settings.TELEGRAM_BOT_TOKEN = "123456789:" + "A" * 35
    assert doctor.resolved_paths()["TELEGRAM_CONFIGURED"] == "1"
