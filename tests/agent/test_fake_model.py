"""tests/support/fake_model.py, the stand-in Messages API, over HTTP as the CLI talks to it (the real
CLI against it: tests/agent/test_real_claude.py)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.support.fake_model import DONE, SIDE_ANSWER, FakeModel, reeve_tool, text

pytestmark = pytest.mark.database_independent


@pytest.fixture
def model():
    fake = FakeModel().start()
    yield fake
    fake.stop()


def post(model: FakeModel, body: dict, *, key: str | None = None, path: str = "/v1/messages?beta=true"):
    """(status, headers, body: parsed JSON, or the SSE events as a list of (name, data))."""
    request = urllib.request.Request(
        model.url + path,
        data=json.dumps(body).encode(),
        headers={"x-api-key": key or model.key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read().decode()
    if headers.get("content-type") == "text/event-stream":
        events = [chunk.split("\n", 1) for chunk in raw.strip().split("\n\n")]
        return (
            status,
            headers,
            [(n.removeprefix("event: "), json.loads(d.removeprefix("data: "))) for n, d in events],
        )
    return status, headers, json.loads(raw)


def conversation(*turns: dict, stream: bool = True) -> dict:
    return {"model": "m", "stream": stream, "tools": [{"name": "ToolSearch"}], "messages": list(turns)}


USER = {"role": "user", "content": "hello"}
ASSISTANT = {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}


def test_each_turn_of_the_conversation_gets_its_step_streamed_or_plain(model):
    model.steps = [reeve_tool("schedule_pulse", prompt="p"), text("Scheduled.")]

    _, _, events = post(model, conversation(USER))
    _, _, plain = post(model, conversation(USER, ASSISTANT, USER, stream=False))
    _, _, beyond = post(model, conversation(USER, ASSISTANT, USER, ASSISTANT, USER, stream=False))

    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    [opened] = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert opened["name"] == "mcp__reeve__schedule_pulse" and opened["id"].startswith("toolu_")
    [delta] = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert json.loads(delta["partial_json"]) == {"prompt": "p"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert plain["content"] == [{"type": "text", "text": "Scheduled."}] and plain["stop_reason"] == "end_turn"
    assert beyond["content"][0]["text"] == DONE
    assert [r.step for r in model.conversation] == [0, 1, 2]


def test_side_requests_and_token_counts_are_answered_and_everything_is_recorded(model):
    _, _, title = post(model, {"model": "m", "messages": [USER]})
    status, _, counted = post(model, {"messages": [USER]}, path="/v1/messages/count_tokens")
    missing, _, _ = post(model, {}, path="/v1/elsewhere")

    assert title["content"][0]["text"] == SIDE_ANSWER
    assert status == 200 and counted["input_tokens"] > 0
    assert missing == 404
    assert [r.status for r in model.requests] == [200, 200, 404] and model.conversation == []


def test_a_key_not_accepted_is_a_401(model):
    status, _, body = post(model, conversation(USER), key="sk-wrong")

    assert status == 401 and body["error"]["type"] == "authentication_error"
    model.valid_keys.add("sk-wrong")
    assert post(model, conversation(USER), key="sk-wrong")[0] == 200


def test_a_usage_limit_is_a_429_with_the_unified_headers_until_its_reset(model):
    reset_at = time.time() + 1
    model.set_usage_limit(reset_at, claim="five_hour")

    status, headers, body = post(model, conversation(USER))

    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    assert headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert int(headers["anthropic-ratelimit-unified-reset"]) >= int(time.time())
    assert headers["anthropic-ratelimit-unified-representative-claim"] == "five_hour"
    time.sleep(max(0.0, reset_at - time.time()) + 0.05)
    assert post(model, conversation(USER))[0] == 200
