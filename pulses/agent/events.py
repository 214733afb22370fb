"""The agent's stream-json events as a person watching the run reads them: one short line each (a
tool call with its name and input, the text it writes, an error, its final result). No ORM here: the
worker stores them (pulses/run_tails.py); the executor hands them to `Executor.run(on_event=...)`.

Every value comes from the stream, which can say anything: each is checked for its type, and a summary
is cut to RUN_TAIL_SUMMARY_CHARS on one line, with what no database can store (NUL, a lone surrogate
from a `\\ud83d` escape) replaced.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from pulses.limits import RUN_TAIL_SUMMARY_CHARS

# The kinds of event (RunTailEvent.kind).
START = "start"  # system/init: the session began (with its model)
TOOL = "tool"  # the agent called a tool: "Bash: ls -la"
TOOL_RESULT = "tool_result"  # what the tool gave back: "Bash → notes.md"
TEXT = "text"  # the agent's own words
ERROR = "error"  # a failed tool, an API error or retry, a result with is_error
RESULT = "result"  # the run's final answer
KINDS = (START, TOOL, TOOL_RESULT, TEXT, ERROR, RESULT)

# A tool's input is summarised by the first of these it has (Bash's command, Read's file_path, ...),
# else as compact JSON.
INPUT_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description", "prompt")
TOOL_NAMES_KEPT = 64  # tool_use ids remembered to name their results


@dataclass(frozen=True)
class RunEvent:
    """One line of a run's live tail."""

    kind: str
    summary: str
    at: datetime


def one_line(value: object, limit: int = RUN_TAIL_SUMMARY_CHARS) -> str:
    """`value` as one storable line of at most `limit` characters ("…" marks a cut)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.replace("\x00", " ").split())
    text = text[: limit * 2].encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tool_input(value: object) -> str:
    if isinstance(value, dict):
        for key in INPUT_KEYS:
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key]
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)[:2000]
    return "" if value is None else str(value)[:2000]


def _content_text(value: object) -> str:
    """A tool result's content: a string, or a list of blocks whose text parts are joined."""
    if isinstance(value, str):
        return value[:2000]
    if isinstance(value, list):
        parts = [b.get("text") for b in value if isinstance(b, dict) and isinstance(b.get("text"), str)]
        return " ".join(parts)[:2000]
    return ""


def _word(value: object) -> str:
    return value[:64] if isinstance(value, str) else ""


class EventSummarizer:
    """Turns each parsed stream-json event into the RunEvents it shows (none for most bookkeeping
    events); remembers the last tool calls' names so their results can say which tool answered."""

    def __init__(self) -> None:
        self._tools: OrderedDict[str, str] = OrderedDict()

    def events(self, event: dict) -> list[RunEvent]:
        kind = event.get("type")
        now = timezone.now()
        lines: list[tuple[str, str]] = []
        if kind == "system" and event.get("subtype") == "init":
            model = _word(event.get("model"))
            lines.append((START, f"session started{f' (model {model})' if model else ''}"))
        elif kind == "system" and event.get("subtype") == "api_retry":
            status, error = event.get("error_status"), _word(event.get("error"))
            lines.append((ERROR, f"API retry {event.get('attempt', '?')}: {status} {error}".strip()))
        elif kind == "assistant":
            lines += self._assistant(event)
        elif kind == "user":
            lines += self._tool_results(event)
        elif kind == "result":
            result = event.get("result") if isinstance(event.get("result"), str) else ""
            failed = bool(event.get("is_error")) or str(event.get("subtype", "")).startswith("error")
            if failed:
                errors = event.get("errors")
                detail = result or (_content_text(errors) if isinstance(errors, list) else str(errors or ""))
                lines.append((ERROR, f"the run failed: {detail}" if detail else "the run failed"))
            else:
                lines.append((RESULT, result or "(no answer)"))
        return [RunEvent(kind=k, summary=one_line(text), at=now) for k, text in lines if text]

    def _assistant(self, event: dict) -> list[tuple[str, str]]:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        failed = bool(_word(event.get("error"))) or event.get("is_api_error_message") is True
        lines = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                lines.append((ERROR if failed else TEXT, block["text"]))
            elif block.get("type") == "tool_use":
                name = _word(block.get("name")) or "tool"
                if isinstance(block.get("id"), str):
                    self._tools[block["id"][:100]] = name
                    while len(self._tools) > TOOL_NAMES_KEPT:
                        self._tools.popitem(last=False)
                detail = _tool_input(block.get("input"))
                lines.append((TOOL, f"{name}: {detail}" if detail else name))
        return lines

    def _tool_results(self, event: dict) -> list[tuple[str, str]]:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        lines = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            tool_id = block.get("tool_use_id")
            name = self._tools.get(tool_id, "tool") if isinstance(tool_id, str) else "tool"
            text = _content_text(block.get("content"))
            if block.get("is_error") is True:
                lines.append((ERROR, f"{name} failed: {text}" if text else f"{name} failed"))
            else:
                lines.append((TOOL_RESULT, f"{name} → {text}" if text else f"{name} → (no output)"))
        return lines
