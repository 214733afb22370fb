"""`manage.py mcp_server` driven by the official MCP SDK's stdio client; it reaches Reeve through the
real API (gunicorn on loopback) with an agent-scoped token, never through the database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from pulses.tools.agent_tools import TOOL_NAMES
from tests.api.test_api_live import LiveReeve
from tests.support.reeve_processes import ROOT, initialize_request

pytestmark = pytest.mark.slow
# What the tool server may know: where the API is and its token. Not the database, not Reeve's secrets.
SERVER_ENV_DROPPED = ("PULSE_DB_PATH", "DATABASE_URL", "SECRET_KEY", "PULSE_API_TOKEN", "TELEGRAM_BOT_TOKEN")


def make_agent_token(home) -> str:
    return home.manage("create_api_token", "mcp-tests", "--scope", "agent").stdout.split()[-1]


@pytest.fixture(scope="module")
def agent_token_home(migrated_home, tmp_path_factory):
    """A migrated home holding an agent-scoped token, made once a module: each test's home is a copy
    (a file or a template database), so no test waits on `create_api_token` again."""
    home = migrated_home.copy_to(tmp_path_factory.mktemp("agent-token"))
    token = make_agent_token(home)
    yield home, token
    home.stop_all()


@pytest.fixture
def own_home(agent_token_home, tmp_path):
    """A fresh home with the module's agent token, whose API (gunicorn) `api` starts on first use
    and this fixture stops: for a test whose web process needs settings of its own."""
    template, token = agent_token_home
    home = template.copy_to(tmp_path)
    home.extra_env["REEVE_AGENT_TOKEN"] = token
    yield home
    if live := getattr(home, "live", None):
        live.stop()
    home.stop_all()


# What the module's tests write to a home, emptied between them (children before their parents).
TABLES_WRITTEN = (
    "pulse_run_tails",
    "pulse_deliveries",
    "pulse_attempts",
    "pulse_finished_days",
    "pulse_workers",
    "pulses",
)
FILES_WRITTEN = ("logs/daemon.log", "agent.log", "mcp-server.stderr", "raw.stderr")


@pytest.fixture(scope="module")
def served_home(agent_token_home, tmp_path_factory):
    """One home with the agent token and its web process, for the module's tests whose web process
    needs no settings of their own: a gunicorn start costs ~1 s of CPU (see `reeve_home`)."""
    template, token = agent_token_home
    home = template.copy_to(tmp_path_factory.mktemp("served"))
    home.extra_env["REEVE_AGENT_TOKEN"] = token
    api(home)
    yield home
    home.live.stop()
    home.stop_all()


@pytest.fixture
def reeve_home(served_home):
    """The module's served home as a fresh copy would be: no pulse, no run, no worker, empty logs and
    an empty Desk; what a test started is stopped after it."""
    home = served_home
    for table in TABLES_WRITTEN:
        home.query(f"DELETE FROM {table}")
    for name in FILES_WRITTEN:
        if (home.path / name).exists():
            (home.path / name).write_text("")  # gunicorn appends to daemon.log: it carries on at 0
    for entry in home.desk.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    yield home
    home.stop_children()


def api(home, **web_env: str) -> LiveReeve:
    """Start `home`'s web process (once) and give the tool server its URL and a Desk token (the
    home's own, or a new one). Settings for the web process (`web_env`) need an `own_home`."""
    if getattr(home, "live", None) is not None:
        assert not web_env or web_env == home.live_env, "a web process with settings of its own: own_home"
    else:
        home.live_env = web_env
        home.live = LiveReeve(home).start(web_only=True, **web_env)
        if "REEVE_AGENT_TOKEN" not in home.extra_env:
            home.extra_env["REEVE_AGENT_TOKEN"] = make_agent_token(home)
        home.extra_env["REEVE_API_URL"] = home.live.url
    return home.live


def server_env(home, **env: str) -> dict[str, str]:
    base = {k: v for k, v in home.env.items() if k not in SERVER_ENV_DROPPED}
    return {**base, **env}


def with_session(home, body: Callable[[ClientSession], Awaitable[Any]], *, web_env=None, **env: str) -> Any:
    """Start `manage.py mcp_server` for `home`, run `body` with an initialised client session."""
    api(home, **(web_env or {}))

    async def run() -> Any:
        params = StdioServerParameters(
            command=sys.executable,
            args=[str(ROOT / "manage.py"), "mcp_server"],
            env=server_env(home, **env),
            cwd=str(home.desk),
        )
        with open(home.path / "mcp-server.stderr", "a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    with anyio.fail_after(120):
                        return await body(session)

    return anyio.run(run)


def call(home, tool: str, arguments: dict[str, Any], *, web_env=None, **env: str):
    async def body(session: ClientSession):
        return await session.call_tool(tool, arguments)

    return with_session(home, body, web_env=web_env, **env)


def text(result) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def pulses(home) -> list[dict[str, Any]]:
    columns = "id, prompt, scheduled_at, priority, status, session_id, sticky_notes, tags, source, parent_id"
    rows = home.query(f"SELECT {columns} FROM pulses ORDER BY id")
    names = [c.strip() for c in columns.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


def stored_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def trigger(home, prompt: str, *extra: str) -> int:
    home.manage("trigger_pulse", prompt, *extra)
    return pulses(home)[-1]["id"]


def test_the_server_lists_its_tools_with_json_schemas(reeve_home):
    async def body(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in with_session(reeve_home, body)}
    assert sorted(tools) == sorted(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40
        assert tool.input_schema["type"] == "object"
    schedule = tools["schedule_pulse"].input_schema
    assert schedule["required"] == ["prompt"]
    assert set(schedule["properties"]) == {
        "prompt",
        "when",
        "priority",
        "sticky_notes",
        "tags",
        "resume_current_session",
        "model",
        "timeout_seconds",
        "max_turns",
    }
    [model] = [kind for kind in schedule["properties"]["model"]["anyOf"] if kind["type"] == "string"]
    assert model["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$"  # nothing shaped like an option
    assert {"model", "timeout_seconds", "max_turns"} <= set(
        tools["create_routine"].input_schema["properties"]
    )
    assert schedule["properties"]["priority"]["enum"] == ["high", "normal", "low", "deferred"]
    assert "tomorrow at 9am" in schedule["properties"]["when"]["description"]
    assert schedule["properties"]["resume_current_session"]["type"] == "boolean"
    assert tools["reschedule_pulse"].input_schema["required"] == ["pulse_id", "when"]
    assert tools["cancel_pulse"].input_schema["properties"]["pulse_id"]["type"] == "integer"
    notify = tools["send_notification"].input_schema["properties"]["priority"]
    assert notify["enum"] == ["silent", "normal", "critical"]


def test_schedule_pulse_creates_an_agent_pulse_at_the_parsed_time(reeve_home):
    before = datetime.now(UTC)
    result = call(
        reeve_home,
        "schedule_pulse",
        {
            "prompt": "Check whether the build went green",
            "when": "in 2 hours",
            "priority": "high",
            "sticky_notes": ["the build is on CI", "tell the user if red"],
            "tags": ["ci", "follow-up"],
        },
    )
    assert not result.is_error, text(result)
    [pulse] = pulses(reeve_home)
    assert result.structured_content["id"] == pulse["id"]
    assert pulse["prompt"] == "Check whether the build went green"
    assert pulse["status"] == "pending" and pulse["priority"] == "high" and pulse["source"] == "agent"
    assert json.loads(pulse["sticky_notes"]) == ["the build is on CI", "tell the user if red"]
    assert json.loads(pulse["tags"]) == ["ci", "follow-up"]
    assert pulse["session_id"] == "" and pulse["parent_id"] is None
    due = stored_time(pulse["scheduled_at"])
    assert before + timedelta(hours=2) <= due <= datetime.now(UTC) + timedelta(hours=2)


def test_list_upcoming_pulses_shows_the_agents_pending_pulses_soonest_first(reeve_home):
    later = trigger(reeve_home, "later one", "--at", "in 3 hours", "--source", "agent")
    sooner = trigger(reeve_home, "sooner one", "--at", "in 1 hour", "--source", "agent")
    cancelled = trigger(reeve_home, "cancelled one", "--at", "in 2 hours", "--source", "agent")
    trigger(reeve_home, "the owner's", "--at", "in 30 minutes", "--source", "telegram")

    async def body(session):  # one server for the three calls (each server start costs ~2 s of CPU)
        return [
            await session.call_tool("cancel_pulse", {"pulse_id": cancelled}),
            await session.call_tool("list_upcoming_pulses", {}),
            await session.call_tool("list_upcoming_pulses", {"limit": 1}),
        ]

    cancel, result, limited = with_session(reeve_home, body)
    assert not cancel.is_error
    assert not result.is_error, text(result)
    listed = result.structured_content
    assert [p["id"] for p in listed["pulses"]] == [sooner, later]
    assert listed["pending"] == 2 and listed["time_zone"] == "UTC"
    assert json.loads(text(result))["pulses"][0]["prompt"] == "sooner one"
    limited = limited.structured_content
    assert [p["id"] for p in limited["pulses"]] == [sooner]


def test_cancel_and_reschedule_change_a_pending_pulse(reeve_home):
    moved = trigger(reeve_home, "move me", "--at", "in 1 hour", "--source", "agent")
    dropped = trigger(reeve_home, "drop me", "--at", "in 1 hour", "--source", "agent")

    async def body(session):
        return (
            await session.call_tool(
                "reschedule_pulse", {"pulse_id": moved, "when": "2031-05-04T09:30:00+02:00"}
            ),
            await session.call_tool("cancel_pulse", {"pulse_id": dropped}),
        )

    rescheduled, cancelled = with_session(reeve_home, body)
    assert not rescheduled.is_error and not cancelled.is_error
    rows = {p["id"]: p for p in pulses(reeve_home)}
    assert stored_time(rows[moved]["scheduled_at"]) == datetime(2031, 5, 4, 7, 30, tzinfo=UTC)
    assert rows[moved]["status"] == "pending"
    assert rows[dropped]["status"] == "cancelled"
    assert cancelled.structured_content["status"] == "cancelled"


def test_the_agent_can_neither_see_nor_cancel_nor_move_the_owners_pulses(reeve_home):
    urgent = trigger(reeve_home, "URGENT: please call the doctor", "--source", "telegram")
    owners = trigger(reeve_home, "the owner's reminder", "--at", "in 1 hour", "--source", "api")
    token = claim_by_hand(reeve_home, trigger(reeve_home, "the running pulse", "--source", "agent"))

    async def body(session):  # a run's tools, with its run token
        return (
            await session.call_tool("list_upcoming_pulses", {}),
            await session.call_tool("cancel_pulse", {"pulse_id": urgent}),
            await session.call_tool("reschedule_pulse", {"pulse_id": owners, "when": "9000-01-01T00:00:00"}),
        )

    listed, cancel, move = with_session(reeve_home, body, REEVE_RUN_TOKEN=token)
    assert listed.structured_content["pulses"] == [] and listed.structured_content["pending"] == 0
    assert cancel.is_error and f"pulse #{urgent} is the user's, not yours" in text(cancel)
    assert move.is_error and "ask the user instead" in text(move)
    rows = {p["id"]: p for p in pulses(reeve_home)}
    assert rows[urgent]["status"] == rows[owners]["status"] == "pending"
    assert stored_time(rows[owners]["scheduled_at"]).year < 9000


def test_bad_arguments_come_back_as_tool_errors_and_the_server_keeps_serving(reeve_home):
    done = trigger(reeve_home, "already cancelled", "--at", "in 1 hour", "--source", "agent")
    calls = [
        ("schedule_pulse", {"prompt": "x", "when": "when pigs fly"}, ["'when pigs fly'", "in N minutes"]),
        ("schedule_pulse", {"prompt": "x", "when": "march"}, ["'march'", "without its day", "in N minutes"]),
        ("schedule_pulse", {"prompt": "x", "priority": "urgent"}, ["priority", "high"]),
        ("schedule_pulse", {"when": "now"}, ["prompt"]),
        ("schedule_pulse", {"prompt": ""}, ["prompt"]),
        ("schedule_pulse", {"prompt": "x", "tags": "not-a-list"}, ["tags"]),
        ("schedule_pulse", {"prompt": "x", "resume_current_session": True}, ["run token"]),
        ("schedule_pulse", {"prompt": "x", "model": "--dangerously-skip-permissions"}, ["model", "pattern"]),
        ("schedule_pulse", {"prompt": "x", "timeout_seconds": 5}, ["timeout_seconds", "10"]),
        (
            "create_routine",
            {"name": "r", "schedule": "@daily", "prompt": "x", "model": "-x"},
            ["model", "pattern"],
        ),
        ("cancel_pulse", {"pulse_id": 4242}, ["no pulse #4242", "list_upcoming_pulses"]),
        ("cancel_pulse", {"pulse_id": "abc"}, ["pulse_id"]),
        ("reschedule_pulse", {"pulse_id": 4242, "when": "in 5 minutes"}, ["no pulse #4242"]),
        ("reschedule_pulse", {"pulse_id": done, "when": "someday maybe"}, ["'someday maybe'"]),
        ("list_upcoming_pulses", {"limit": 0}, ["limit"]),
        ("send_notification", {"message": "hello", "priority": "loud"}, ["priority"]),
        ("no_such_tool", {}, ["no_such_tool"]),
    ]

    async def body(session):
        await session.call_tool("cancel_pulse", {"pulse_id": done})
        results = [await session.call_tool(name, args) for name, args, _ in calls]
        results.append(await session.call_tool("cancel_pulse", {"pulse_id": done}))
        results.append(await session.call_tool("reschedule_pulse", {"pulse_id": done, "when": "tomorrow"}))
        still_serving = await session.call_tool("schedule_pulse", {"prompt": "fine", "when": "in 1 minute"})
        return results, still_serving

    results, still_serving = with_session(reeve_home, body)
    expectations = [words for _, _, words in calls] + [["cancelled", "pending"], ["cancelled", "pending"]]
    for result, words in zip(results, expectations, strict=True):
        assert result.is_error, text(result)
        message = text(result)
        for word in words:
            assert word in message, message
        assert "Traceback" not in message
    assert not still_serving.is_error
    assert [(p["prompt"], p["status"]) for p in pulses(reeve_home)] == [
        ("already cancelled", "cancelled"),
        ("fine", "pending"),
    ]


def test_an_unknown_argument_is_refused_naming_the_known_ones_and_nothing_is_done(reeve_home):
    pending = trigger(reeve_home, "keep me", "--at", "in 1 hour")

    async def body(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        return tools, [
            await session.call_tool("schedule_pulse", {"prompt": "Water the plants", "at_time": "in 3 days"}),
            await session.call_tool("cancel_pulse", {"pulse_id": pending, "force": True}),
            await session.call_tool("list_upcoming_pulses", {"limit": 5, "status": "all"}),
        ]

    tools, (scheduled, cancelled, listed) = with_session(reeve_home, body)
    assert all(tool.input_schema["additionalProperties"] is False for tool in tools.values())
    assert scheduled.is_error and "'at_time'" in text(scheduled)
    assert "prompt, when, priority, sticky_notes, tags, resume_current_session" in text(scheduled)
    assert cancelled.is_error and "'force'" in text(cancelled) and "pulse_id" in text(cancelled)
    assert listed.is_error and "'status'" in text(listed) and "limit" in text(listed)
    # Nothing was scheduled "now" and the pending pulse is still pending.
    assert [(p["id"], p["status"]) for p in pulses(reeve_home)] == [(pending, "pending")]


def claim_by_hand(home, pulse_id: int) -> str:
    """Mark the pulse as run by worker w:1 (attempt 1) and return that run's token."""
    home.query(
        "UPDATE pulses SET status='processing', lease_owner='w:1', attempt_count=1, lease_expires_at=?, "
        "claim_nonce='0f8fad5bd9cb469fa16570867728950e' WHERE id=?",
        ((datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"), pulse_id),
    )
    code = (
        "from pulses.api.tokens import run_token; from pulses.models import Pulse; "
        f"print(run_token(Pulse.objects.get(pk={pulse_id}), worker='w:1'))"
    )
    return home.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


def test_a_pulse_scheduled_during_a_run_resumes_its_session_and_names_its_parent(reeve_home):
    running = trigger(reeve_home, "the running pulse", "--session", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
    token = claim_by_hand(reeve_home, running)

    async def body(session):  # one server, as the agent's run has one
        result = await session.call_tool(
            "schedule_pulse", {"prompt": "continue", "when": "in 10 minutes", "resume_current_session": True}
        )
        assert not result.is_error, text(result)
        follow_up = pulses(reeve_home)[-1]
        assert follow_up["session_id"] == "7c9e6679-7425-40de-944b-e07fc1f90ae7"
        assert follow_up["parent_id"] == running and follow_up["source"] == "agent"
        plain = await session.call_tool("schedule_pulse", {"prompt": "fresh start"})
        assert plain.structured_content["session_id"] == ""
        assert plain.structured_content["parent_id"] == running
        # The run ends: its token is refused from then on, by the tools and by the API alike.
        reeve_home.query("UPDATE pulses SET status='completed' WHERE id=?", (running,))
        return await session.call_tool("schedule_pulse", {"prompt": "too late"})

    late = with_session(reeve_home, body, REEVE_RUN_TOKEN=token)
    assert late.is_error and "run ends" in text(late)
    assert reeve_home.live.request("GET", "/api/agent/pulses", token=token)[0] == 401
    assert [p["prompt"] for p in pulses(reeve_home)][-1] == "fresh start"


def test_send_notification_without_telegram_configured_is_a_tool_error(reeve_home):
    result = call(reeve_home, "send_notification", {"message": "hello"})
    assert result.is_error
    assert "TELEGRAM_BOT_TOKEN" in text(result) and "not configured" in text(result)


def test_send_notification_is_queued_at_once_and_the_listener_sends_it_with_its_priority(
    own_home, fake_telegram
):
    async def body(session):
        return [
            await session.call_tool("send_notification", {"message": "quiet news", "priority": "silent"}),
            await session.call_tool("send_notification", {"message": "plain news"}),
            await session.call_tool(
                "send_notification", {"message": "the server is down", "priority": "critical"}
            ),
        ]

    results = with_session(own_home, body, web_env=fake_telegram.env(777))
    assert [r.is_error for r in results] == [False, False, False], [text(r) for r in results]
    first = results[0].structured_content
    assert first == {"queued": True, "id": first["id"], "messages": 1, "priority": "silent"}
    assert fake_telegram.calls_to("sendMessage") == []  # the listener sends, not the web process
    listener = own_home.start("run_telegram_listener", "--poll-timeout", "5", **fake_telegram.env(777))
    fake_telegram.wait_for(lambda: len(fake_telegram.calls_to("sendMessage")) >= 3, what="three messages")
    sent = [
        (
            call.params["text"],
            str(call.params.get("disable_notification")).lower(),
            str(call.params["chat_id"]),
        )
        for call in fake_telegram.calls_to("sendMessage")
    ]
    assert sent == [
        ("quiet news", "true", "777"),
        ("plain news", "false", "777"),
        ("🚨 the server is down", "false", "777"),
    ]
    listener.terminate()
    listener.wait(timeout=60)


def test_a_notification_telegram_refuses_is_queued_and_closed_as_failed_by_the_listener(
    own_home, fake_telegram
):
    fake_telegram.fail(400, description="Bad Request: chat not found", methods=("sendMessage",))
    result = call(own_home, "send_notification", {"message": "hello"}, web_env=fake_telegram.env(777))
    assert not result.is_error and result.structured_content["queued"] is True
    listener = own_home.start("run_telegram_listener", "--poll-timeout", "5", **fake_telegram.env(777))
    own_home.wait_for(
        lambda: (
            own_home.query("SELECT state, detail FROM telegram_notifications")
            == [("failed", "Chat not found")]
        ),
        timeout=60,
        what="the notification closed as failed",
    )
    listener.terminate()
    listener.wait(timeout=60)


def test_only_the_protocol_reaches_stdout_and_logs_go_to_stderr_and_the_log_file(reeve_home):
    messages = [
        initialize_request(client="raw"),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "schedule_pulse", "arguments": {"prompt": "raw", "when": "in 1 hour"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "schedule_pulse", "arguments": {"prompt": "raw", "when": "blah blah"}},
        },
    ]
    api(reeve_home)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "mcp_server"],
        cwd=ROOT,
        env=server_env(reeve_home, LOG_LEVEL="DEBUG"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(reeve_home.path / "raw.stderr", "w"),  # noqa: SIM115
        text=True,
    )
    reeve_home.children.append(proc)
    lines = []
    for message in messages:
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        if "id" in message:  # a request: read until its response (the server may not print more)
            lines.append(json.loads(proc.stdout.readline()))
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stdout.read() == ""
    stderr = (reeve_home.path / "raw.stderr").read_text()
    assert [line.get("id") for line in lines] == [1, 2, 3]
    assert all(line["jsonrpc"] == "2.0" for line in lines)
    assert lines[1]["result"]["isError"] is False and lines[2]["result"]["isError"] is True
    assert "mcp_tool_done path=/api/agent/pulses status=200 token_from=desk" in stderr
    log_file = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert "mcp_tool_done" in log_file and "mcp_tool_refused" in log_file
    assert "agent_pulse_scheduled" in log_file  # written by the web process, which the server called


def first_and_follow_up(home) -> tuple[dict[str, Any], dict[str, Any]]:
    first, follow_up = pulses(home)
    assert first["status"] == "completed", home.query("SELECT error_message FROM pulses")
    assert follow_up["status"] == "completed"
    assert follow_up["source"] == "agent" and follow_up["parent_id"] == first["id"]
    assert json.loads(follow_up["tags"]) == ["follow-up"]
    assert first["session_id"] and follow_up["session_id"] == first["session_id"]
    return first, follow_up


def test_an_agent_run_by_the_worker_schedules_a_follow_up_that_resumes_its_session(reeve_home):
    api(reeve_home)
    reeve_home.manage("mcp_config", "--write")  # the fake agent starts the server from the Desk's .mcp.json
    first_id = trigger(reeve_home, "Look at the inbox mode=mcp_schedule:2")
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.wait_for(
        lambda: [p["status"] for p in pulses(reeve_home)] == ["completed", "completed"],
        timeout=120,
        interval=0.2,
        what="the first pulse and its follow-up to complete",
    )
    first, follow_up = first_and_follow_up(reeve_home)
    assert first["id"] == first_id
    log = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert f"agent_pulse_scheduled id={follow_up['id']} parent={first_id} resumes_session=True" in log
    # The agent saw a run token and the API's URL, and nothing that names the database or a secret.
    env = reeve_home.agent_starts()[0]["env"]
    assert env["REEVE_RUN_TOKEN"].startswith(f"reeve-run.{first_id}.1.")
    assert env["REEVE_API_URL"] == reeve_home.live.url
    assert not set(SERVER_ENV_DROPPED) & set(env)
    assert not [v for v in env.values() if str(reeve_home.db_path) in v or "postgres" in v]
    starts = reeve_home.agent_starts()
    assert [s["pulse_id"] for s in starts] == [str(first_id), str(follow_up["id"])]
    assert starts[0]["resume"] is None
    # The follow-up ran later, resuming the session the first run announced.
    assert starts[1]["resume"] == first["session_id"]
    assert f"--resume={first['session_id']}" in starts[1]["argv"]
    assert starts[1]["t"] - starts[0]["t"] >= 2
    tool_result = reeve_home.query("SELECT stdout_tail FROM pulse_attempts WHERE pulse_id=?", (first_id,))[0][
        0
    ]
    assert "mcp__reeve__schedule_pulse" in tool_result and '"is_error": false' in tool_result
    worker.terminate()
    assert worker.wait(timeout=60) == 0


def test_the_server_finds_the_running_pulse_through_its_ancestors_when_the_client_trims_its_env(reeve_home):
    api(reeve_home)
    first_id = trigger(reeve_home, "Look at the calendar mode=mcp_schedule_bare")
    reeve_home.manage("run_pulse_worker", "--once", timeout=180)
    first, follow_up = first_and_follow_up(reeve_home)
    starts = reeve_home.agent_starts()
    assert [s["pulse_id"] for s in starts] == [str(first_id), str(follow_up["id"])]
    assert starts[1]["resume"] == first["session_id"]
    assert f"--resume={first['session_id']}" in starts[1]["argv"]
    log = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert f"agent_pulse_scheduled id={follow_up['id']} parent={first_id} resumes_session=True" in log
