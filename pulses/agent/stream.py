"""The agent's stream-json events -> what the run came to.

Events arrive one JSON object per line. `system`/`init` announces the session id; `assistant` and
`user` carry tool calls; `result` closes the run with `is_error`, `result`, `errors`, `session_id`,
`total_cost_usd`, `num_turns`. Lines that are not JSON (terminal escapes, progress noise) are skipped.
A session id the agent CLI would not accept (pulses.limits) is ignored: it never comes back as an option.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pulses import limits
from pulses.limits import is_session_id

logger = logging.getLogger(__name__)


@dataclass
class StreamSummary:
    session_id: str = ""
    result_seen: bool = False
    is_error: bool = False
    result_text: str = ""
    errors: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    num_turns: int | None = None
    tool_uses: int = 0
    events: int = 0


def parse_line(line: str) -> dict | None:
    """One event from a line, tolerating a non-JSON prefix (escape codes); None for noise."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        event = json.loads(line[start:])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class StreamReader:
    """Folds events into a StreamSummary; calls `on_session` the first time a session id appears."""

    def __init__(self, on_session: Callable[[str], None] | None = None) -> None:
        self.summary = StreamSummary()
        self._on_session = on_session
        self._refused = False

    def feed(self, line: str) -> None:
        event = parse_line(line)
        if event is None:
            return
        summary = self.summary
        summary.events += 1
        session_id = event.get("session_id")
        if session_id and not is_session_id(session_id):
            # It would be handed back to the agent CLI as --resume: only what the CLI accepts is kept.
            if not self._refused:
                logger.warning("agent_session_id_refused value=%.60r", session_id)
            self._refused = True
        elif session_id and session_id != summary.session_id:
            first = not summary.session_id
            summary.session_id = session_id
            if first and self._on_session:
                self._on_session(session_id)
        kind = event.get("type")
        if kind == "assistant":
            content = (event.get("message") or {}).get("content") or []
            summary.tool_uses += sum(
                1 for block in content if isinstance(block, dict) and block.get("type") == "tool_use"
            )
        elif kind == "result":
            self._fold_result(event)

    def _fold_result(self, event: dict) -> None:
        summary = self.summary
        summary.result_seen = True
        summary.is_error = bool(event.get("is_error")) or str(event.get("subtype", "")).startswith("error")
        result = event.get("result")
        summary.result_text = result if isinstance(result, str) else ""
        errors = event.get("errors")
        if isinstance(errors, list):
            summary.errors = [e if isinstance(e, str) else json.dumps(e) for e in errors]
        elif isinstance(errors, str):
            summary.errors = [errors]
        # Range-checked: 1e999 (infinity) or 10**30 would break the attempt's row or its JSON.
        summary.cost_usd = limits.cost_usd(event.get("total_cost_usd"))
        summary.num_turns = limits.turn_count(event.get("num_turns"))
