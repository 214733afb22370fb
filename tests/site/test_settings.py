"""Reading the settings has no side effects; the processes that run Reeve make what they need
(reeve_site/home.py)."""

import os
import re
import stat
import subprocess
import sys

import pytest

from tests.support.reeve_processes import ROOT

# Each process gets an environment of its own (_env: no DATABASE_URL, a SQLite file in its own HOME):
# the PostgreSQL half would run the very same processes again.
pytestmark = pytest.mark.database_independent

READ_SETTINGS = (
    "from django.conf import settings; "
    "print(settings.DATABASES['default']['NAME'], settings.LOG_FILE, settings.PROMETHEUS_MULTIPROC_DIR)"
)
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def _env(home):
    keep = {"PATH": os.environ["PATH"], "HOME": str(home), "REEVE_IGNORE_DOTENV": "1"}
    return {**keep, "DJANGO_SETTINGS_MODULE": "reeve_site.settings"}


def _python(home, *args):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=120
    )


def test_reading_the_settings_creates_no_folder_and_writes_no_file(tmp_path):
    proc = _python(tmp_path, "-c", READ_SETTINGS)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / ".reeve" / "pulse_queue.db") in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_command_makes_the_folders_and_one_private_key_that_later_processes_share(tmp_path):
    first = _python(tmp_path, "manage.py", "shell", "-c", PRINT_KEY)
    second = _python(tmp_path, "manage.py", "shell", "-c", PRINT_KEY)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    key_file = tmp_path / ".reeve" / "secret_key"
    assert first.stdout.split()[-1] == second.stdout.split()[-1] == key_file.read_text().strip()
    assert len(key_file.read_text().strip()) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (tmp_path / ".reeve" / "metrics").is_dir()
    assert sorted(p.name for p in (tmp_path / ".reeve").iterdir() if p.name.startswith(".")) == []


def test_a_secret_key_from_the_environment_writes_no_key_file(tmp_path):
    env = {**_env(tmp_path), "SECRET_KEY": "k" * 50}
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PRINT_KEY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split()[-1] == "k" * 50, proc.stderr
    assert not (tmp_path / ".reeve" / "secret_key").exists()


def test_dotenv_values_are_settings_but_never_copied_into_os_environ(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "reeve_site").mkdir(parents=True)
    for path in (ROOT / "reeve_site").glob("*.py"):
        (checkout / "reeve_site" / path.name).write_bytes(path.read_bytes())
    (checkout / ".env").write_text(
        "SECRET_KEY=from-dotenv-0123456789\nCLI_API_TOKEN=hapi\nTIME_ZONE=Asia/Tokyo\n"
    )
    show = (
        "import os; from django.conf import settings; "
        "print(settings.SECRET_KEY, settings.TIME_ZONE, settings.DOTENV['CLI_API_TOKEN'], "
        "'SECRET_KEY' in os.environ, 'CLI_API_TOKEN' in os.environ)"
    )
    env = {k: v for k, v in _env(tmp_path).items() if k != "REEVE_IGNORE_DOTENV"}
    env["PYTHONPATH"] = f"{checkout}:{ROOT}"
    proc = subprocess.run(
        [sys.executable, "-c", show],
        cwd=checkout,
        env={**env, "TIME_ZONE": "UTC"},
        capture_output=True,
        text=True,
    )
    assert proc.stdout.split() == ["from-dotenv-0123456789", "UTC", "hapi", "False", "False"], proc.stderr


def _with_typo(home, *args):
    env = {**_env(home), "PULSE_MAX_CONCURRENT": "two"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_value_of_the_wrong_type_is_one_line_naming_it_from_every_command(tmp_path):
    for command in (["doctor"], ["trigger_pulse", "hello"], ["pulse_queue"]):
        proc = _with_typo(tmp_path, sys.executable, "manage.py", *command)
        assert proc.returncode == 1, (command, proc.stderr)
        assert proc.stderr == "Error: PULSE_MAX_CONCURRENT=two: expected a whole number\n", command
        assert "Traceback" not in proc.stdout + proc.stderr


def test_a_value_of_the_wrong_type_stops_the_web_process_with_one_line(tmp_path):
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    proc = _with_typo(tmp_path, *gunicorn)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "Error: PULSE_MAX_CONCURRENT=two: expected a whole number\n"


def test_a_word_where_a_number_of_seconds_belongs_names_the_form_expected(tmp_path):
    env = {**_env(tmp_path), "PULSE_LEASE_SECONDS": "a minute"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr == "Error: PULSE_LEASE_SECONDS=a minute: expected a number\n"


def _sections(text: str) -> dict[str, str]:
    """.env.example's sections by their title (`# --- Agent ---…`)."""
    parts = re.split(r"^# --- ([^-]+?) -+$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_env_example_offers_the_demo_agent_and_says_agent_and_telegram_changes_take_a_restart():
    sections = _sections((ROOT / ".env.example").read_text())
    agent, telegram = sections["Agent"], sections["Telegram (optional)"]
    before_command = agent[: agent.index("\nHAPI_COMMAND=")]
    assert "`demo` runs Reeve's demo agent" in before_command
    for section in (agent, telegram):
        assert "takes a restart" in section and "./reeve start" in section
        assert "systemctl restart reeve-daemon" in section
    assert "Telegram is\n# not configured" in telegram and "run_telegram_listener" in telegram
