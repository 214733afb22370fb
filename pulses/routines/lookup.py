"""Finding a routine the way people and the agent name it (its name, or its id), and the active
window as one text (`08:00-22:00`), for the surfaces that read and print it that way."""

from __future__ import annotations

from datetime import time

from pulses.routines.changes import RoutineInvalid, parse_time
from pulses.routines.models import Routine

MAX_ID = 2**63 - 1
WINDOW_FORM = "HH:MM-HH:MM in the routine's zone, e.g. 08:00-22:00 (it may wrap midnight: 22:00-06:00)"
PREVIEW_FIRES = 5


class UnknownRoutine(LookupError):
    """No routine has that name (or id)."""

    def __init__(self, key: object) -> None:
        super().__init__(f"there is no routine {str(key)[:100]!r}")
        self.key = key


def find(key: str | int) -> Routine:
    """The routine whose id `key` is when it is a number (a name is never only digits, and one stored
    before that rule cannot take an id's place), else the one named `key`; UnknownRoutine if none."""
    text = str(key)
    if text.isascii() and text.isdigit():
        routine = Routine.objects.filter(pk=int(text)).first() if int(text) <= MAX_ID else None
    else:
        routine = Routine.objects.filter(name=text).first()
    if routine is None:
        raise UnknownRoutine(key)
    return routine


def parse_window(text: str, *, field: str = "active_window") -> tuple[time | None, time | None]:
    """'08:00-22:00' -> (08:00, 22:00); '' -> no window; RoutineInvalid naming `field` otherwise."""
    text = (text or "").strip()
    if not text:
        return None, None
    start, sep, end = text.partition("-")
    if not sep:
        raise RoutineInvalid(field, f"'{text[:40]}' is not a window: {WINDOW_FORM}")
    return parse_time(start, field=field), parse_time(end, field=field)


def window_text(routine: Routine) -> str:
    """The active window as 'HH:MM-HH:MM', or '' when the routine has none."""
    if routine.active_from is None or routine.active_until is None:
        return ""
    return f"{routine.active_from:%H:%M}-{routine.active_until:%H:%M}"
