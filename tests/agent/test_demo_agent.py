"""The demo agent (`HAPI_COMMAND=demo`): a real program speaking stream-json, run by the real executor."""

from __future__ import annotations

import pytest

from pulses.agent.command import agent_command, setup_problem
from pulses.agent.executor import AgentRequest, Executor
from pulses.answers import NOTHING_TO_SAY

pytestmark = pytest.mark.database_independent  # the executor and the demo agent: no database


@pytest.fixture
def demo(tmp_path) -> Executor:
    desk = tmp_path / "desk"
    desk.mkdir()
    return Executor(command="demo", desk=desk, timeout=30)


def test_demo_is_one_setting_that_needs_nothing_installed(tmp_path):
    argv = agent_command("demo")
    assert argv[1:3] == ["-S", argv[2]] and argv[2].endswith("pulses/agent/demo_agent.py")
    assert setup_problem("demo", desk=tmp_path) == ""


def test_the_demo_agent_answers_a_telegram_greeting_and_resumes_its_session(demo):
    first = demo.run(AgentRequest(prompt="Telegram message from Ada Lovelace: hello there"))
    assert first.success and first.session_id
    assert first.result_text.startswith("Hello! I am Reeve's demo agent")
    assert "HAPI_COMMAND" in first.result_text  # it says how to get a real agent

    again = demo.run(AgentRequest(prompt="what time is it?", session_id=first.session_id))
    assert again.success and again.session_id == first.session_id
    assert again.result_text.startswith("It is ")


def test_the_demo_agent_has_nothing_to_say_to_the_heartbeat_and_fails_when_asked(demo):
    heartbeat = demo.run(AgentRequest(prompt="Hourly heartbeat (morning). Review today's calendar."))
    assert heartbeat.success and heartbeat.result_text == NOTHING_TO_SAY

    failed = demo.run(AgentRequest(prompt="please fail"))
    assert not failed.success and "fails on purpose" in failed.error

    echoed = demo.run(AgentRequest(prompt="book a table", sticky_notes=("be brief",)))
    assert echoed.success and "«book a table»" in echoed.result_text
