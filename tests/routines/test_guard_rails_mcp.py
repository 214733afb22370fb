"""The agent's guard rails as it meets them: tool errors through the real MCP client (the official SDK's
stdio client, `manage.py mcp_server`, the API in gunicorn), naming the limit and its setting."""

from __future__ import annotations

import pytest

from tests.tools.test_mcp_server import agent_token_home, own_home, text, with_session  # noqa: F401  (the fixture too)

pytestmark = pytest.mark.slow


def test_over_the_hourly_pulse_cap_schedule_pulse_is_a_tool_error_naming_the_setting(own_home):  # noqa: F811
    async def body(session):
        return [
            await session.call_tool("schedule_pulse", {"prompt": f"follow up {n}", "when": "in 1 hour"})
            for n in range(3)
        ]

    results = with_session(own_home, body, web_env={"AGENT_PULSES_PER_HOUR": "2"})

    assert [result.is_error for result in results] == [False, False, True]
    message = text(results[2])
    assert "at most 2 pulses an hour" in message and "AGENT_PULSES_PER_HOUR" in message
    assert own_home.query("SELECT COUNT(*) FROM pulses WHERE source = 'agent'") == [(2,)]
