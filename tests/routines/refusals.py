"""Bad routine input that every way in refuses alike, naming the field and storing nothing: the
routines code (tests/routines/test_changes.py), the API (tests/api/test_routines_api.py) and the admin
form (tests/routines/test_admin.py) each add the refusals of their own.
Each case: (the fields changed, the field refused, words of the message)."""

from __future__ import annotations

REFUSED_EVERYWHERE = [
    ({"schedule": "61 * * * *"}, "schedule", "is not a valid cron expression"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
    ({"schedule": "every 30 seconds"}, "schedule", "under one minute"),
    # Issue 33: the agent options, from an allow-list: a model shaped like an option is no model.
    ({"model": "--dangerously-skip-permissions"}, "model", "is not a model name"),
    ({"model": "-x"}, "model", "is not a model name"),
    ({"timeout_seconds": 86401}, "timeout_seconds", "86400"),
    ({"max_turns": 0}, "max_turns", "1"),
]
# The API and the admin form read a window's ends as text (the routines code takes times).
EMPTY_WINDOW_AS_TEXT = (
    {"active_from": "08:00", "active_until": "08:00"},
    "active_until",
    "08:00-08:00 is empty",
)
