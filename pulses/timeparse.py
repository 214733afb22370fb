"""When a pulse should run: "now", ISO 8601, "in 5 minutes", or a natural phrase -> aware datetime.

Naive times are read in the configured TIME_ZONE. Natural phrases ("tomorrow at 9am", "next monday
8:00") go through dateparser, preferring the future. What dateparser would turn into a surprise is
refused: a bare number ("-1", "5": next January, next May) and a month or year without its day
("march", "june 2027").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pulses.limits import TIME_RANGE, time_in_range

ACCEPTED_FORMS = (
    "now",
    "an ISO 8601 time such as 2026-01-31T09:00:00+01:00 (naive times are in TIME_ZONE)",
    "in N minutes / hours / days / weeks",
    "a phrase such as 'tomorrow at 9am', 'tonight', 'next monday 8:00'",
)
_RELATIVE = re.compile(
    r"^in\s+(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)$", re.I
)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# "tonight at 9" means 21:00; dateparser drops a bare hour after "tonight", so read it here.
_TONIGHT_AT = re.compile(r"^tonight\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm)?$", re.I)
_ALIASES = {
    "in half an hour": "in 30 minutes",
    "tonight": "today at 20:00",
    "this evening": "today at 19:00",
    "this afternoon": "today at 15:00",
    "this morning": "today at 09:00",
}
MAX_TEXT = 200
# Clock times in a phrase: "9:75" or "25:00" (dateparser silently drops what it cannot read, so
# "tomorrow at 25:00" would be tomorrow at the current time), "13pm", "at 25".
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})(?::\d{2})?\s*(am|pm)?\b", re.I)
_HOUR_MERIDIEM = re.compile(r"(?<![:\d])(\d{1,2})\s*(am|pm)\b", re.I)
_AT_HOUR = re.compile(r"\bat\s+(\d{1,2})\b(?!:)", re.I)
# A phrase without a letter is read only as a clock time (9:30) or a date with its year first
# (2026-12-25, 2026-12-25 9:30); anything else of digits and signs ("-1", "5", "12/25") is refused.
_LETTER = re.compile(r"[a-z]", re.I)
_NUMERIC_FORM = re.compile(
    r"\A(?:\d{4}-\d{2}-\d{2}(?:[ t]\d{1,2}:\d{2}(?::\d{2})?)?|\d{1,2}:\d{2}(?::\d{2})?)\Z"
)


class TimeParseError(ValueError):
    """The text is not a time Reeve can read; the message quotes it and lists the accepted forms."""

    def __init__(self, text: str, reason: str = "") -> None:
        self.text = text
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"cannot read {text[:MAX_TEXT]!r} as a time{why}; use " + ", or ".join(ACCEPTED_FORMS)
        )


def parse_when(text: str | datetime | None, *, now: datetime | None = None) -> datetime:
    """An aware datetime for `text` (a datetime passes through, made aware in TIME_ZONE), within
    TIME_RANGE (see pulses.limits)."""
    when = _parse(text, now=now)
    if not time_in_range(when):
        raise TimeParseError(str(text), f"out of range: a time must fall within {TIME_RANGE}")
    return when


def _impossible_clock(phrase: str) -> bool:
    """True when the phrase names a time of day no clock shows (25:00, 9:75, 13pm, at 24)."""
    for hour, minute, meridiem in _CLOCK.findall(phrase):
        if int(minute) > 59 or not (1 <= int(hour) <= 12 if meridiem else int(hour) <= 23):
            return True
    if any(not 1 <= int(hour) <= 12 for hour, _ in _HOUR_MERIDIEM.findall(phrase)):
        return True
    return any(int(hour) > 23 for hour in _AT_HOUR.findall(phrase))


def _parse(text: str | datetime | None, *, now: datetime | None) -> datetime:
    zone = ZoneInfo(settings.TIME_ZONE)
    now = now or timezone.now()
    if text is None:
        return now
    if isinstance(text, datetime):
        return text if timezone.is_aware(text) else timezone.make_aware(text, zone)
    if not isinstance(text, str):
        raise TimeParseError(str(text), "not text")
    cleaned = " ".join(text.strip().split())
    lowered = cleaned.lower()
    if lowered in ("", "now", "immediately", "asap"):
        return now
    if len(cleaned) > MAX_TEXT:
        raise TimeParseError(cleaned, "too long")
    if match := _RELATIVE.match(lowered):
        amount, unit = int(match.group(1)), match.group(2)[0]
        try:
            return now + timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise TimeParseError(cleaned, "too far away") from None
    try:
        parsed = parse_datetime(cleaned)
    except ValueError:
        raise TimeParseError(cleaned, "not a valid calendar time") from None
    if parsed is not None:
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, zone)
    if _impossible_clock(lowered):
        raise TimeParseError(cleaned, "not a time of day")
    if not _LETTER.search(lowered) and not _NUMERIC_FORM.match(lowered):
        # dateparser reads "-1" as next January and "5" as next May.
        raise TimeParseError(cleaned, "a bare number is not a time")
    import dateparser  # slow to import (~1 s); only natural phrases need it
    from dateparser.date import DateDataParser

    phrase = _ALIASES.get(lowered, cleaned)
    if match := _TONIGHT_AT.match(lowered):
        hour, minute, meridiem = int(match.group(1)), int(match.group(2) or 0), match.group(3)
        if hour > 23 or minute > 59 or (meridiem and not 1 <= hour <= 12):
            raise TimeParseError(cleaned, "not a time of day")
        if hour == 12 and meridiem != "pm":  # "tonight at 12" is the coming midnight
            hour = 0
        elif meridiem == "pm" or (meridiem is None and hour < 12):
            hour = hour % 12 + 12
        day = "tomorrow" if hour < 12 else "today"  # small hours belong to the night that follows
        phrase = f"{day} at {hour:02d}:{minute:02d}"
    options = {
        "TIMEZONE": settings.TIME_ZONE,
        "RETURN_AS_TIMEZONE_AWARE": True,
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": now.astimezone(zone).replace(tzinfo=None),
    }
    data = DateDataParser(languages=["en"], settings=options).get_date_data(phrase)
    if data.date_obj is None:
        raise TimeParseError(cleaned)
    # dateparser reads "march", "june 2027" or "the 5th" as a whole month (or year) and picks today's
    # day in it, months away. A relative phrase ("next month", "in 2 months") is a moment; an
    # absolute one must name its day, which REQUIRE_PARTS checks (it leaves relative phrases alone).
    if (
        data.period in ("month", "year")
        and dateparser.parse(phrase, languages=["en"], settings={**options, "REQUIRE_PARTS": ["day"]}) is None
    ):
        raise TimeParseError(cleaned, "a month or a year without its day")
    return data.date_obj
