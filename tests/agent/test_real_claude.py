"""The Desk works headless: the real Claude Code (directly, and through the real Hapi), its model played
by the stand-in Messages API (tests/support/fake_model.py), run by Reeve's real worker, calls Reeve's
tools through the real MCP server and the real API (gunicorn), and each call lands.

Claude Code ignores the Desk's `permissions.allow` in a folder nobody trusted (every headless Desk);
Reeve allows its own tools on the command line instead (`--allowedTools=mcp__reeve`). Each test gets
a throwaway HOME, so nothing marks the Desk trusted. Today's CLI defers MCP tools: the model first
loads them with its ToolSearch tool, then calls them; the scripts below do the same.

Each real CLI start costs ~1-2 s of CPU, so each test runs as few as it can and checks much per run.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from pulses.tools.agent_tools import TOOL_NAMES
from tests.agent.test_real_agents import AGENTS_BIN, HAPI_CREDENTIAL, stop_hapi_runner
from tests.api.test_api_live import LiveReeve
from tests.support.fake_model import FakeModel, Request, Step, load_tools, reeve_tool, result_text, text
from tests.support.reeve_processes import REAL_CLI_ONCE, on_postgres

# Two worker runs in the longest test, each bounded by PULSE_TIMEOUT_SECONDS below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHAT = 42
PROMPT = "Look after the garden"
FOLLOW_UP = "Check that the tomatoes were watered"
NOTICE = "The tomatoes need water today"
ROUTINE = "garden-round"
NOT_GRANTED = "haven't granted it"
# Seconds for a whole worker run on a loaded 2-core machine (one takes ~5 s alone): the agent's own
# timeout, and a little more for the worker around it.
AGENT_TIMEOUT = 240
RUN_TIMEOUT = AGENT_TIMEOUT + 60


@pytest.fixture
def model():
    fake = FakeModel().start()
    yield fake
    fake.stop()


@pytest.fixture
def claude_home(reeve_home, model, fake_telegram, tmp_path):
    """A Reeve home whose agent is the real `claude` with the fake model behind it, a HOME of its own,
    Telegram on the fake Bot API (chat 42), and its web process (`home.live`) ready to start."""
    if not (AGENTS_BIN / "claude").exists():
        pytest.skip("the real Claude Code is not installed: run tests/support/agents.sh (needs npm)")
    if on_postgres():
        pytest.skip(REAL_CLI_ONCE)
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    live = LiveReeve(reeve_home)
    reeve_home.extra_env.update(
        HOME=str(user_home),
        PATH=f"{AGENTS_BIN}:{os.environ['PATH']}",
        HAPI_COMMAND="claude",
        PULSE_API_PORT=str(live.port),  # the URL the worker hands the agent's tools, and mcp_config writes
        PULSE_API_TOKEN=live.token,
        PULSE_TIMEOUT_SECONDS=str(AGENT_TIMEOUT),
        PULSE_LEASE_SECONDS="60",  # one worker: a starved renewal on a loaded machine must not end a run
        **model.env(),
        **fake_telegram.env(CHAT),
    )
    reeve_home.user_home = user_home
    reeve_home.live = live
    yield reeve_home
    live.stop()


@pytest.fixture
def hapi_home(claude_home):
    """`claude_home` with the guide's HAPI_COMMAND=hapi and Hapi's credential in ~/.hapi/settings.json."""
    if not (AGENTS_BIN / "hapi").exists():
        pytest.skip("the real Hapi is not installed: run tests/support/agents.sh (needs npm)")
    if on_postgres():
        pytest.skip("runs in the SQLite half only: Hapi's hub listens on the fixed port 3006")
    (claude_home.user_home / ".hapi").mkdir()
    (claude_home.user_home / ".hapi" / "settings.json").write_text(
        json.dumps({"cliApiToken": HAPI_CREDENTIAL})
    )
    claude_home.extra_env["HAPI_COMMAND"] = "hapi"
    yield claude_home
    stop_hapi_runner(claude_home)


def _id_of_last_result(request: Request) -> int:
    """The pulse id in the last tool result (a pulse as schedule_pulse or reschedule_pulse return it)."""
    return json.loads(request.last_result())["id"]


def every_tool() -> list[Step]:
    """A run that loads Reeve's nine tools and calls each; the follow-up resumes this conversation."""
    return [
        load_tools(*TOOL_NAMES),
        reeve_tool("schedule_pulse", prompt=FOLLOW_UP, when="now", resume_current_session=True),
        reeve_tool("schedule_pulse", prompt="A spare reminder", when="in 2 hours", tags=["spare"]),
        lambda request: reeve_tool(
            "reschedule_pulse", pulse_id=_id_of_last_result(request), when="in 3 hours"
        ),
        lambda request: reeve_tool("cancel_pulse", pulse_id=_id_of_last_result(request)),
        reeve_tool("list_upcoming_pulses", limit=10),
        reeve_tool("send_notification", message=NOTICE),
        reeve_tool("create_routine", name=ROUTINE, schedule="every 2 hours", prompt="Walk the garden"),
        # Beyond the guard rails (agent routines fire at most every 15 minutes): refused, nothing made.
        reeve_tool("create_routine", name="too-often", schedule="every 5 minutes", prompt="Nag"),
        reeve_tool("create_routine", name="scratch", schedule="@daily", prompt="Tidy the shed"),
        reeve_tool("list_routines"),
        reeve_tool("pause_routine", name="scratch"),
        reeve_tool("delete_routine", name="scratch"),
        text("The garden is looked after."),
    ]


def the_three_that_must_land() -> list[Step]:
    return [
        load_tools("schedule_pulse", "send_notification", "create_routine"),
        reeve_tool("schedule_pulse", prompt=FOLLOW_UP, when="in 1 hour"),
        reeve_tool("send_notification", message=NOTICE),
        reeve_tool("create_routine", name=ROUTINE, schedule="every 2 hours", prompt="Walk the garden"),
        text("The garden is looked after."),
    ]


def results(model: FakeModel, name: str) -> list[dict]:
    """What the CLI gave the model back for each call of Reeve's tool `name`."""
    return model.tool_results(f"mcp__reeve__{name}")


def assert_granted(model: FakeModel, name: str, *, calls: int = 1) -> list[dict]:
    """Each call of tool `name` reached Reeve's server and came back without an error."""
    found = results(model, name)
    assert len(found) == calls, (name, found)
    for result in found:
        assert NOT_GRANTED not in result_text(result), result
        assert not result.get("is_error"), result
    return found


def pulses(home) -> list[dict]:
    columns = ("id", "prompt", "source", "parent_id", "session_id", "status")
    rows = home.query(f"SELECT {', '.join(columns)} FROM pulses ORDER BY id")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def routines(home) -> dict[str, tuple[str, bool]]:
    rows = home.query("SELECT name, source, enabled FROM pulse_routines")
    return {name: (source, bool(enabled)) for name, source, enabled in rows}


def sessions_of(home, pulse_id: int) -> list[str]:
    return [
        row[0] for row in home.query("SELECT session_id FROM pulse_attempts WHERE pulse_id = ?", (pulse_id,))
    ]


def assert_the_three_landed(
    home, model: FakeModel, telegram, *, run_pulse: int, pulses_scheduled: int = 1
) -> None:
    """schedule_pulse made an `agent` pulse whose parent is the running pulse, send_notification reached
    the Bot API, and create_routine made an enabled routine of the agent's."""
    assert_granted(model, "schedule_pulse", calls=pulses_scheduled)
    [follow_up] = [p for p in pulses(home) if p["prompt"] == FOLLOW_UP]
    assert (follow_up["source"], follow_up["parent_id"]) == ("agent", run_pulse), follow_up
    assert_granted(model, "send_notification")
    # /api/notify queues it; the Telegram listener sends it.
    listener = home.start("run_telegram_listener", "--poll-timeout", "5", "--backoff-cap", "2")
    try:
        telegram.wait_for(
            lambda: any(c.params.get("text") == NOTICE for c in telegram.calls_to("sendMessage")),
            timeout=60,
            what="the agent's notification",
        )
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(timeout=60)
    sent = [c for c in telegram.calls_to("sendMessage") if c.params.get("text") == NOTICE]
    assert [str(c.params["chat_id"]) for c in sent] == [str(CHAT)], telegram.calls
    made = results(model, "create_routine")[0]  # the first call; a test may add refused ones
    assert NOT_GRANTED not in result_text(made) and not made.get("is_error"), made
    assert routines(home)[ROUTINE] == ("agent", True)


def assert_not_trusted(home, desk) -> None:
    """Nothing marked the Desk trusted in the agent's Claude config: its own allow rules stay ignored."""
    config = home.user_home / ".claude.json"
    projects = json.loads(config.read_text()).get("projects", {}) if config.exists() else {}
    assert not projects.get(str(desk), {}).get("hasTrustDialogAccepted"), projects.get(str(desk))


def run_worker_once(home) -> None:
    home.manage("run_pulse_worker", "--once", timeout=RUN_TIMEOUT)


def run_once_in_a_configured_desk(home) -> dict:
    """The web process started, the Desk set up by `mcp_config --write`, PROMPT queued and the worker
    run once: the pulse as it is then."""
    home.live.start(web_only=True)
    home.manage("mcp_config", "--write")
    home.manage("trigger_pulse", "--", PROMPT)
    run_worker_once(home)
    return pulses(home)[0]


def test_in_a_desk_set_up_by_mcp_config_claude_calls_every_tool_headless_and_the_follow_up_resumes(
    claude_home, model, fake_telegram
):
    home = claude_home
    model.steps = every_tool()
    run = run_once_in_a_configured_desk(home)
    assert run["status"] == "completed", run
    # Every tool was allowed, called, and answered by Reeve's server through the API.
    assert_the_three_landed(home, model, fake_telegram, run_pulse=run["id"], pulses_scheduled=2)
    spare_id = json.loads(result_text(results(model, "schedule_pulse")[1]))["id"]
    for name in ("reschedule_pulse", "cancel_pulse"):
        [changed] = assert_granted(model, name)
        assert json.loads(result_text(changed))["id"] == spare_id
    [spare] = [p for p in pulses(home) if p["id"] == spare_id]
    assert (spare["status"], spare["source"], spare["parent_id"]) == ("cancelled", "agent", run["id"])
    [listed] = assert_granted(model, "list_upcoming_pulses")
    assert FOLLOW_UP in result_text(listed)
    # The guard rails hold for the real agent too: the refusal names the limit, and nothing was made.
    made, too_often, scratch = results(model, "create_routine")
    assert too_often.get("is_error") and "15 minutes" in result_text(too_often), too_often
    assert not made.get("is_error") and not scratch.get("is_error"), (made, scratch)
    for name in ("list_routines", "pause_routine", "delete_routine"):
        assert_granted(model, name)
    assert [name for name, (source, _) in routines(home).items() if source == "agent"] == [ROUTINE]
    assert_not_trusted(home, home.desk)
    [first_session] = sessions_of(home, run["id"])

    # The follow-up resumes the same conversation (in a second run, if the first one left it pending).
    [follow_up] = [p for p in pulses(home) if p["prompt"] == FOLLOW_UP]
    if follow_up["status"] == "pending":
        run_worker_once(home)
    [follow_up] = [p for p in pulses(home) if p["prompt"] == FOLLOW_UP]
    assert follow_up["status"] == "completed", follow_up
    assert sessions_of(home, follow_up["id"]) == [first_session]
    log = (home.path / "logs" / "daemon.log").read_text()
    assert re.search(rf"agent_started pulse={follow_up['id']} pid=\d+ resume=True", log), log[-3000:]
    # The model, asked again, received the earlier turn: its prompt, its calls, their results, its answer.
    first_run_turns = len(every_tool())
    resumed = [r for r in model.conversation if r.step >= first_run_turns]
    assert resumed, [r.step for r in model.conversation]
    asked = resumed[0]
    assert asked.session_id == first_session
    said = "\n".join(asked.texts())
    assert PROMPT in said and FOLLOW_UP in said and "The garden is looked after." in said
    first_run_calls = [
        block["name"]
        for request in model.conversation[:first_run_turns]
        for block in request.answer.content
        if block["type"] == "tool_use"
    ]
    assert [block["name"] for block in asked.blocks("tool_use")] == first_run_calls
    assert result_text(listed) in [result_text(block) for block in asked.blocks("tool_result")]


def test_in_the_desk_reeve_start_creates_claude_uses_the_tools_headless(claude_home, model, fake_telegram):
    home = claude_home
    desk = home.path / "fresh-desk"
    home.extra_env["REEVE_DESK_PATH"] = str(desk)
    model.steps = the_three_that_must_land()
    home.live.start()  # run_reeve: the start banner's Desk, gunicorn and the worker
    home.wait_for(lambda: "Desk " in home.live.log.read_text(), timeout=60, what="the banner")
    assert f"Desk       {desk}: created" in home.live.log.read_text()
    home.manage("trigger_pulse", "--", PROMPT)

    run = pulses(home)[0]
    home.wait_for(lambda: sessions_of(home, run["id"]), timeout=RUN_TIMEOUT, interval=0.5, what="a run")

    run = pulses(home)[0]
    assert run["status"] == "completed", (run, home.query("SELECT error FROM pulse_attempts"))
    assert_the_three_landed(home, model, fake_telegram, run_pulse=run["id"])
    assert_not_trusted(home, desk)


def test_through_bare_hapi_claude_uses_the_tools_headless(hapi_home, model, fake_telegram):
    home = hapi_home
    model.steps = the_three_that_must_land()
    run = run_once_in_a_configured_desk(home)
    assert run["status"] == "completed", run
    assert_the_three_landed(home, model, fake_telegram, run_pulse=run["id"])
    assert_not_trusted(home, home.desk)
