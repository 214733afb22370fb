"""The real Claude Code unable to run, run by Reeve's real workers: not logged in (no key, an empty
HOME), a key the stand-in Messages API (tests/support/fake_model.py) refuses with a 401 (the CLI
retries it for minutes: Reeve stops it at its first retry), the real Hapi without its credential, and
a 429 usage limit. The pulses wait with no attempt spent, the person is told once on the fake Bot API,
doctor fails naming the fix, /api/status names it, and once the agent can run again the held pulses
run without a restart."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.agent.test_real_agents import AGENTS_BIN, HAPI_CREDENTIAL, claude_processes, stop_hapi_runner
from tests.api.test_api_live import LiveReeve
from tests.support.fake_model import FakeModel
from tests.support.reeve_processes import REAL_CLI_ONCE, on_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHAT = 42


@pytest.fixture
def model():
    fake = FakeModel().start()
    yield fake
    fake.stop()


@pytest.fixture
def claude_home(reeve_home, fake_telegram, tmp_path):
    """A Reeve home whose agent is the real `claude`, with a HOME of its own and no key at all."""
    if not (AGENTS_BIN / "claude").exists():
        pytest.skip("the real Claude Code is not installed: run tests/support/agents.sh (needs npm)")
    if on_postgres():
        pytest.skip(REAL_CLI_ONCE)
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    env = {key: "" for key in os.environ if key.startswith(("ANTHROPIC_", "CLAUDE_"))}
    reeve_home.extra_env.update(
        env,
        HOME=str(user_home),
        PATH=f"{AGENTS_BIN}:{os.environ['PATH']}",
        HAPI_COMMAND="claude",
        PULSE_TIMEOUT_SECONDS="240",
        PULSE_LEASE_SECONDS="60",
        AGENT_HOLD_RECHECK_SECONDS="2",
        AGENT_HOLD_RECHECK_CAP_SECONDS="4",
        **fake_telegram.env(CHAT),
    )
    reeve_home.user_home = user_home
    return reeve_home


@pytest.fixture
def hapi_home(claude_home, monkeypatch):
    """`claude_home` with the guide's HAPI_COMMAND=hapi, and neither ~/.hapi/settings.json nor
    CLI_API_TOKEN: the real Hapi refuses to start ("CLI_API_TOKEN is required")."""
    if not (AGENTS_BIN / "hapi").exists():
        pytest.skip("the real Hapi is not installed: run tests/support/agents.sh (needs npm)")
    if on_postgres():
        pytest.skip("runs in the SQLite half only: Hapi's hub listens on the fixed port 3006")
    monkeypatch.delenv("CLI_API_TOKEN", raising=False)
    claude_home.extra_env["HAPI_COMMAND"] = "hapi"
    yield claude_home
    stop_hapi_runner(claude_home)


@pytest.fixture
def web(claude_home):
    """Reeve's web process for `claude_home`, started by the test that asks /api/status."""
    live = LiveReeve(claude_home)
    yield live
    live.stop()


def agent_problem(web) -> str:
    if web.proc is None:
        web.start(web_only=True)
    code, body = web.request("GET", "/api/status")
    assert code == 200, body
    assert body["agent_problem"] == "" or body["status"] == f"no pulse runs: {body['agent_problem']}"
    return body["agent_problem"]


def pulses(home):
    return home.query("SELECT status, attempt_count FROM pulses ORDER BY id")


def hold(home):
    rows = home.query("SELECT held, reason FROM agent_hold")
    return (bool(rows[0][0]), rows[0][1]) if rows else (False, "")


def rechecks(home):
    rows = home.query("SELECT rechecks FROM agent_hold")
    return rows[0][0] if rows else 0


def stop(home, *workers):
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=120) == 0, home.output(worker)


def test_the_real_claude_not_logged_in_holds_the_pulse_and_runs_it_once_logged_in(
    claude_home, model, fake_telegram
):
    home = claude_home
    home.manage("trigger_pulse", "Water the plants")
    worker = home.start("run_pulse_worker")
    home.wait_for(lambda: hold(home) == (True, "not_logged_in"), timeout=180, what="the hold")
    # A re-check (2 s on) runs the real CLI again: still not logged in, the hold extends.
    home.wait_for(
        lambda: rechecks(home) >= 2 and pulses(home) == [("pending", 0)], timeout=120, what="a re-check"
    )
    fake_telegram.wait_for(lambda: fake_telegram.sent_texts, what="the notice")
    [notice] = fake_telegram.sent_texts
    assert "Claude Code is not logged in" in notice and "claude` on the server, type /login" in notice
    assert "The agent said: Not logged in · Please run /login" in notice
    doctor = home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert doctor.returncode == 1
    assert "FAIL  agent ready" in doctor.stdout and "sudo -u" in doctor.stdout

    # The login, as `claude` then /login would leave it: the CLI finds its key in its own settings.
    (home.user_home / ".claude").mkdir(exist_ok=True)
    (home.user_home / ".claude" / "settings.json").write_text(json.dumps({"env": model.env()}))
    home.wait_for(lambda: pulses(home) == [("completed", 1)], timeout=240, what="the held pulse to run")
    # The run that reached the model ends the hold once its record is written.
    home.wait_for(lambda: hold(home) == (False, "not_logged_in"), timeout=30, what="the hold to end")
    texts = fake_telegram.wait_for(lambda: fake_telegram.sent_texts[1:] and fake_telegram.sent_texts)
    assert len(texts) == 2 and texts[1].startswith("▶️ Reeve runs your pulses again")
    stop(home, worker)


def test_the_real_claude_refused_a_401_is_stopped_at_its_first_retry_holds_and_runs_once_the_key_is_right(
    claude_home, model, fake_telegram, web
):
    home = claude_home
    # The key in the CLI's own settings, where `claude` keeps it; the model refuses it (401), and the
    # CLI would retry for minutes: Reeve stops the run at its first api_retry with status 401.
    cli_settings = home.user_home / ".claude" / "settings.json"
    cli_settings.parent.mkdir()
    cli_settings.write_text(json.dumps({"env": model.env(key="sk-ant-revoked-key")}))
    home.manage("trigger_pulse", "Water the plants")
    worker = home.start("run_pulse_worker")
    home.wait_for(lambda: hold(home) == (True, "invalid_key"), timeout=180, what="the hold")
    home.wait_for(
        lambda: rechecks(home) >= 2 and pulses(home) == [("pending", 0)], timeout=120, what="a re-check"
    )
    # Each held run ended in seconds (the CLI's own retries would take minutes), stopped by Reeve.
    held = home.query("SELECT duration_ms, error FROM pulse_attempts ORDER BY id")
    assert len(held) >= 2
    for duration_ms, error in held:
        assert duration_ms < 30_000, held
        assert "stopped by Reeve" in error and "last status 401" in error and "no attempt spent" in error
        # At its first retry (AGENT_MAX_API_RETRIES, 3, would let it retry twice more).
        assert int(re.search(r"\((\d+) retr(?:y|ies), last status", error)[1]) <= 2, error
    refused = [r for r in model.requests if r.api_key == "sk-ant-revoked-key"]
    assert refused and all(r.status == 401 for r in refused)
    fake_telegram.wait_for(lambda: fake_telegram.sent_texts, what="the notice")
    [notice] = fake_telegram.sent_texts
    assert "refused the agent's credential (401" in notice and "valid ANTHROPIC_API_KEY" in notice
    assert re.search(r"\nThe agent said: API retry \d: authentication_failed \(HTTP 401\)$", notice), notice
    doctor = home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert doctor.returncode == 1
    assert "FAIL  agent ready" in doctor.stdout and "refused the agent's credential" in doctor.stdout
    assert agent_problem(web).startswith("the model's API refused the agent's credential (401")

    cli_settings.write_text(json.dumps({"env": model.env()}))  # the right key
    home.wait_for(lambda: pulses(home) == [("completed", 1)], timeout=240, what="the held pulse to run")

    home.wait_for(lambda: hold(home) == (False, "invalid_key"), timeout=30, what="the hold to end")
    texts = fake_telegram.wait_for(lambda: fake_telegram.sent_texts[1:] and fake_telegram.sent_texts)
    assert len(texts) == 2 and texts[1].startswith("▶️ Reeve runs your pulses again")
    assert agent_problem(web) == ""
    stop(home, worker)
    assert not claude_processes(home)  # no stopped run left a CLI retrying behind


def test_the_real_hapi_without_its_credential_holds_the_pulse_and_runs_it_once_logged_in(
    hapi_home, model, fake_telegram, web
):
    home = hapi_home
    home.extra_env.update(model.env())
    home.manage("trigger_pulse", "Water the plants")
    worker = home.start("run_pulse_worker")
    home.wait_for(lambda: hold(home) == (True, "no_hapi_credential"), timeout=180, what="the hold")
    home.wait_for(
        lambda: rechecks(home) >= 2 and pulses(home) == [("pending", 0)], timeout=120, what="a re-check"
    )
    fake_telegram.wait_for(lambda: fake_telegram.sent_texts, what="the notice")
    [notice] = fake_telegram.sent_texts
    assert "Hapi has no credential (CLI_API_TOKEN is required)" in notice and "hapi auth login`" in notice
    assert "The agent said:" in notice and "CLI_API_TOKEN is required" in notice.split("The agent said:")[1]
    assert not model.requests  # Hapi started no Claude
    doctor = home.manage("doctor", "--no-api", "--no-telegram", check=False)
    assert doctor.returncode == 1
    assert "FAIL  agent ready" in doctor.stdout and "hapi auth login" in doctor.stdout
    assert agent_problem(web).startswith("Hapi has no credential")

    # `hapi auth login` leaves the hub's token in Hapi's settings.
    (home.user_home / ".hapi").mkdir(exist_ok=True)
    (home.user_home / ".hapi" / "settings.json").write_text(json.dumps({"cliApiToken": HAPI_CREDENTIAL}))
    home.wait_for(lambda: pulses(home) == [("completed", 1)], timeout=240, what="the held pulse to run")

    home.wait_for(lambda: hold(home) == (False, "no_hapi_credential"), timeout=30, what="the hold to end")
    assert model.conversation  # the pulse reached the model through Hapi and Claude
    texts = fake_telegram.wait_for(lambda: fake_telegram.sent_texts[1:] and fake_telegram.sent_texts)
    assert len(texts) == 2 and texts[1].startswith("▶️ Reeve runs your pulses again")
    assert agent_problem(web) == ""
    stop(home, worker)


def test_a_429_usage_limit_holds_every_pulse_on_two_workers_and_all_run_once_it_resets(
    claude_home, model, fake_telegram
):
    home = claude_home
    home.extra_env.update(model.env())
    # An hour ahead: the CLI gives up at once (a reset within ~30 s it waits out itself, holding the
    # slot). It passes no reset time on, so Reeve re-checks with backoff (2 s, then 4 s here).
    model.set_usage_limit(time.time() + 3600, claim="five_hour")
    for n in range(3):
        home.manage("trigger_pulse", f"Task {n}")
    workers = [home.start("run_pulse_worker"), home.start("run_pulse_worker")]
    home.wait_for(lambda: hold(home) == (True, "usage_limit"), timeout=180, what="the hold")
    # Both workers' first runs are held back to pending, with no attempt spent.
    home.wait_for(lambda: pulses(home) == [("pending", 0)] * 3, timeout=120, what="every pulse pending")
    assert home.query("SELECT COUNT(*) FROM pulse_attempts WHERE succeeded") == [(0,)]
    fake_telegram.wait_for(lambda: fake_telegram.sent_texts, what="the notice")
    home.wait_for(lambda: rechecks(home) >= 3, timeout=120, what="a re-check held again")
    home.wait_for(lambda: pulses(home) == [("pending", 0)] * 3, timeout=120, what="every pulse pending")

    model.clear_usage_limit()  # the window resets
    home.wait_for(lambda: pulses(home) == [("completed", 1)] * 3, timeout=300, what="all to run")

    texts = fake_telegram.wait_for(lambda: fake_telegram.sent_texts[1:] and fake_telegram.sent_texts)
    time.sleep(1)  # a third message would come now
    assert len(fake_telegram.sent_texts) == 2, (
        texts
    )  # one notice however many runs were held, one when it resumed
    assert "usage limit is reached" in texts[0] and texts[1].startswith("▶️")
    held = home.query("SELECT COUNT(*) FROM pulse_attempts WHERE error LIKE ?", ("%no attempt spent%",))[0][0]
    assert held >= 1
    stop(home, *workers)
