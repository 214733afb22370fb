"""`manage.py routine add|list|show|pause|resume|remove|next`: routines from the command line."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from pulses.management.base import ReeveCommand
from pulses.models import Priority
from pulses.routines import changes
from pulses.routines import schedule as schedules
from pulses.routines.lookup import PREVIEW_FIRES, UnknownRoutine, find, parse_window, window_text
from pulses.routines.models import Routine, RoutineSource, SessionPolicy

COLUMNS = ("NAME", "SCHEDULE", "ZONE", "NEXT FIRE", "LAST RESULT", "ENABLED")
# Which option sets each field, so an error names what the person typed.
OPTION_OF = {
    "timezone": "--tz",
    "active_from": "--window",
    "active_until": "--window",
    "active_window": "--window",
    "session_id": "--session",
    "session_policy": "--session",
    "max_retries": "--max-retries",
    "pause_after_failures": "--pause-after",
    "check_command": "--check",
    "schedule": "SCHEDULE",
    "prompt": "PROMPT",
    "name": "NAME",
}
FIRE_FORMAT = "%a %Y-%m-%d %H:%M %Z"


def _fire(moment: datetime | None, routine: Routine) -> str:
    return moment.astimezone(routine.zone).strftime("%Y-%m-%d %H:%M %Z") if moment else "-"


def _words(routine: Routine) -> str:
    try:
        return routine.parsed_schedule.describe()
    except schedules.ScheduleError:
        return routine.schedule


def _session(value: str) -> dict[str, str]:
    if value in SessionPolicy.values and value != SessionPolicy.FIXED:
        return {"session_policy": value}
    return {"session_policy": SessionPolicy.FIXED, "session_id": value}


class Command(ReeveCommand):
    """Routines, Reeve's recurring wake-ups: add, list, show, pause, resume, remove, and next (the next fire
    times of a routine or of an expression). Example: routine add briefing "0 8 * * 1-5" "Brief me on
    today" --tz Europe/Berlin"""

    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        add = actions.add_parser("add", help="create a routine", description="Create a routine.")
        add.add_argument("name", help="a unique name, e.g. briefing")
        add.add_argument(
            "schedule",
            help="a 5-field cron expression ('0 8 * * 1-5'), @hourly/@daily/@weekly, or 'every 30 minutes'",
        )
        add.add_argument("prompt", help="what the agent should do at each fire")
        add.add_argument(
            "--tz", default="", help=f"an IANA zone (default: TIME_ZONE, now {settings.TIME_ZONE})"
        )
        add.add_argument(
            "--priority", default=Priority.NORMAL, choices=Priority.values, help="default: normal"
        )
        add.add_argument("--tag", action="append", default=[], help="a tag its pulses carry; repeat for more")
        add.add_argument("--sticky", action="append", default=[], help="a reminder appended to the prompt")
        add.add_argument("--max-retries", type=int, default=3, help="retries after a run's first attempt")
        add.add_argument(
            "--session",
            default=SessionPolicy.NEW,
            help="new (a fresh session each run, default), continue (the previous run's), or a session id",
        )
        add.add_argument("--window", default="", help="active hours HH:MM-HH:MM; fires outside are skipped")
        add.add_argument(
            "--deliver", choices=["telegram"], default="", help="send each run's answer to the Telegram chat"
        )
        add.add_argument("--check", default="", help="a wake check run in the Desk: exit 1 skips the run")
        add.add_argument("--pause-after", type=int, default=5, help="failed runs in a row that pause it")
        actions.add_parser("list", help="list the routines", description="List the routines.")
        for name, what in (
            ("show", "show one routine and its next fire times"),
            ("pause", "stop a routine firing until resumed"),
            ("resume", "fire again from the next fire time"),
            ("remove", "delete a routine (its past pulses stay)"),
        ):
            sub = actions.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
            sub.add_argument("routine", help="the routine's name (or id)")
        nxt = actions.add_parser(
            "next",
            help="the next fire times of a routine or of an expression",
            description="The next fire times of a routine (by name) or of a schedule, in a zone.",
        )
        nxt.add_argument("what", help="a routine's name, or a schedule such as '0 8 * * 1-5'")
        nxt.add_argument("--tz", default="", help="the zone for an expression (default: TIME_ZONE)")
        nxt.add_argument("-n", "--count", type=int, default=PREVIEW_FIRES, help="how many (default 5)")

    def handle(self, *args, **options):
        action = options["action"]
        try:
            if action == "add":
                return self._add(options)
            if action == "list":
                return self._list()
            if action == "next":
                return self._next(options)
            routine = find(options["routine"])
            if action == "show":
                return self._show(routine)
            if action == "pause":
                routine = changes.pause(routine)
                self.stdout.write(
                    f"Paused routine {routine.name!r}; `routine resume {routine.name}` restarts it."
                )
            elif action == "resume":
                routine = changes.resume(routine)
                self.stdout.write(
                    f"Resumed routine {routine.name!r}; next fire {_fire(routine.next_fire_at, routine)}."
                )
            elif action == "remove":
                changes.remove(routine)
                self.stdout.write(f"Removed routine {routine.name!r}; its past pulses stay in the history.")
        except changes.RoutineInvalid as exc:
            option = OPTION_OF.get(exc.field)
            where = f"{exc.field} ({option})" if option and option.lower() != exc.field else exc.field
            raise CommandError(f"{where}: {exc.message}; nothing was stored") from None
        except UnknownRoutine as exc:
            raise CommandError(f"{exc}; `manage.py routine list` shows them") from None

    def _add(self, options) -> None:
        start, end = parse_window(options["window"], field="active_window")
        routine = changes.create(
            source=RoutineSource.OWNER,
            name=options["name"],
            schedule=options["schedule"],
            prompt=options["prompt"],
            timezone=options["tz"].strip(),
            priority=options["priority"],
            tags=options["tag"],
            sticky_notes=options["sticky"],
            max_retries=options["max_retries"],
            deliver=options["deliver"],
            active_from=start,
            active_until=end,
            check_command=options["check"].strip(),
            pause_after_failures=options["pause_after"],
            **_session(options["session"]),
        )
        self.stdout.write(
            f"Added routine {routine.name!r}: {_words(routine)} ({routine.zone_name}); "
            f"next fire {_fire(routine.next_fire_at, routine)}."
        )

    def _list(self) -> None:
        routines = list(Routine.objects.order_by("name"))
        if not routines:
            self.stdout.write(
                'No routines. Add one: routine add NAME "0 8 * * *" "PROMPT" --tz Europe/Berlin'
            )
            return
        rows = [COLUMNS]
        for r in routines:
            last = f"{r.last_result} {_fire(r.last_fire_at, r)}" if r.last_result else "never run"
            enabled = "yes" if r.enabled else f"paused ({r.paused_reason})" if r.paused_reason else "paused"
            rows.append((r.name, _words(r), r.zone_name, _fire(r.next_fire_at, r), last, enabled))
        self.write_table(rows)

    def _show(self, routine: Routine) -> None:
        fields = [
            ("name", routine.name),
            ("schedule", f"{routine.schedule}  ({_words(routine)})"),
            ("zone", routine.zone_name),
            ("enabled", "yes" if routine.enabled else f"no: {routine.paused_reason or 'paused'}"),
            ("priority", routine.priority),
            ("tags", ", ".join(routine.tags) or "-"),
            ("session", routine.session_policy + (f" {routine.session_id}" if routine.session_id else "")),
            ("active window", window_text(routine) or "always"),
            ("wake check", routine.check_command or "-"),
            ("created by", routine.source),
            ("next fire", _fire(routine.next_fire_at, routine)),
            ("last fire", f"{_fire(routine.last_fire_at, routine)} {routine.last_result or ''}".rstrip()),
            ("last pulse", f"#{routine.last_pulse_id}" if routine.last_pulse_id else "-"),
            (
                "fired",
                f"{routine.fire_count} (missed {routine.missed_count}, outside window "
                f"{routine.outside_window_count}, skipped by check {routine.check_skip_count})",
            ),
            ("failures", f"{routine.failure_streak} in a row (pauses after {routine.pause_after_failures})"),
            ("prompt", routine.prompt),
        ]
        self.write_fields(fields)
        if routine.enabled:
            self._fires(routine.schedule, routine.zone_name, PREVIEW_FIRES)

    def _next(self, options) -> None:
        if options["count"] < 1 or options["count"] > 100:
            raise CommandError("--count must be from 1 to 100")
        routine = Routine.objects.filter(name=options["what"]).first()
        if routine is not None:
            self._fires(routine.schedule, routine.zone_name, options["count"])
        else:
            self._fires(options["what"], options["tz"].strip() or settings.TIME_ZONE, options["count"])

    def _fires(self, schedule: str, zone_name: str, count: int) -> None:
        fires = changes.preview(schedule, zone_name, count=count)
        self.stdout.write(
            f"Next {count} fires of {schedule!r} ({schedules.parse(schedule).describe()}) in {zone_name}:"
        )
        for fire in fires:
            self.stdout.write(f"  {fire.strftime(FIRE_FORMAT)}")
