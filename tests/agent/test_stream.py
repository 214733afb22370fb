import json

import pytest

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


@pytest.mark.parametrize(
    ("cost", "turns"),
    [("1e999", str(10**30)), ("-1", "-3"), ("NaN", "true"), ("1e7", "2147483648"), ('"0.5"', "2.5")],
)
def test_numbers_outside_their_range_are_dropped_and_the_answer_is_kept(cost, turns):
    """`total_cost_usd: 1e999` (infinity) made GET /api/pulses/N a 500 and `num_turns: 10**30`
    overflowed the attempt's column, losing the answer: such numbers are not measurements."""
    reader = StreamReader()
    reader.feed(
        f'{{"type": "result", "result": "the answer", "session_id": "{SESSION}", '
        f'"total_cost_usd": {cost}, "num_turns": {turns}}}'
    )
    summary = reader.summary
    assert (summary.result_text, summary.cost_usd, summary.num_turns) == ("the answer", None, None)


def test_numbers_within_their_range_are_kept():
    reader = StreamReader()
    reader.feed('{"type": "result", "result": "ok", "total_cost_usd": 0, "num_turns": 2147483647}')
    assert (reader.summary.cost_usd, reader.summary.num_turns) == (0.0, 2147483647)
