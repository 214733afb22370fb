"""What Reeve accepts from outside, in one place: the API's serializers, the admin, the commands, the
MCP tools and the agent's own stream all check session ids and times here.

- A session id is handed to the agent CLI as `--resume=ID`, so it must be something the CLI itself
  accepts and nothing more: Claude Code's session ids are UUIDs (`claude --resume` and
  `--session-id` accept only those), which is also all Reeve ever stores from the agent's stream.
- A time must lie in years 2000–9000 both in UTC and in TIME_ZONE, so that every later conversion
  (storage, listings in TIME_ZONE, arithmetic such as retries) stays inside Python's datetime range.
"""

from __future__ import annotations

import re
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
    return ""
