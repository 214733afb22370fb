"""The agent's routine tools (create_routine, list_routines, pause_routine, delete_routine) driven by
the official MCP SDK's stdio client against `manage.py mcp_server`, which reaches Reeve through the
real API (gunicorn on loopback) with an agent-scoped token."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.tools.test_mcp_server import agent_token_home, own_home, text, with_session  # noqa: F401

pytestmark = pytest.mark.slow
ROUTINE_TOOLS = ("create_routine", "list_routines", "pause_routine", "delete_routine")


def routines(home) -> dict[str, tuple]:
    rows = home.query("SELECT name, schedule, timezone, source, enabled, paused_reason FROM pulse_routines")
    return {row[0]: row[1:] for row in rows if row[0] != "hourly-prompt"}


def test_the_agent_creates_lists_pauses_and_deletes_its_routines(own_home):  # noqa: F811
    own_home.manage("routine", "add", "owners", "@daily", "The owner's own")

    async def body(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        created = await session.call_tool(
            "create_routine",
            {
                "name": "morning-brief",
                "schedule": "0 8 * * 1-5",
                "prompt": "Brief the user on today",
                "timezone": "Europe/Berlin",
                "tags": ["brief"],
                "active_from": "07:00",
                "active_until": "09:00",
            },
        )
        listed = await session.call_tool("list_routines", {})
        paused = await session.call_tool("pause_routine", {"name": "owners"})
        refused = await session.call_tool("delete_routine", {"name": "owners"})
        deleted = await session.call_tool("delete_routine", {"name": "morning-brief"})
        unknown = await session.call_tool("pause_routine", {"name": "morning-brief"})
        return tools, created, listed, paused, refused, deleted, unknown

    tools, created, listed, paused, refused, deleted, unknown = with_session(own_home, body)
    for name in ROUTINE_TOOLS:
        assert tools[name].description and tools[name].input_schema["additionalProperties"] is False
    assert tools["create_routine"].input_schema["required"] == ["name", "schedule", "prompt"]
    assert "every 30 minutes" in tools["create_routine"].input_schema["properties"]["schedule"]["description"]

    assert not created.is_error, text(created)
    routine = created.structured_content
    assert (routine["created_by"], routine["timezone"], routine["active_window"]) == (
        "agent", "Europe/Berlin", "07:00-09:00",
    )  # fmt: skip
    assert routine["schedule_text"] == "At 08:00 on Monday through Friday"
    first = datetime.fromisoformat(routine["next_fire_at"])
    assert (first.hour, first.minute, first.utcoffset().total_seconds()) == (8, 0, 3600)

    assert not listed.is_error, text(listed)
    names = [r["name"] for r in listed.structured_content["routines"]]
    assert names == ["hourly-prompt", "morning-brief", "owners"]

    assert not paused.is_error and paused.structured_content["enabled"] is False
    assert (
        refused.is_error
        and "only the user can delete it" in text(refused)
        and "pause_routine" in text(refused)
    )
    assert not deleted.is_error and deleted.structured_content["deleted"] is True
    assert unknown.is_error and "no routine named 'morning-brief'" in text(unknown)
    left = routines(own_home)
    assert list(left) == ["owners"]
    schedule, zone, source, enabled, reason = left["owners"]
    assert (schedule, zone, source, bool(enabled), reason) == (
        "@daily",
        "",
        "owner",
        False,
        "paused by the agent",
    )


def test_bad_input_and_guard_rails_are_tool_errors_naming_the_field_and_nothing_is_stored(own_home):  # noqa: F811
    good = {"name": "x", "schedule": "0 8 * * *", "prompt": "Do it"}
    calls = [
        ({"schedule": "61 * * * *"}, ["schedule", "'61 * * * *' is not a valid cron expression"]),
        ({"timezone": "Mars/Olympus"}, ["timezone", "unknown time zone 'Mars/Olympus'"]),
        ({"schedule": "every 30 seconds"}, ["schedule", "under one minute"]),
        ({"prompt": ""}, ["prompt"]),
        ({"prompt": "   "}, ["prompt"]),
        ({"active_from": "08:00", "active_until": "08:00"}, ["active_until", "is empty"]),
        ({"active_from": "eight", "active_until": "09:00"}, ["active_from", "is not a time of day"]),
        ({"schedule": "*/5 * * * *"}, ["limit", "every 15 minutes", "AGENT_ROUTINE_MIN_INTERVAL_MINUTES"]),
        ({"when": "daily"}, ["'when'", "schedule"]),
    ]

    async def body(session):
        results = [await session.call_tool("create_routine", {**good, **change}) for change, _ in calls]
        first = await session.call_tool("create_routine", {**good, "name": "first"})
        over_cap = await session.call_tool("create_routine", {**good, "name": "second"})
        return results, first, over_cap

    results, first, over_cap = with_session(own_home, body, web_env={"AGENT_MAX_ACTIVE_ROUTINES": "1"})
    for result, (change, words) in zip(results, calls, strict=True):
        assert result.is_error, (change, text(result))
        assert all(word in text(result) for word in words), (change, text(result))
    assert not first.is_error, text(first)
    assert over_cap.is_error and "at most 1 of your routines may be active" in text(over_cap)
    assert "AGENT_MAX_ACTIVE_ROUTINES" in text(over_cap)
    assert list(routines(own_home)) == ["first"]
