"""What Reeve accepts from outside, in one place: the API's serializers, the admin, the commands, the
MCP tools and the agent's own stream all read the limits of a pulse and check session ids and times
here. DRF (the API) and pydantic (the MCP tools) check their own input against these numbers;
`queue.schedule` checks every pulse with `check_pulse` and raises InvalidPulse for anything else, so
no caller can store a pulse the API would refuse.

- A session id is handed to the agent CLI as `--resume=ID`, so it must be something the CLI itself
  accepts and nothing more: Claude Code's session ids are UUIDs (`claude --resume` and
  `--session-id` accept only those), which is also all Reeve ever stores from the agent's stream.
- The agent options a pulse or routine may carry (`model`, `timeout_seconds`, `max_turns`) come from a
  fixed allow-list, never free-form flags: a model name is checked against MODEL_PATTERN (it cannot
  start with `-`, so it can never read as an option) and reaches the agent as one `--model=M` word
  before `--`; the numbers are bounded here.
- A time must lie in years 2000–9000 both in UTC and in TIME_ZONE, so that every later conversion
  (storage, listings in TIME_ZONE, arithmetic such as retries) stays inside Python's datetime range.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.conf import settings

_SESSION_ID = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
SESSION_ID_FORM = "an agent session id is a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e"

MIN_YEAR = 2000
MAX_YEAR = 9000
TIME_RANGE = f"years {MIN_YEAR} to {MAX_YEAR}"


class InvalidSessionId(ValueError):
    """Not a session id the agent CLI accepts; the message quotes it and says what one looks like."""

    def __init__(self, value: object) -> None:
        shown = value[:60] if isinstance(value, str) else type(value).__name__
        super().__init__(f"{shown!r} is not a session id: {SESSION_ID_FORM} (or empty for a new session)")


def is_session_id(value: object) -> bool:
    """True for a session id the agent CLI accepts (a UUID)."""
    return isinstance(value, str) and bool(_SESSION_ID.match(value))


def check_session_id(value: object) -> str:
    """`value` itself when it is empty or a session id the agent CLI accepts; else InvalidSessionId."""
    if value in (None, ""):
        return ""
    if not is_session_id(value):
        raise InvalidSessionId(value)
    return value


def time_in_range(when: datetime) -> bool:
    """True when the aware `when` lies within MIN_YEAR..MAX_YEAR both in UTC and in TIME_ZONE."""
    try:
        years = (when.astimezone(UTC).year, when.astimezone(ZoneInfo(settings.TIME_ZONE)).year)
    except (OverflowError, ValueError):  # the conversion itself leaves datetime's range
        return False
    return all(MIN_YEAR <= year <= MAX_YEAR for year in years)


# What one pulse may hold.
MAX_PROMPT_CHARS = 50_000
# The prompt reaches the agent as one argument of exec (after `--`), with its sticky notes appended
# (pulses.agent.command.build_prompt) and, when a wake check woke it, up to
# wake_check.OUTPUT_CHARS of the check's output. Linux refuses one argument longer than
# MAX_ARG_STRLEN bytes, its closing NUL included (E2BIG), so the prompt with its notes is bounded in
# UTF-8 bytes too: 50,000 "€" are 150,000 bytes. What is left (35,072 bytes) holds the
# check's output (8,000 characters, at most 32,000 bytes) and its heading.
MAX_ARG_STRLEN = 131_072
MAX_PROMPT_BYTES = 96_000
REMINDERS_HEADER = "\n\n📌 Reminders:\n"
MAX_NOTES = 50
MAX_NOTE_CHARS = 1000
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MAX_RETRIES = 100
MAX_SOURCE_CHARS = 100
MAX_CHECK_CHARS = 2000  # a wake check: a shell command line
MAX_KEY_CHARS = 200  # an idempotency key; also the session id field's length
MAX_WHEN_CHARS = 200  # a time as text ("tomorrow at 9am")
RUN_TAIL_SUMMARY_CHARS = 300  # one line of a run's live tail (a tool call and its input, a text)
MAX_PAUSE_REASON_CHARS = 300  # why the queue is paused (pulses.queue_pause)


class InvalidPulse(ValueError):
    """A pulse outside the limits above; the message names the field and says what is accepted."""


# The agent options (pulses.agent.executor passes them as the CLI's own options, before `--`).
MAX_MODEL_CHARS = 100
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$"
_MODEL = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}\Z")  # MODEL_PATTERN, no newline before the end
MODEL_FORM = (
    "a model name such as sonnet, opus or claude-sonnet-4-5: letters, digits and . _ : / @ -, starting "
    f"with a letter or digit, at most {MAX_MODEL_CHARS} characters (empty: AGENT_MODEL)"
)
MIN_TIMEOUT_SECONDS = 10
MAX_TIMEOUT_SECONDS = 24 * 3600  # a run that needs more than a day is no pulse
MIN_MAX_TURNS = 1
MAX_MAX_TURNS = 1000


def check_model(model: object) -> str:
    """`model` when it is empty or a model name by MODEL_PATTERN; else InvalidPulse."""
    if model in (None, ""):
        return ""
    if not isinstance(model, str) or not _MODEL.match(model):
        shown = model[:60] if isinstance(model, str) else type(model).__name__
        raise InvalidPulse(f"'model' {shown!r} is not a model name: {MODEL_FORM}")
    return model


def _whole_number(value: object, *, name: str, low: int, high: int, unit: str = "") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPulse(
            f"'{name}' must be a whole number{unit} from {low} to {high} (or empty for the default); "
            f"got {value!r:.60}"
        )
    return value


def check_timeout_seconds(value: object) -> int | None:
    """`value` when it is None (PULSE_TIMEOUT_SECONDS) or seconds within the bounds; else InvalidPulse."""
    return _whole_number(
        value, name="timeout_seconds", low=MIN_TIMEOUT_SECONDS, high=MAX_TIMEOUT_SECONDS, unit=" of seconds"
    )


def check_max_turns(value: object) -> int | None:
    """`value` when it is None (the agent's own limit) or a number of turns within the bounds."""
    return _whole_number(value, name="max_turns", low=MIN_MAX_TURNS, high=MAX_MAX_TURNS)


# Each agent option (the field of a pulse and of a routine) and its check.
AGENT_OPTION_CHECKS = (
    ("model", check_model),
    ("timeout_seconds", check_timeout_seconds),
    ("max_turns", check_max_turns),
)


def check_agent_options(*, model: object, timeout_seconds: object, max_turns: object) -> None:
    """The agent options of a pulse or routine; InvalidPulse naming the first one outside its limits."""
    check_model(model)
    check_timeout_seconds(timeout_seconds)
    check_max_turns(max_turns)


def text_list(values: object, *, name: str, max_items: int, max_chars: int) -> list[str]:
    """`values` as a list of stripped, non-empty strings within the limits; else InvalidPulse."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidPulse(f'\'{name}\' must be a list of strings, e.g. ["first", "second"]')
    if len(values) > max_items:
        raise InvalidPulse(f"'{name}' has {len(values)} items; at most {max_items} are accepted")
    cleaned = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise InvalidPulse(f"every item of '{name}' must be a non-empty string; got {value!r:.60}")
        if len(value) > max_chars:
            raise InvalidPulse(f"an item of '{name}' is {len(value)} characters; at most {max_chars}")
        cleaned.append(value.strip())
    return cleaned


def check_prompt(prompt: object) -> str:
    """`prompt` when it is non-empty text within MAX_PROMPT_CHARS; else InvalidPulse."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidPulse(
            "'prompt' must be a non-empty string: what the agent should do when the pulse wakes it"
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidPulse(f"'prompt' is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    return prompt


def agent_prompt_bytes(prompt: str, sticky_notes: Sequence[str] = ()) -> int:
    """The UTF-8 length of the prompt as the agent gets it, its sticky notes appended as
    `pulses.agent.command.build_prompt` appends them."""
    size = len(prompt.encode())
    if sticky_notes:
        size += len(REMINDERS_HEADER.encode())
        size += sum(len(f"  - {note}".encode()) for note in sticky_notes) + len(sticky_notes) - 1
    return size


def check_prompt_bytes(prompt: str, sticky_notes: Sequence[str] = ()) -> None:
    """InvalidPulse when the prompt with its sticky notes is longer than MAX_PROMPT_BYTES bytes."""
    size = agent_prompt_bytes(prompt, sticky_notes)
    if size > MAX_PROMPT_BYTES:
        with_notes = " with its sticky notes" if sticky_notes else ""
        raise InvalidPulse(
            f"'prompt'{with_notes} is {size} bytes in UTF-8; at most {MAX_PROMPT_BYTES} are accepted "
            "(the agent gets it as one command-line argument)"
        )


def check_priority(priority: object) -> str:
    """`priority` when it is one of `Priority`'s values; else InvalidPulse."""
    from pulses.models import Priority  # this module is read before Django is set up (gunicorn.conf)

    if priority not in Priority.values:
        raise InvalidPulse(f"unknown priority {priority!r}; use one of {', '.join(Priority.values)}")
    return str(priority)


def check_pulse(
    *,
    prompt: object,
    priority: object,
    scheduled_at: datetime,
    source: str,
    session_id: object,
    sticky_notes: object,
    tags: object,
    max_retries: object,
    idempotency_key: str | None,
    model: object = "",
    timeout_seconds: object = None,
    max_turns: object = None,
) -> None:
    """Every limit of a pulse about to be stored (`queue.schedule`); InvalidPulse naming the first
    one broken."""
    check_prompt(prompt)
    check_priority(priority)
    if not time_in_range(scheduled_at):
        raise InvalidPulse(f"'scheduled_at' {scheduled_at.isoformat()} is out of range: {TIME_RANGE}")
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidPulse(f"'source' is {len(source)} characters; at most {MAX_SOURCE_CHARS}")
    try:
        check_session_id(session_id)
    except InvalidSessionId as exc:
        raise InvalidPulse(f"'session_id': {exc}") from None
    text_list(sticky_notes, name="sticky_notes", max_items=MAX_NOTES, max_chars=MAX_NOTE_CHARS)
    check_prompt_bytes(prompt, list(sticky_notes or ()))
    text_list(tags, name="tags", max_items=MAX_TAGS, max_chars=MAX_TAG_CHARS)
    if (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= MAX_RETRIES
    ):
        raise InvalidPulse(
            f"'max_retries' must be a whole number from 0 to {MAX_RETRIES}; got {max_retries!r}"
        )
    if idempotency_key is not None and len(idempotency_key) > MAX_KEY_CHARS:
        raise InvalidPulse(f"'idempotency_key' is {len(idempotency_key)} characters; at most {MAX_KEY_CHARS}")
    check_agent_options(model=model, timeout_seconds=timeout_seconds, max_turns=max_turns)


# What the agent reports about a run (its stream's `result` event), stored on the attempt: a number
# outside these ranges is not a measurement (1e999 is infinity, which JSON cannot show) and is dropped.
MAX_COST_USD = 1_000_000.0
MAX_TURNS = 2**31 - 1  # the attempt's integer column on both databases


def cost_usd(value: object) -> float | None:
    """`value` as a cost in dollars when it is a finite number from 0 to MAX_COST_USD; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        cost = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return cost if 0.0 <= cost <= MAX_COST_USD else None  # NaN compares false: dropped too


def turn_count(value: object) -> int | None:
    """`value` when it is a whole number of turns from 0 to MAX_TURNS; else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_TURNS else None


# An answer sent back to Telegram (the outbox) is cut after this many messages of Telegram's 4096
# UTF-16 units, the last one saying where the whole answer is: a 2,000,000-character answer would be
# 500 messages, sent one after another ahead of every later reply.
MAX_ANSWER_PARTS = 10


def local_time(when: datetime) -> datetime:
    """`when` in TIME_ZONE for display; in UTC when TIME_ZONE would leave datetime's range (a row
    stored before times were bounded), so one such row never breaks a listing."""
    try:
        return when.astimezone(ZoneInfo(settings.TIME_ZONE))
    except (OverflowError, ValueError):
        return when.astimezone(UTC)


# The main API token: the guide's and .env.example's placeholders, and anything short enough to guess.
PLACEHOLDER_TOKENS = frozenset(
    {"your_secure_random_token_here", "your_token_here", "changeme", "change-me", "secret", "token"}
)
MIN_TOKEN_LENGTH = 32
# A random token of 32 characters or more estimates far above this (hex of 16 bytes: 95 at the least);
# `aaaa…`, `abab…` or a word repeated do not come near it.
MIN_TOKEN_BITS = 80
MAKE_A_TOKEN = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 (advice, not a secret)


def weak_token_reason(token: str) -> str:
    """Why PULSE_API_TOKEN must not be served ("" when it is fine, or empty: then only named tokens work)."""
    token = token.strip()
    if not token:
        return ""
    if token.lower() in PLACEHOLDER_TOKENS:
        return f"PULSE_API_TOKEN is the guide's placeholder: {MAKE_A_TOKEN}, put it in .env"
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"PULSE_API_TOKEN is only {len(token)} characters (at least {MIN_TOKEN_LENGTH}): "
            f"{MAKE_A_TOKEN}, put it in .env"
        )
    if _looks_guessable(token):
        return (
            "PULSE_API_TOKEN is long but not random (repeated characters, a repeated or ascending "
            f"pattern): {MAKE_A_TOKEN}, put it in .env"
        )
    return ""


def _looks_guessable(token: str) -> bool:
    """Low entropy by its characters' frequencies (Shannon's estimate, in bits for the whole token),
    one step repeated between most neighbours (`aaaa…`, `abcd…`), or a shorter text repeated."""
    counts = Counter(token)
    size = len(token)
    bits = -sum(n * math.log2(n / size) for n in counts.values())
    steps = Counter(ord(b) - ord(a) for a, b in zip(token, token[1:], strict=False))
    repeated = any(
        size % unit == 0 and token == token[:unit] * (size // unit) for unit in range(1, size // 2 + 1)
    )
    return bits < MIN_TOKEN_BITS or steps.most_common(1)[0][1] * 2 > size - 1 or repeated
