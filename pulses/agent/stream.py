"""The agent's stream-json events -> what the run came to.

Events arrive one JSON object per line. `system`/`init` announces the session id; `assistant` and
`user` carry tool calls; `result` closes the run with `is_error`, `result`, `errors`, `session_id`,
`total_cost_usd`, `num_turns`. Lines that are not JSON (terminal escapes, progress noise) are skipped.
A session id the agent CLI would not accept (pulses.limits) is ignored: it never comes back as an option.

What says the agent could not reach its model is kept apart (`AgentSignals`), for
`pulses.agent.readiness`: Claude Code's `api_error_status` / `api_error` (on the assistant event
and the result), the assistant event's `error` ("authentication_failed", "rate_limit"), its
`rate_limit_event`s and its own retries (`system`/`api_retry`). Every value is checked for its type
and range before it is kept: a stream can say anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pulses import limits
from pulses.agent.events import EventSummarizer, RunEvent
from pulses.limits import is_session_id

logger = logging.getLogger(__name__)

TEXT_CHARS = 500  # the agent's own words kept for a signal (an error message, not a transcript)
MAX_RESET_SECONDS = 400 * 24 * 3600  # a reset further than this from the epoch's "now" is not believed
RATE_LIMIT_STATUSES = ("allowed", "allowed_warning", "rejected")


@dataclass(frozen=True)
class RateLimit:
    """One `rate_limit_event`: "allowed", "allowed_warning" or "rejected", when the window resets
    (None when the event did not say, or said something out of range) and which window it is."""

    status: str
    resets_at: datetime | None = None
    kind: str = ""  # rateLimitType: "five_hour", "seven_day", …


@dataclass
class AgentSignals:
    """What the stream said about the agent's access to its model (empty for an ordinary run)."""

    api_error_status: int | None = None  # the HTTP status the model's API answered (401, 429, …)
    api_error: str = ""  # Claude Code's own word for it ("no_credential")
    error: str = ""  # the assistant event's `error` ("authentication_failed", "rate_limit")
    error_text: str = ""  # the text of the assistant event that carried the error
    rate_limit: RateLimit | None = None  # the last rate_limit_event
    api_retries: int = 0  # `system`/`api_retry` events seen
    retry_status: int | None = None  # the last retry's error_status
    retry_error: str = ""  # the last retry's error ("authentication_failed")


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
    signals: AgentSignals = field(default_factory=AgentSignals)


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
    """Folds events into a StreamSummary; calls `on_session` the first time a session id appears,
    and `on_event` with each line of the run's live tail (pulses/agent/events.py) as it comes."""

    def __init__(
        self,
        on_session: Callable[[str], None] | None = None,
        *,
        on_retry: Callable[[AgentSignals], None] | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> None:
        self.summary = StreamSummary()
        self._on_session = on_session
        self._on_retry = on_retry  # called after each `api_retry` event (the executor's bound)
        self._on_event = on_event
        self._summarizer = EventSummarizer() if on_event else None
        self._refused = False

    def feed(self, line: str) -> None:
        event = parse_line(line)
        if event is None:
            return
        summary = self.summary
        summary.events += 1
        if self._summarizer is not None:
            self._tell(event)
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
            message = event.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            content = content if isinstance(content, list) else []
            summary.tool_uses += sum(
                1 for block in content if isinstance(block, dict) and block.get("type") == "tool_use"
            )
            self._fold_api_error(event, content)
        elif kind == "result":
            self._fold_result(event)
            self._fold_api_error(event, [])
        elif kind == "rate_limit_event":
            self._fold_rate_limit(event)
        elif kind == "system" and event.get("subtype") == "api_retry":
            signals = summary.signals
            signals.api_retries += 1
            signals.retry_status = _status(event.get("error_status"))
            signals.retry_error = _word(event.get("error"))
            if self._on_retry:
                self._on_retry(signals)

    def _tell(self, event: dict) -> None:
        """Hand the event's tail lines to `on_event`. The tail is for watching: a callback that
        fails is logged and not called again, and the run goes on."""
        try:
            for line in self._summarizer.events(event):
                self._on_event(line)
        except Exception:
            logger.exception("agent_event_callback_failed: the run's live tail stops here")
            self._summarizer = None

    def _fold_api_error(self, event: dict, content: list) -> None:
        signals = self.summary.signals
        if (status := _status(event.get("api_error_status"))) is not None:
            signals.api_error_status = status
        if api_error := _word(event.get("api_error")):
            signals.api_error = api_error
        if event.get("type") == "assistant" and (error := _word(event.get("error"))):
            signals.error = error
            texts = [b.get("text") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
            signals.error_text = " ".join(texts)[:TEXT_CHARS]

    def _fold_rate_limit(self, event: dict) -> None:
        info = event.get("rate_limit_info")
        if not isinstance(info, dict) or info.get("status") not in RATE_LIMIT_STATUSES:
            return
        self.summary.signals.rate_limit = RateLimit(
            status=info["status"],
            resets_at=epoch_time(info.get("resetsAt")),
            kind=_word(info.get("rateLimitType")),
        )

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


def _status(value: object) -> int | None:
    """An HTTP status from the stream, None unless it is one (100-599; a bool is not)."""
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _word(value: object, limit: int = 64) -> str:
    """A short identifier-like string from the stream ("" for anything else)."""
    return value[:limit] if isinstance(value, str) else ""


def epoch_time(value: object) -> datetime | None:
    """Seconds since the epoch (an int or float, as `resetsAt` is) as an aware datetime; None when it
    is not a number, or not within MAX_RESET_SECONDS of the present."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    now = datetime.now(UTC).timestamp()
    if not abs(value - now) <= MAX_RESET_SECONDS:  # also refuses NaN
        return None
    return datetime.fromtimestamp(value, tz=UTC)
