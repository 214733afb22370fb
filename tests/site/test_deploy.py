"""deploy/: install.sh and uninstall.sh staged with --root, the rendered files, and the shell scripts.

Everything runs the real scripts against a staging root and a throwaway Reeve home; nothing here
touches the system.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.reeve_processes import ROOT, ReeveHome, copy_checkout

DEPLOY = ROOT / "deploy"
INSTALL = DEPLOY / "scripts" / "install.sh"
UNINSTALL = DEPLOY / "scripts" / "uninstall.sh"
UNITS = ("reeve-web", "reeve-worker", "reeve-telegram", "reeve-daemon")
SCRIPTS = (
    "reeve-status",
    "reeve-logs",
    "reeve-queue",
    "reeve-heartbeat",
    "reeve-backup",
    "reeve-health-check",
    "reeve-credential-keepalive",
    "reeve-prune-history",
)
TEST_USER = "nobody"

pytestmark = pytest.mark.slow


def find_uv() -> str:
    """The uv that runs this suite (`uv run` exports UV), else one on PATH or the launcher's own."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools" / "bin" / "uv")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("uv not found: install.sh renders units that run through uv")


def stage(home: ReeveHome, root: Path, *args: str, user: str = TEST_USER) -> subprocess.CompletedProcess:
    """Run install.sh --root --keep-env for `home` (its env decides the data, log and Desk paths)."""
    env = {**home.env, "UV": find_uv()}
    env.pop("SUDO_USER", None)
    proc = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--user", user, "--keep-env", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"install.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot(root: Path) -> dict[str, tuple[float, int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_mode, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def home(tmp_path):
    home = ReeveHome(tmp_path / "home")
    yield home
    home.stop_all()  # on PostgreSQL: drops the home's database


@pytest.fixture(scope="module")
def staged_once(tmp_path_factory):
    """(home, root) after one `install.sh --root` for the module's tests that only read the staged
    files or change a copy of them (each install costs a Python start and `doctor --paths`)."""
    base = tmp_path_factory.mktemp("staged")
    home = ReeveHome(base / "home")
    stage(home, base / "root")
    yield home, base / "root"
    home.stop_all()


@pytest.fixture
def staged_copy(staged_once, tmp_path):
    """(home, a copy of the module's staged root that the test may change)."""
    home, root = staged_once
    shutil.copytree(root, tmp_path / "root", symlinks=True)
    return home, tmp_path / "root"


def test_install_with_root_renders_units_scripts_sudoers_logrotate_and_cron_for_the_user(staged_once):
    home, root = staged_once
    for unit in UNITS:
        text = (root / f"etc/systemd/system/{unit}.service").read_text()
        assert "@" not in text.replace("reeve-daemon@", ""), f"unrendered placeholder in {unit}"
    for script in SCRIPTS:
        path = root / "usr/local/bin" / script
        assert os.access(path, os.X_OK), script
    assert os.access(root / "usr/local/lib/reeve/credential-providers/claude-code", os.X_OK)
    worker = (root / "etc/systemd/system/reeve-worker.service").read_text()
    assert f"User={TEST_USER}" in worker
    assert "run_pulse_worker" in worker
    assert "KillMode=mixed" in worker
    # The drain grace (10 s in the test home) plus a margin: a stop never cuts the drain short.
    assert "TimeoutStopSec=70" in worker
    hardening = ("NoNewPrivileges=true", "PrivateTmp=true", "ProtectSystem=strict", "ProtectHome=read-only")
    for setting in hardening:
        assert setting in worker
    rw = next(line for line in worker.splitlines() if line.startswith("ReadWritePaths="))
    assert str(home.path) in rw and str(home.desk) in rw
    web = (root / "etc/systemd/system/reeve-web.service").read_text()
    # The environment's Python is the main process: no uv resident beside each service.
    assert f"ExecStart={ROOT}/.venv/bin/python -m gunicorn -c deploy/gunicorn.conf.py" in web
    assert f"ExecStart={ROOT}/.venv/bin/python manage.py run_pulse_worker" in worker
    assert "Restart=always" in web and "RestartSec=10" in web and "SyslogIdentifier=reeve-web" in web
    assert "MemoryMax=" in web and "CPUQuota=" in web
    telegram = (root / "etc/systemd/system/reeve-telegram.service").read_text()
    assert "run_telegram_listener" in telegram
    rw = next(line for line in telegram.splitlines() if line.startswith("ReadWritePaths="))
    assert str(home.desk) in rw  # files sent in Telegram are saved into the Desk's inbox
    daemon = (root / "etc/systemd/system/reeve-daemon.service").read_text()
    assert "Wants=reeve-web.service reeve-worker.service" in daemon
    assert "PartOf=reeve-daemon.service" in web and "PartOf=reeve-daemon.service" in worker
    # Stop order is the reverse of start order: the worker drains while the web unit still answers.
    after = next(line for line in worker.splitlines() if line.startswith("After="))
    assert "reeve-web.service" in after.split("=", 1)[1].split()
    # The daemon's state is the pair's (their failure stops it); the listener stops and restarts with it,
    # and starts with it once enabled.
    assert "BindsTo=reeve-web.service reeve-worker.service" in daemon
    assert "PartOf=reeve-daemon.service" in telegram
    assert "WantedBy=multi-user.target reeve-daemon.service" in telegram

    cron = (root / "etc/cron.d/reeve").read_text()
    logs = home.path / "logs"
    assert f"0 * * * * {TEST_USER} /usr/local/bin/reeve-heartbeat >> {logs}/heartbeat.log 2>&1" in cron
    assert f"*/5 * * * * {TEST_USER} /usr/local/bin/reeve-health-check" in cron
    assert (
        f"0 3 * * * {TEST_USER} /usr/local/bin/reeve-backup >> {logs}/backup.log 2>&1 && "
        f"/usr/local/bin/reeve-prune-history >> {logs}/prune-history.log 2>&1"
    ) in cron
    assert f"0 */4 * * * {TEST_USER} /usr/local/bin/reeve-credential-keepalive" in cron

    logrotate = (root / "etc/logrotate.d/reeve").read_text()
    assert f"{logs}/*.log {{" in logrotate
    for directive in ("daily", "rotate 14", "compress"):
        assert f"    {directive}\n" in logrotate
    assert f"    create 0600 {TEST_USER} " in logrotate  # as Reeve makes its logs: doctor stays quiet
    assert "postrotate" not in logrotate.replace("No postrotate", "")

    sudoers = root / "etc/sudoers.d/reeve"
    assert oct(sudoers.stat().st_mode & 0o777) == "0o440"
    text = sudoers.read_text()
    systemctl = shutil.which("systemctl") or "/usr/bin/systemctl"
    journalctl = shutil.which("journalctl") or "/usr/bin/journalctl"
    for verb in ("status", "start", "stop", "restart", "is-active", "show"):
        for unit in ("reeve-daemon", "reeve-telegram"):
            assert f"{systemctl} {verb} {unit}," in text or f"{systemctl} {verb} {unit} " in text + " "
    assert f"{journalctl} -u reeve-daemon -f," in text
    assert f"{systemctl} stop reeve-telegram reeve-daemon" in text
    assert "*" not in text, "a wildcard would let extra options through"
    assert f"\n{TEST_USER} ALL=(root) NOPASSWD: REEVE_SYSTEMCTL, REEVE_JOURNAL\n" in text

    conf = (root / "etc/reeve/reeve.conf").read_text()
    assert f"REEVE_DIR={ROOT}" in conf and f"REEVE_USER={TEST_USER}" in conf


def test_the_daemon_unit_runs_a_python3_outside_every_home_directory(home, tmp_path):
    # `command -v python3` may be a pyenv shim under ~root, which the DynamicUser unit cannot reach.
    shims = tmp_path / "root-home" / ".pyenv" / "shims"
    shims.mkdir(parents=True)
    (shims / "python3").symlink_to(sys.executable)
    home.extra_env["PATH"] = f"{shims}:{os.environ['PATH']}"
    root = tmp_path / "root"
    stage(home, root)
    daemon = (root / "etc/systemd/system/reeve-daemon.service").read_text()
    exec_start = next(line for line in daemon.splitlines() if line.startswith("ExecStart="))
    python = exec_start.removeprefix("ExecStart=").split()[0]
    assert python in ("/usr/bin/python3", "/usr/local/bin/python3"), exec_start
    assert not os.path.realpath(python).startswith(("/home/", "/root/", str(tmp_path)))


def test_install_and_the_helpers_read_settings_from_env_file_as_the_services_do(tmp_path):
    """The installer's shell (a PULSE_API_PORT exported there) does not decide what the helpers use."""
    clone = copy_checkout(tmp_path / "checkout")  # with an .env of its own
    data = tmp_path / "data"
    (clone / ".env").write_text(
        f"PULSE_DB_PATH={data}/pulse_queue.db\nLOG_FILE={data}/logs/daemon.log\n"
        f"REEVE_DESK_PATH={data}/desk\nPROMETHEUS_MULTIPROC_DIR={data}/metrics\n"
        "PULSE_API_PORT=8799\nSECRET_KEY=from-the-env-file\n"
    )
    shell = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "UV": find_uv()}
    wrong = {**shell, "PULSE_API_PORT": "9999", "PULSE_DB_PATH": str(tmp_path / "elsewhere.db")}
    subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in shell.items()), sys.executable, "manage.py", "migrate", "-v0"],
        cwd=clone,
        check=True,
        timeout=180,
    )
    root = tmp_path / "root"
    proc = subprocess.run(
        ["bash", str(clone / "deploy/scripts/install.sh"), "--root", str(root), *_as_me()],
        env=wrong,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOTE: ignoring PULSE_API_PORT PULSE_DB_PATH from this shell" in proc.stdout
    conf = (root / "etc/reeve/reeve.conf").read_text()
    assert "REEVE_API_URL=http://127.0.0.1:8799" in conf and f"REEVE_DB_PATH={data}/pulse_queue.db" in conf
    assert "REEVE_KEEP_ENV=0" in conf
    # A helper run from the same shell reads the database .env names, as the worker unit would.
    queue = subprocess.run(
        [str(root / "usr/local/bin/reeve-queue"), "all"],
        env={**wrong, "REEVE_NO_SYSTEMD": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert queue.returncode == 0, queue.stderr
    assert queue.stdout.startswith("pending=0 ")
    assert (data / "pulse_queue.db").exists() and not (tmp_path / "elsewhere.db").exists()


def test_the_staged_sudoers_file_passes_visudo(staged_once):
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    if not os.access(visudo, os.X_OK):
        pytest.skip("visudo not installed (the sudo package)")
    _, root = staged_once
    proc = subprocess.run([visudo, "-cf", str(root / "etc/sudoers.d/reeve")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_staged_units_pass_systemd_analyze_verify(staged_once):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    _, root = staged_once
    unit_dir = root / "etc/systemd/system"
    proc = subprocess.run(
        [analyze, "verify", *(f"./{u}.service" for u in UNITS)],
        cwd=unit_dir,
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    if proc.returncode != 0 and "Failed to initialize manager" in proc.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()}")
    # verify exits 0 even for unknown keys and bad values: any complaint about our files fails.
    complaints = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "reeve-" in line and "Special user nobody" not in line
    ]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


def test_the_staged_logrotate_config_parses(home, tmp_path):
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.access(logrotate, os.X_OK):
        pytest.skip("logrotate not installed")
    root = tmp_path / "root"
    stage(home, root, *_root_allowed(), user=_current_user())
    state = tmp_path / "logrotate.state"
    proc = subprocess.run(
        [logrotate, "--debug", "--state", str(state), str(root / "etc/logrotate.d/reeve")],
        capture_output=True,
        text=True,
    )
    output = proc.stdout + proc.stderr
    assert "error:" not in output.replace("error: skipping", ""), output
    assert "rotating pattern" in output


def test_a_second_install_changes_no_file(home, tmp_path):
    root = tmp_path / "root"
    stage(home, root)
    before = snapshot(root)
    time.sleep(1.1)  # a rewrite would show in the mtimes
    second = stage(home, root)
    assert snapshot(root) == before
    assert "already up to date" in second.stdout


def test_uninstall_with_purge_leaves_nothing_behind(staged_copy):
    home, root = staged_copy
    (root / home.path.relative_to("/") / "backups" / "pulse_queue_x.db.gz").write_bytes(b"x")
    proc = subprocess.run(
        ["bash", str(UNINSTALL), "--root", str(root), "--purge"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(root.rglob("*")) == []


def test_uninstall_without_purge_keeps_the_data_directory(staged_copy):
    home, root = staged_copy
    database = root / home.db_path.relative_to("/")
    database.write_bytes(b"the user's data")
    proc = subprocess.run(["bash", str(UNINSTALL), "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    marker = database.with_name(".reeve-data-dir")  # what lets a later --purge know the directory
    kept = root / "etc/reeve/kept-data"  # what lets a later --purge find it
    assert sorted(p for p in root.rglob("*") if p.is_file()) == sorted([database, marker, kept])
    assert f"REEVE_DATA_DIR={home.path}" in kept.read_text()
    assert not (root / "usr").exists()


def test_uninstall_then_uninstall_purge_finds_and_deletes_the_data_directory(staged_copy):
    home, root = staged_copy
    database = root / home.db_path.relative_to("/")
    database.write_bytes(b"the user's data")
    plain = subprocess.run(["bash", str(UNINSTALL), "--root", str(root)], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    purge = subprocess.run(
        ["bash", str(UNINSTALL), "--root", str(root), "--purge"], capture_output=True, text=True, timeout=60
    )
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert f"purged {home.path}" in purge.stdout
    assert list(root.rglob("*")) == []


def test_staging_writes_nothing_outside_the_root_in_the_service_users_real_home(home, tmp_path):
    """Without --keep-env the settings are the service user's own (~/.reeve for nobody: /nonexistent);
    staging reads them, and must make no folder, metrics file or key there."""
    real_home = Path("/nonexistent")
    if real_home.exists():
        pytest.skip("/nonexistent exists on this machine")
    root = tmp_path / "root"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "UV": find_uv(), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--user", TEST_USER],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not real_home.exists(), sorted(real_home.rglob("*"))
    assert "REEVE_DATA_DIR=/nonexistent/.reeve" in (root / "etc/reeve/reeve.conf").read_text()
    assert not list(root.glob(".reeve-install-scratch*"))  # its scratch folder is gone too
    assert not list(tmp_path.glob(".reeve*"))  # nor anything in the invoking shell's HOME


def test_install_refuses_to_run_the_agent_as_root_without_allow_root_agent(home, tmp_path):
    env = {**home.env, "UV": find_uv()}
    root = tmp_path / "root"
    refused = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--user", "root", "--keep-env"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert refused.returncode == 1
    assert "would run as root" in refused.stderr and "--allow-root-agent" in refused.stderr
    assert not (root / "etc").exists()
    allowed = stage(home, root, "--allow-root-agent", user="root")
    assert "WARNING: the services and the agent run as root" in allowed.stdout
    assert "User=root" in (root / "etc/systemd/system/reeve-worker.service").read_text()


def test_install_warns_when_the_agent_command_is_not_on_the_units_path_and_names_where_it_is(home, tmp_path):
    npm_bin = tmp_path / "npm-global" / "bin"
    npm_bin.mkdir(parents=True)
    agent = npm_bin / "reeve-test-agent-cli"
    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(0o755)
    home.extra_env["HAPI_COMMAND"] = "reeve-test-agent-cli --flag"
    env = {**home.env, "UV": find_uv(), "PATH": f"{npm_bin}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(INSTALL), "--root", str(tmp_path / "root"), "--user", TEST_USER, "--keep-env"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [warning] = [line for line in proc.stdout.splitlines() if "not on the services' PATH" in line]
    assert "'reeve-test-agent-cli'" in warning and f"this shell finds it at {agent}" in warning
    service_path = next(
        line.split("=", 1)[1]
        for line in (tmp_path / "root/etc/reeve/reeve.conf").read_text().splitlines()
        if line.startswith("REEVE_SERVICE_PATH=")
    )
    assert f"({service_path})" in warning  # the PATH the units run with, as install.sh wrote it

    # On the units' PATH (an absolute path): no warning.
    home.extra_env["HAPI_COMMAND"] = f"{agent} --flag"
    quiet = stage(home, tmp_path / "root2")
    assert "not on the services' PATH" not in quiet.stdout


def test_install_writes_the_claude_command_for_the_credential_keepalive(home, tmp_path):
    claude = tmp_path / "npm" / "bin" / "claude"
    claude.parent.mkdir(parents=True)
    claude.write_text("#!/bin/sh\nexit 0\n")
    claude.chmod(0o755)
    home.extra_env["CLAUDE_COMMAND"] = str(claude)
    root = tmp_path / "root"
    proc = stage(home, root)
    assert "CLAUDE_COMMAND" not in proc.stdout  # an executable: nothing to warn about
    assert f"REEVE_CLAUDE_COMMAND={claude}" in (root / "etc/reeve/reeve.conf").read_text()


def test_install_refuses_to_run_without_root_unless_staging(home):
    if os.geteuid() == 0:
        pytest.skip("running as root")
    proc = subprocess.run(["bash", str(INSTALL)], env=home.env, capture_output=True, text=True)
    assert proc.returncode == 1 and "sudo" in proc.stderr


@pytest.mark.database_independent  # shellcheck reads the scripts: no database
def test_every_shell_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (.ci/run installs it)")
    scripts = [
        *sorted((DEPLOY / "bin").iterdir()),
        *sorted((DEPLOY / "scripts").glob("*.sh")),
        *sorted((DEPLOY / "credential-providers").iterdir()),
        DEPLOY / "lib" / "common.sh",
    ]
    proc = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)], capture_output=True, text=True, cwd=DEPLOY
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.database_independent  # each script's -h, before it reads any setting
def test_every_helper_script_answers_dash_h_without_an_installation(tmp_path):
    for script in [*SCRIPTS, "install.sh", "uninstall.sh"]:
        path = DEPLOY / ("scripts" if script.endswith(".sh") else "bin") / script
        proc = subprocess.run(["bash", str(path), "-h"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
        assert "usage" in proc.stdout.lower() or script in proc.stdout, script
        assert "set -" not in proc.stdout and "#" not in proc.stdout, f"{script}: {proc.stdout}"


# --- the journal relay behind `journalctl -u reeve-daemon` --------------------------------------

FAKE_JOURNALCTL = """#!{python}
import json, os, sys, time
with open(os.environ["FAKE_JOURNAL_ARGV"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
entries = [json.loads(line) for line in open(os.environ["FAKE_JOURNAL"])]
after = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--after-cursor=")), None)
if after:
    entries = entries[[e["__CURSOR"] for e in entries].index(after) + 1 :]
elif "--lines=0" in sys.argv:
    entries = []
for entry in entries:
    print(json.dumps(entry), flush=True)
if "--follow" in sys.argv:
    time.sleep(60)
"""


def _entry(n: int, unit: str, message, priority: int = 6) -> dict:
    return {"__CURSOR": f"c{n}", "_SYSTEMD_UNIT": unit, "PRIORITY": str(priority), "MESSAGE": message}


@pytest.mark.database_independent  # the relay and a fake journalctl: no database
def test_the_journal_relay_copies_both_units_with_their_levels_and_resumes_from_its_cursor(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "journalctl"
    fake.write_text(FAKE_JOURNALCTL.format(python=sys.executable))
    fake.chmod(0o755)
    journal = tmp_path / "journal.jsonl"
    entries = [
        _entry(1, "reeve-web.service", "2026-01-01 10:00:00,000 INFO 12 django booted"),
        _entry(2, "reeve-worker.service", "2026-01-01 10:00:01,000 ERROR 13 pulses.queue pulse_failed id=4"),
        _entry(3, "reeve-worker.service", list("bytes é".encode())),
        _entry(4, "reeve-web.service", "gunicorn crashed", priority=2),
    ]
    state = tmp_path / "state"
    state.mkdir()
    (state / "cursor").write_text("c0")
    journal.write_text("".join(json.dumps(e) + "\n" for e in [_entry(0, "x", "old"), *entries[:2]]))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_JOURNAL": str(journal),
        "FAKE_JOURNAL_ARGV": str(tmp_path / "argv.jsonl"),
        "STATE_DIRECTORY": str(state),
    }
    relay = subprocess.Popen(
        [sys.executable, str(DEPLOY / "lib" / "journal-relay"), "reeve-web.service", "reeve-worker.service"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    first = [relay.stdout.readline() for _ in range(2)]
    assert first == [
        "<6>web: 2026-01-01 10:00:00,000 INFO 12 django booted\n",
        "<3>worker: 2026-01-01 10:00:01,000 ERROR 13 pulses.queue pulse_failed id=4\n",
    ]
    # While it stops, the units write their last lines; the relay catches up before it exits.
    with open(journal, "a") as f:
        f.write(json.dumps(entries[2]) + "\n" + json.dumps(entries[3]) + "\n")
    relay.send_signal(signal.SIGTERM)
    rest, _ = relay.communicate(timeout=30)
    assert relay.returncode == 0
    assert rest.splitlines() == ["<6>worker: bytes é", "<2>web: gunicorn crashed"]
    assert (state / "cursor").read_text() == "c4"
    calls = [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()]
    assert "--unit=reeve-web.service" in calls[0] and "--unit=reeve-worker.service" in calls[0]
    assert "--after-cursor=c0" in calls[0] and "--follow" in calls[0]
    assert "--after-cursor=c2" in calls[-1] and "--follow" not in calls[-1]


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _root_allowed() -> list[str]:
    """--allow-root-agent when this suite runs as root (a container's CI): staging for the current
    user then names root, which install.sh refuses without it."""
    return ["--allow-root-agent"] if os.geteuid() == 0 else []


def _as_me() -> list[str]:
    return ["--user", _current_user(), *_root_allowed()]


# --- the worker unit's stop path ----------------------------------------------------------------


def _unit_value(unit_text: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in unit_text.splitlines() if line.startswith(f"{key}="))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("agent_seconds", "expected"),
    [(2, "completed"), (600, "pending")],
    ids=["finishes-within-grace", "outlasts-grace"],
)
def test_stopping_the_worker_unit_as_systemd_does_never_leaves_a_pulse_processing(
    tmp_path, migrated_home, agent_seconds, expected
):
    """KillMode=mixed: SIGTERM to the unit's main process (the worker) only; systemd kills the rest
    only after TimeoutStopSec. The worker must drain or release within that time."""
    home = migrated_home.copy_to(tmp_path / "home")
    home.extra_env["PULSE_SHUTDOWN_GRACE_SECONDS"] = "4"
    root = tmp_path / "root"
    stage(home, root)
    unit = (root / "etc/systemd/system/reeve-worker.service").read_text()
    assert _unit_value(unit, "KillMode") == "mixed"
    timeout_stop = float(_unit_value(unit, "TimeoutStopSec"))
    exec_start = _unit_value(unit, "ExecStart").split()
    main = subprocess.Popen(exec_start, cwd=_unit_value(unit, "WorkingDirectory"), env=home.env)
    home.children.append(main)
    try:
        home.manage("trigger_pulse", f"stop test mode=sleep:{agent_seconds}")
        starts = home.wait_for(home.agent_starts, timeout=120, what="the agent to start")
        agent_pid = starts[0]["pid"]
        stopped_at = time.monotonic()
        main.send_signal(signal.SIGTERM)
        main.wait(timeout=timeout_stop)
        took = time.monotonic() - stopped_at
        # Read before stop_all: on PostgreSQL it drops the home's database.
        rows = home.query("SELECT status, attempt_count FROM pulses")
    finally:
        home.stop_all()
    assert took < timeout_stop, "systemd would have had to SIGKILL the worker"
    assert rows == [(expected, 1 if expected == "completed" else 0)]
    assert not _alive(agent_pid) or open(f"/proc/{agent_pid}/stat").read().split()[2] == "Z"
