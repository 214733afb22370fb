"""How commands behave in a shell: answers on stdout, logs on stderr, a closed pipe ends them quietly."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reeve_processes import ROOT, manage_in

pytestmark = pytest.mark.slow
PYTHON = shlex.quote(sys.executable)

MANY_PULSES = """
from django.utils import timezone
from pulses.models import Pulse
Pulse.objects.bulk_create([Pulse(prompt=f"pulse {i}", scheduled_at=timezone.now()) for i in range(3000)])
"""


def own_env(home: Path) -> dict[str, str]:
    """An environment of a process's own, Reeve's home in `home`: no DATABASE_URL, a SQLite file there
    (for tests of how a process starts, which open no database)."""
    keep = {"PATH": os.environ["PATH"], "HOME": str(home), "REEVE_IGNORE_DOTENV": "1"}
    return {**keep, "DJANGO_SETTINGS_MODULE": "reeve_site.settings"}


def bash(home, script: str) -> subprocess.CompletedProcess:
    """`script` run by bash in the checkout with `home`'s environment, to completion."""
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=home.env, capture_output=True, text=True, timeout=120
    )


def test_a_command_writes_its_answer_to_stdout_and_its_log_lines_to_stderr(reeve_home):
    proc = reeve_home.manage("trigger_pulse", "hello")
    assert proc.stdout.startswith("Scheduled pulse #1 ") and len(proc.stdout.splitlines()) == 1
    assert "pulse_scheduled id=1" in proc.stderr
    captured = bash(
        reeve_home, f'id=$({PYTHON} manage.py trigger_pulse "captured" 2>/dev/null); echo "[$id]"'
    )
    assert captured.stdout.startswith("[Scheduled pulse #2 ") and "pulse_scheduled" not in captured.stdout


def test_trigger_pulse_wait_prints_the_demo_agents_answer_and_exits_1_when_the_pulse_failed(reeve_home):
    reeve_home.extra_env["HAPI_COMMAND"] = "demo"
    reeve_home.start("run_pulse_worker")
    hello = "Telegram message from Ada: hello"
    script = (
        f'id=$({PYTHON} manage.py trigger_pulse -q "{hello}" 2>/dev/null); echo "[$id]"; '
        f'{PYTHON} manage.py trigger_pulse --wait --timeout 60 "{hello} there" 2>/dev/null'
    )
    answered = bash(reeve_home, script)
    assert answered.returncode == 0, answered.stderr
    first, *answer = answered.stdout.splitlines()
    assert first == "[1]"
    assert answer[0].startswith("Hello! I am Reeve's demo agent") and "HAPI_COMMAND" in answered.stdout

    failed = reeve_home.manage(
        "trigger_pulse", "--wait", "--timeout", "60", "--max-retries", "0", "please fail", check=False
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert "pulse #3 failed after 1 attempt(s):" in failed.stderr and "fails on purpose" in failed.stderr
    assert "Scheduled pulse #3 (normal)" in failed.stderr  # what was scheduled: a note on stderr


def test_createsuperuser_without_a_terminal_says_how_and_exits_1_and_the_way_it_names_works(reeve_home):
    refused = bash(reeve_home, f"{PYTHON} manage.py createsuperuser < /dev/null")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "--noinput" in refused.stderr and "Traceback" not in refused.stderr
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_EMAIL"):
        assert name in refused.stderr
    assert reeve_home.query("SELECT COUNT(*) FROM auth_user") == [(0,)]

    recipe = "DJANGO_SUPERUSER_USERNAME=ada DJANGO_SUPERUSER_EMAIL=ada@example.com DJANGO_SUPERUSER_PASSWORD="
    made = bash(
        reeve_home, f"{recipe}'a long password 42' {PYTHON} manage.py createsuperuser --noinput < /dev/null"
    )
    assert made.returncode == 0, made.stderr
    assert reeve_home.query("SELECT username, is_superuser FROM auth_user") == [("ada", 1)]


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(reeve_home):
    reeve_home.manage("shell", "-c", MANY_PULSES)
    proc = bash(reeve_home, f"set -o pipefail; {PYTHON} manage.py pulse_queue all --limit 3000 | head -4")
    assert len(proc.stdout.splitlines()) == 4
    assert proc.stdout.startswith("pending=3000 ")
    assert proc.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert proc.returncode == 141  # as a shell tool killed by SIGPIPE


@pytest.mark.database_independent  # the launcher's usage: no database
def test_reeve_help_prints_its_usage_and_nothing_of_the_script():
    proc = subprocess.run([str(ROOT / "reeve"), "help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "./reeve start" in proc.stdout and "./reeve test" in proc.stdout
    assert "set -" not in proc.stdout and "#" not in proc.stdout
    # Reeve's own commands, each with its line.
    listed = dict(re.findall(r"^  ([a-z_]+) +(\S.*)$", proc.stdout, re.M))
    own = {
        path.stem
        for folder in ("pulses", "telegram_bridge")
        for path in (ROOT / folder).glob("management/commands/[!_]*.py")
    }
    assert own <= set(listed) and len(own) >= 15
    assert listed["trigger_pulse"].startswith("schedule a pulse and print its id")
    assert (
        listed["restore_db"]
        == "replace the database with a backup made by backup_db (.db.gz, .db or .sql.gz)"
    )
    assert all(len(line) <= 120 for line in proc.stdout.splitlines())


ADMIN_STATE = """
import sys
from django.contrib import admin
from django.core import checks
ours = ("pulses", "telegram_bridge")
print(sorted(name for name in sys.modules if name.endswith(".admin") and name.split(".")[0] in ours))
errors = checks.run_checks(tags=[checks.Tags.admin])
print(len(admin.site._registry), len(errors), "pulses.admin" in sys.modules)
"""


@pytest.mark.database_independent  # what a process imports at its start: no database opened
def test_a_command_loads_no_modeladmin_and_the_admin_checks_still_check_every_one(tmp_path):
    """The admin's modules load with the URLconf (reeve_site/admin_app.py), not in every process; the
    admin's system checks (`check`, `doctor`) load them first, so none goes unchecked."""
    shell = manage_in(ROOT, own_env(tmp_path), "shell", "-c", ADMIN_STATE)
    assert shell.returncode == 0, shell.stderr
    imported, after_checks = shell.stdout.splitlines()[-2:]
    assert imported == "[]"
    registered, errors, loaded = after_checks.split()
    assert int(registered) >= 4 and errors == "0" and loaded == "True"


COLLECTOR_STATE = "import gc; print(gc.isenabled(), gc.get_freeze_count() > 10_000)"


@pytest.mark.database_independent  # how a process starts: no database opened
def test_a_command_runs_with_the_collector_on_and_its_start_up_objects_set_aside(tmp_path):
    """manage.py pauses the collector while Django and the command's module load, then freezes what they
    made: the command itself (a worker runs for weeks) collects as usual. The web process likewise."""
    shell = manage_in(ROOT, own_env(tmp_path), "shell", "-c", COLLECTOR_STATE)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines()[-1].split() == ["True", "True"]
    web = subprocess.run(
        [sys.executable, "-c", f"import reeve_site.wsgi; {COLLECTOR_STATE}"],
        cwd=ROOT,
        env=own_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.stdout.split() == ["True", "True"], web.stderr


@pytest.mark.parametrize("prompt", ["--settings=evilmod", "--pythonpath=/nowhere"])
def test_a_prompt_after_the_double_dash_is_data_never_a_settings_module_or_a_path(
    reeve_home, tmp_path, prompt
):
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "evilmod-imported"
    (planted / "evilmod.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom reeve_site.settings import *\n"
    )
    reeve_home.extra_env["PYTHONPATH"] = str(planted)

    proc = reeve_home.manage("trigger_pulse", "--", prompt)

    assert not marker.exists()
    assert proc.stdout.startswith("Scheduled pulse #1 ")
    assert reeve_home.query("SELECT prompt FROM pulses") == [(prompt,)]
