import json

from pulses.agent.stream import StreamReader, parse_line

SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_parse_line_skips_escape_prefixes_and_noise():
    assert parse_line('\x1b[2K{"type": "result"}') == {"type": "result"}
    assert parse_line("thinking...") is None
    assert parse_line("{broken") is None
    assert parse_line("[1, 2]") is None


def test_reader_folds_init_tool_use_and_result():
    seen = []
    reader = StreamReader(on_session=seen.append)
    events = [
        {"type": "system", "subtype": "init", "session_id": SESSION},
        {
            "type": "assistant",
            "session_id": SESSION,
            "message": {"content": [{"type": "tool_use", "name": "Bash"}, {"type": "text"}]},
        },
        {
            "type": "result",
            "is_error": True,
            "result": "nope",
            "errors": ["bad thing"],
            "session_id": SESSION,
            "total_cost_usd": 0.5,
            "num_turns": 3,
        },
    ]
    for event in events:
        reader.feed(json.dumps(event))
    summary = reader.summary
    assert seen == [SESSION]
    assert (summary.tool_uses, summary.is_error, summary.errors, summary.cost_usd, summary.num_turns) == (
        1,
        True,
        ["bad thing"],
        0.5,
        3,
    )


def test_a_session_id_the_agent_cli_would_not_accept_is_never_taken_from_the_stream():
    seen = []
    reader = StreamReader(on_session=seen.append)
    for session_id in ("--mcp-config=evil.json", "s1", 42):
        reader.feed(json.dumps({"type": "system", "subtype": "init", "session_id": session_id}))
    reader.feed(json.dumps({"type": "result", "result": "ok", "session_id": "-x"}))
    assert (seen, reader.summary.session_id, reader.summary.result_text) == ([], "", "ok")
