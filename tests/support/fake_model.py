"""A stand-in for the Anthropic Messages API on 127.0.0.1, so the suite drives the real Claude Code (and
Hapi in front of it) through whole turns: point the CLI at it with `model.env()`
(ANTHROPIC_BASE_URL + ANTHROPIC_API_KEY) and it plays the model, as scripted by the test.

    model = FakeModel(steps=[
        load_tools("schedule_pulse"),                       # ToolSearch select:mcp__reeve__schedule_pulse
        reeve_tool("schedule_pulse", prompt="Water the plants", when="in 1 hour"),
        text("Scheduled."),
    ]).start()
    ... run the CLI with model.env() ...
    model.tool_results("mcp__reeve__schedule_pulse")       # what the CLI sent back for that call
    model.requests                                          # every request, as received
    model.stop()

What Claude Code 2.1.337 sends, and what this answers:
- POST /v1/messages?beta=true with `"stream": true` (or false): the main conversation (a request
  offering `tools`) is answered by the steps; any other (a title, a summary) by a short text. Streamed
  answers are the SSE events message_start, content_block_start/delta/stop (text_delta,
  input_json_delta), message_delta, message_stop; plain ones one JSON message.
- Which step answers: the number of assistant turns already in the request's `messages`, so the n-th
  model turn of a conversation gets `steps[n]` (a resumed conversation carries on where the earlier
  run stopped); past the end, `text(DONE)`. A step may also be a function of the `Request`,
  returning a step, for answers that depend on what came back.
- Deferred tools: today's CLI lists MCP tools by name only; the model loads them with its ToolSearch
  tool (`load_tools(...)`), then calls them. Step index counts that turn too.
- POST /v1/messages/count_tokens: a token count. Anything else: 404 with an API error body.
- A key not in `valid_keys` (x-api-key or `Authorization: Bearer`): 401 authentication_error
  (`valid_keys = None` accepts any key). The CLI retries a 401 by itself, for minutes.
- `set_usage_limit(reset_at)`: until `reset_at` (epoch seconds or an aware datetime), every request is
  a 429 rate_limit_error with `anthropic-ratelimit-unified-status: rejected` and
  `anthropic-ratelimit-unified-reset: <epoch>` (plus retry-after, and the representative claim when
  one is given); from then on, normal answers again. `clear_usage_limit()` ends it at once.
  `set_usage_warning(reset_at)` adds the `allowed_warning` headers to normal answers.

Run alone with `python -m tests.support.fake_model [--port N] [--steps steps.json]` (steps as JSON
lists of content blocks, as `Step.content` holds them); it prints its URL and key, and logs each
request on stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

DEFAULT_KEY = "sk-ant-test-reeve-fake-model"
DONE = "Done."
SIDE_ANSWER = "Reeve pulse"  # what a side request (a title, a summary) gets
REEVE_SERVER = "reeve"
MODEL = "claude-opus-5-5"


@dataclass(frozen=True)
class Step:
    """One model turn: its content blocks (text, and tool_use blocks with `name` and `input`)."""

    content: tuple[dict[str, Any], ...]

    @property
    def calls_tools(self) -> bool:
        return any(block["type"] == "tool_use" for block in self.content)


StepSource = Step | Callable[["Request"], Step]


def text(words: str) -> Step:
    """A turn that answers `words` and ends the run."""
    return Step(({"type": "text", "text": words},))


def tool(name: str, /, **arguments: Any) -> Step:
    """A turn that calls the tool `name` (as the CLI names it: `Bash`, `mcp__reeve__schedule_pulse`)."""
    return Step(({"type": "tool_use", "name": name, "input": arguments},))


def reeve_tool(name: str, /, **arguments: Any) -> Step:
    """A turn that calls Reeve's MCP tool `name` (`schedule_pulse`, ...)."""
    return tool(f"mcp__{REEVE_SERVER}__{name}", **arguments)


def load_tools(*names: str) -> Step:
    """A turn that loads Reeve's deferred MCP tools `names` with the CLI's ToolSearch, as today's
    model must before it can call them."""
    query = "select:" + ",".join(f"mcp__{REEVE_SERVER}__{name}" for name in names)
    return tool("ToolSearch", query=query)


@dataclass
class Request:
    """One request as the fake received it, with what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    status: int = 0
    step: int | None = None  # the index of the step that answered (main conversation only)
    answer: Step | None = None

    @property
    def api_key(self) -> str:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        bearer = lowered.get("authorization", "")
        return lowered.get("x-api-key") or bearer.removeprefix("Bearer ").strip()

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def is_conversation(self) -> bool:
        """The CLI's main loop (it offers the model its tools), not a side request."""
        return urlsplit(self.path).path == "/v1/messages" and bool(self.body.get("tools"))

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in self.body.get("tools") or [] if isinstance(t, dict)]

    @property
    def session_id(self) -> str:
        """The CLI's session, from the request's metadata ("" when it names none)."""
        try:
            return json.loads(self.body["metadata"]["user_id"]).get("session_id", "")
        except (KeyError, TypeError, ValueError):
            return ""

    @property
    def turns(self) -> int:
        """How many model turns the conversation already holds."""
        return sum(1 for m in self.messages if isinstance(m, dict) and m.get("role") == "assistant")

    def blocks(self, kind: str) -> list[dict[str, Any]]:
        """Every content block of type `kind` in the messages, in order."""
        found = []
        for message in self.messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                found += [b for b in content if isinstance(b, dict) and b.get("type") == kind]
        return found

    def last_result(self) -> str:
        """The text of the latest tool_result in the messages ("" when none): what the last call gave."""
        results = self.blocks("tool_result")
        return result_text(results[-1]) if results else ""

    def texts(self) -> list[str]:
        """Every text the messages hold: the prompt, the model's words, plain-string contents."""
        found = []
        for message in self.messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                found.append(content)
        return found + [b.get("text", "") for b in self.blocks("text")]


@dataclass
class FakeModel:
    """The fake Messages API (see the module's docstring). `start()` it; `stop()` it afterwards."""

    steps: list[StepSource] = field(default_factory=list)
    valid_keys: set[str] | None = field(default_factory=lambda: {DEFAULT_KEY})
    key: str = DEFAULT_KEY  # what `env()` hands the CLI
    port: int = 0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._limit: tuple[float, str] | None = None  # (reset epoch, representative claim or "")
        self._warning: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeModel:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._serve(self)

            do_GET = do_DELETE = do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="fake-model", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, *, key: str | None = None) -> dict[str, str]:
        """Environment for a CLI that should use this model (with `key`, or the accepted default)."""
        return {"ANTHROPIC_BASE_URL": self.url, "ANTHROPIC_API_KEY": key or self.key}

    # --- what a test switches ---------------------------------------------------------------------
    def set_usage_limit(self, reset_at: float | datetime, *, claim: str = "") -> None:
        """Answer 429 "usage limit reached" until `reset_at`; `claim` ("five_hour", "seven_day")
        is sent as anthropic-ratelimit-unified-representative-claim when given."""
        with self._cond:
            self._limit = (_epoch(reset_at), claim)

    def clear_usage_limit(self) -> None:
        with self._cond:
            self._limit = None

    def set_usage_warning(self, reset_at: float | datetime | None) -> None:
        """Normal answers carry the `allowed_warning` headers (None: no more)."""
        with self._cond:
            self._warning = None if reset_at is None else _epoch(reset_at)

    # --- what a test reads --------------------------------------------------------------------------
    @property
    def conversation(self) -> list[Request]:
        """The requests of the main loop (those the steps answered), in order."""
        with self._cond:
            return [r for r in self.requests if r.step is not None]

    def tool_results(self, name: str) -> list[dict[str, Any]]:
        """The tool_result blocks the CLI sent back for calls of tool `name`, once each, in order."""
        results: dict[str, dict[str, Any]] = {}
        for request in self.conversation:
            ids = {b.get("id") for b in request.blocks("tool_use") if b.get("name") == name}
            for block in request.blocks("tool_result"):
                if block.get("tool_use_id") in ids:
                    results.setdefault(block["tool_use_id"], block)
        return list(results.values())

    def wait_for(self, predicate: Callable[[list[Request]], Any], *, timeout: float = 60) -> Any:
        """Block until `predicate(requests)` is true (returned), or AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate(list(self.requests))):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the fake model did not see that within {timeout}s")
                self._cond.wait(remaining)
            return value

    # --- serving ---------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        request = Request(
            method=handler.command,
            path=handler.path,
            headers=dict(handler.headers.items()),
            body=body if isinstance(body, dict) else {},
            at=time.time(),
        )
        status, headers, answer = self._answer(request)
        request.status = status
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
        if isinstance(answer, Step):
            self._send_message(handler, request, answer, headers)
        else:
            _send_json(handler, status, answer, headers)

    def _answer(self, request: Request) -> tuple[int, dict[str, str], Any]:
        """(status, extra headers, a JSON body or the Step to send as a message)."""
        if self.valid_keys is not None and request.api_key not in self.valid_keys:
            return 401, {}, _error("authentication_error", "invalid x-api-key")
        now = time.time()
        with self._cond:
            limit, warning = self._limit, self._warning
        if limit and now < limit[0]:
            reset, claim = limit
            headers = {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": str(int(reset)),
                "retry-after": str(max(1, math.ceil(reset - now))),
            }
            if claim:
                headers["anthropic-ratelimit-unified-representative-claim"] = claim
            return 429, headers, _error("rate_limit_error", "usage limit reached")
        headers = {}
        if warning:
            headers = {
                "anthropic-ratelimit-unified-status": "allowed_warning",
                "anthropic-ratelimit-unified-reset": str(int(warning)),
                "anthropic-ratelimit-unified-5h-status": "allowed_warning",
                "anthropic-ratelimit-unified-5h-reset": str(int(warning)),
                "anthropic-ratelimit-unified-5h-utilization": "0.9",
            }
        path = urlsplit(request.path).path
        if request.method == "POST" and path == "/v1/messages/count_tokens":
            return 200, headers, {"input_tokens": max(1, len(json.dumps(request.body)) // 4)}
        if request.method != "POST" or path != "/v1/messages":
            return 404, {}, _error("not_found_error", f"{request.method} {path} is not served here")
        if not request.is_conversation:
            return 200, headers, text(SIDE_ANSWER)
        request.step = request.turns
        source = self.steps[request.step] if request.step < len(self.steps) else text(DONE)
        request.answer = source if isinstance(source, Step) else source(request)
        return 200, headers, request.answer

    def _send_message(
        self, handler: BaseHTTPRequestHandler, request: Request, step: Step, headers: dict[str, str]
    ) -> None:
        message_id = f"msg_fake_{next(self._ids)}"
        # Tool-use ids unique across runs: a resumed conversation holds the earlier run's.
        content = [
            {**block, "id": f"toolu_fake_{message_id}_{i}"} if block["type"] == "tool_use" else dict(block)
            for i, block in enumerate(step.content)
        ]
        stop_reason = "tool_use" if step.calls_tools else "end_turn"
        usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0}
        usage["cache_read_input_tokens"] = 0
        model = request.body.get("model") or MODEL
        if not request.body.get("stream"):
            message = {"id": message_id, "type": "message", "role": "assistant", "model": model}
            message |= {"content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
            _send_json(handler, 200, message, headers)
            return
        handler.send_response(200)
        for name, value in {**headers, "content-type": "text/event-stream", "connection": "close"}.items():
            handler.send_header(name, value)
        handler.end_headers()

        def event(name: str, data: dict[str, Any]) -> None:
            handler.wfile.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())

        start = {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": []}
        start |= {"stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
        event("message_start", {"message": start})
        for index, block in enumerate(content):
            if block["type"] == "tool_use":
                opened = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            else:
                opened = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            event("content_block_start", {"index": index, "content_block": opened})
            event("content_block_delta", {"index": index, "delta": delta})
            event("content_block_stop", {"index": index})
        event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage})
        event("message_stop", {})
        handler.wfile.flush()
        handler.close_connection = True


def result_text(block: dict[str, Any]) -> str:
    """The text a tool_result block carries (its content is a string or a list of text blocks)."""
    content = block.get("content")
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else ""


def _epoch(moment: float | datetime) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in {**headers, "content-type": "application/json"}.items():
        handler.send_header(name, value)
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def steps_from_json(data: Iterable[Iterable[dict[str, Any]]]) -> list[StepSource]:
    """Steps from JSON: a list of turns, each a list of content blocks."""
    return [Step(tuple(blocks)) for blocks in data]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Anthropic Messages API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--steps", help="a JSON file: the main conversation's turns, each a list of blocks")
    parser.add_argument("--any-key", action="store_true", help="accept any API key")
    options = parser.parse_args(argv)
    steps = steps_from_json(json.load(open(options.steps))) if options.steps else []  # noqa: SIM115
    model = FakeModel(steps=steps, port=options.port, valid_keys=None if options.any_key else {DEFAULT_KEY})
    model.start()
    sys.stdout.write(f"ANTHROPIC_BASE_URL={model.url} ANTHROPIC_API_KEY={model.key}\n")
    sys.stdout.flush()
    seen = 0
    try:
        while True:
            model.wait_for(lambda requests, seen=seen: len(requests) > seen, timeout=10**9)
            for request in model.requests[seen:]:
                sys.stderr.write(f"{request.status} {request.method} {request.path} step={request.step}\n")
            seen = len(model.requests)
    except KeyboardInterrupt:
        model.stop()


if __name__ == "__main__":
    main()
