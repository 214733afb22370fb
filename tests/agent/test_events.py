"""The run's live tail as the agent side makes it: stream-json events -> one short line each, handed to
`Executor.run(on_event=...)` while the agent still runs."""

import json
import time

import pytest

from pulses.agent import events
from pulses.agent.events import EventSummarizer, one_line
from pulses.agent.executor import AgentRequest, Executor
from pulses.agent.stream import StreamReader
from pulses.limits import RUN_TAIL_SUMMARY_CHARS
from tests.support.reeve_processes import FAKE_AGENT_COMMAND

pytestmark = pytest.mark.database_independent

SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"
TOOL_USE = {
    "type": "assistant",
    "message": {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look at the notes."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "Bash",
                "input": {"command": "ls -la notes/", "description": "List the notes"},
            },
        ],
    },
    "parent_tool_use_id": None,
    "session_id": SESSION,
}
TOOL_RESULT = {
    "type": "user",
    "message": {
        "role": "user",
        "content": [
            {"tool_use_id": "toolu_01", "type": "tool_result", "content": "a.md\nb.md", "is_error": False}
        ],
    },
    "session_id": SESSION,
}


def lines(*stream_events):
    summarizer = EventSummarizer()
    return [(e.kind, e.summary) for event in stream_events for e in summarizer.events(event)]


def test_a_tool_call_shows_its_name_and_input_and_its_result_names_the_tool():
    assert lines(TOOL_USE, TOOL_RESULT) == [
        ("text", "Let me look at the notes."),
        ("tool", "Bash: ls -la notes/"),
        ("tool_result", "Bash → a.md b.md"),
    ]


def test_errors_show_as_errors_a_failed_tool_an_api_retry_and_a_failed_result():
    failed_tool = json.loads(json.dumps(TOOL_RESULT))
    failed_tool["message"]["content"][0].update(is_error=True, content=[{"type": "text", "text": "denied"}])
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 2,
        "error_status": 529,
        "error": "overloaded",
    }
    result = {"type": "result", "is_error": True, "result": "I could not finish", "session_id": SESSION}
    assert lines(TOOL_USE, failed_tool, retry, result)[2:] == [
        ("error", "Bash failed: denied"),
        ("error", "API retry 2: 529 overloaded"),
        ("error", "the run failed: I could not finish"),
    ]


def test_an_input_without_a_known_field_is_shown_as_compact_json_and_the_answer_as_a_result():
    call = {
        "type": "assistant",
        "message": {"content": [{"type": "tool_use", "name": "mcp__reeve__x", "input": {"n": 1}}]},
    }
    done = {"type": "result", "subtype": "success", "is_error": False, "result": "All done.\nBye"}
    init = {"type": "system", "subtype": "init", "session_id": SESSION, "model": "claude-x"}
    assert lines(init, call, done) == [
        ("start", "session started (model claude-x)"),
        ("tool", 'mcp__reeve__x: {"n":1}'),
        ("result", "All done. Bye"),
    ]


@pytest.mark.parametrize(
    "value",
    ["x" * 10_000, "line\none\x00two", "half an emoji: \ud83d", {"deep": ["x" * 5000]}, 12, ["a", None]],
)
def test_a_summary_is_one_storable_line_within_the_limit(value):
    text = one_line(value)
    assert len(text) <= RUN_TAIL_SUMMARY_CHARS
    assert "\n" not in text and "\x00" not in text
    text.encode("utf-8")  # no lone surrogate left


def test_whatever_shape_the_stream_has_the_summarizer_never_raises():
    odd = [
        {"type": "assistant", "message": "text"},
        {
            "type": "assistant",
            "message": {"content": [None, 3, {"type": "tool_use", "name": 5, "input": "x"}]},
        },
        {
            "type": "user",
            "message": {"content": [{"type": "tool_result", "tool_use_id": [], "content": {"a": 1}}]},
        },
        {"type": "result", "errors": "nope", "is_error": True},
        {"type": "system", "subtype": "init", "model": None},
    ]
    assert [kind for kind, _ in lines(*odd)] == ["tool", "tool_result", "error", "start"]


def test_a_callback_that_fails_stops_the_tail_but_not_the_reading(caplog):
    def broken(event):
        raise RuntimeError("a bug in the tail")

    reader = StreamReader(on_event=broken)
    reader.feed(json.dumps(TOOL_USE))
    reader.feed(json.dumps({"type": "result", "result": "fine", "session_id": SESSION}))
    assert reader.summary.result_text == "fine" and reader.summary.tool_uses == 1
    assert "agent_event_callback_failed" in caplog.text


def test_the_executor_hands_each_tool_call_over_while_the_agent_still_runs(fake_agent):
    seen = []
    executor = Executor(command=FAKE_AGENT_COMMAND, desk=fake_agent / "desk", timeout=30)
    started = time.monotonic()
    outcome = executor.run(
        AgentRequest(prompt="mode=tool_calls:4:0.25", pulse_id=7),
        on_event=lambda event: seen.append((time.monotonic() - started, event)),
    )
    ended = time.monotonic() - started
    assert outcome.success, outcome.error
    tools = [(at, e.summary) for at, e in seen if e.kind == events.TOOL]
    assert [summary for _, summary in tools] == [f"Bash: echo step {n}" for n in range(1, 5)]
    assert tools[0][0] < ended - 0.5  # the first came while the agent was still at work
    assert [e.kind for _, e in seen][-1] == events.RESULT
