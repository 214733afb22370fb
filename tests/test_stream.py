import json

from pulses.stream import StreamReader, parse_line


def test_parse_line_skips_escape_prefixes_and_noise():
    assert parse_line('\x1b[2K{"type": "result"}') == {"type": "result"}
    assert parse_line("thinking...") is None
    assert parse_line("{broken") is None
    assert parse_line("[1, 2]") is None


def test_reader_folds_init_tool_use_and_result():
    seen = []
    reader = StreamReader(on_session=seen.append)
    events = [
        {"type": "system", "subtype": "init", "session_id": "s1"},
        {
            "type": "assistant",
            "session_id": "s1",
            "message": {"content": [{"type": "tool_use", "name": "Bash"}, {"type": "text"}]},
        },
        {
            "type": "result",
            "is_error": True,
            "result": "nope",
            "errors": ["bad thing"],
            "session_id": "s1",
            "total_cost_usd": 0.5,
            "num_turns": 3,
        },
    ]
    for event in events:
        reader.feed(json.dumps(event))
    summary = reader.summary
    assert seen == ["s1"]
    assert (summary.tool_uses, summary.is_error, summary.errors, summary.cost_usd, summary.num_turns) == (
        1,
        True,
        ["bad thing"],
        0.5,
        3,
    )
