"""`manage.py routine add|edit|list|show|run|pause|resume|remove|next`: routines from the command line.

`edit` and `run` make the calls the API's routine views make (`changes.update`, `changes.run_now`)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from pulses.management.base import ReeveCommand, add_agent_options, agent_option_changes
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
    "model": "--model",
    "timeout_seconds": "--timeout-seconds",
    "max_turns": "--max-turns",
    "tags": "--tag",
    "sticky_notes": "--sticky",
    "deliver": "--deliver",
}
# `edit` sets these with options, not with the words `add` takes.
EDIT_OPTION_OF = {**OPTION_OF, "schedule": "--schedule", "prompt": "--prompt", "name": "--name"}
NO_DELIVERY = "none"
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


def _pulse_options(parser: CommandParser, *, editing: bool) -> None:
    """The options `add` and `edit` share: what each pulse of the routine carries and when it may run.
    When `editing`, an option not given is None: that field stays as it is."""

    def default(value: object) -> object:
        return None if editing else value

    parser.add_argument(
        "--tz", default=default(""), help=f"an IANA zone (default: TIME_ZONE, now {settings.TIME_ZONE})"
    )
    parser.add_argument(
        "--priority",
        default=default(Priority.NORMAL),
        choices=Priority.values,
        help="its pulses' run order" if editing else "default: normal",
    )
    replaces = " (replaces its tags)" if editing else ""
    parser.add_argument(
        "--tag",
        action="append",
        default=default([]),
        help=f"a tag its pulses carry; repeat for more{replaces}",
    )
    replaces = " (replaces its notes)" if editing else ""
    parser.add_argument(
        "--sticky", action="append", default=default([]), help=f"a reminder appended to the prompt{replaces}"
    )
    if editing:
        parser.add_argument("--no-tags", action="store_true", help="remove its tags")
        parser.add_argument("--no-sticky", action="store_true", help="remove its sticky notes")
    parser.add_argument(
        "--max-retries", type=int, default=default(3), help="retries after a run's first attempt"
    )
    parser.add_argument(
        "--session",
        default=default(SessionPolicy.NEW),
        help="new (a fresh session each run, default), continue (the previous run's), or a session id",
    )
    parser.add_argument(
        "--window",
        default=default(""),
        help="active hours HH:MM-HH:MM; fires outside are skipped" + ("; '' removes it" if editing else ""),
    )
    parser.add_argument(
        "--deliver",
        choices=["telegram", NO_DELIVERY] if editing else ["telegram"],
        default=default(""),
        help="send each run's answer to the Telegram chat" + (f" ({NO_DELIVERY}: stop)" if editing else ""),
    )
    parser.add_argument(
        "--check",
        default=default(""),
        help="a wake check run in the Desk: exit 1 skips the run" + ("; '' removes it" if editing else ""),
    )
    parser.add_argument(
        "--pause-after", type=int, default=default(5), help="failed runs in a row that pause it"
    )
    add_agent_options(parser, what="each run", editing=editing)


def _pulse_values(options: dict) -> dict[str, object]:
    """The fields `_pulse_options` gave (for `edit`, only those given), as `changes` takes them."""
    values: dict[str, object] = {}
    if options["tz"] is not None:
        values["timezone"] = options["tz"].strip()
    for option, field in (
        ("priority", "priority"),
        ("max_retries", "max_retries"),
        ("pause_after", "pause_after_failures"),
    ):
        if options[option] is not None:
            values[field] = options[option]
    if options["tag"] is not None or options.get("no_tags"):
        values["tags"] = list(options["tag"] or [])
    if options["sticky"] is not None or options.get("no_sticky"):
        values["sticky_notes"] = list(options["sticky"] or [])
    if options["deliver"] is not None:
        values["deliver"] = "" if options["deliver"] == NO_DELIVERY else options["deliver"]
    if options["window"] is not None:
        values["active_from"], values["active_until"] = parse_window(options["window"], field="active_window")
    if options["check"] is not None:
        values["check_command"] = options["check"].strip()
    if options["session"] is not None:
        values |= _session(options["session"])
    return values | agent_option_changes(options)
    return values


class Command(ReeveCommand):
    """Routines, Reeve's recurring wake-ups: add, edit, list, show, run (now), pause, resume, remove, and
    next (the next fire times of a routine or of an expression). Example: routine add briefing "0 8 * * 1-5"
    "Brief me on today" --tz Europe/Berlin --model sonnet; routine edit briefing --timeout-seconds 600"""

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
        _pulse_options(add, editing=False)
        edit = actions.add_parser(
            "edit",
            help="change a routine's fields (only those given)",
            description="Change a routine: only the options given change; a new schedule or zone moves "
            "its next fire.",
        )
        edit.add_argument("routine", help="the routine's name (or id)")
        edit.add_argument("--name", help="a new name")
        edit.add_argument("--schedule", help="a new schedule (cron, @daily, 'every 30 minutes')")
        edit.add_argument("--prompt", help="a new prompt")
        _pulse_options(edit, editing=True)
        actions.add_parser("list", help="list the routines", description="List the routines.")
        for name, what in (
            ("show", "show one routine and its next fire times"),
            ("run", "run a routine now: its pulse is due at once (its schedule is unchanged)"),
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
            if action == "edit":
                return self._edit(routine, options)
            if action == "run":
                pulse = changes.run_now(routine)
                self.stdout.write(
                    f"Ran routine {routine.name!r}: pulse #{pulse.pk} ({pulse.priority}) is due now; "
                    f"`pulse_queue {pulse.pk}` shows it."
                )
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
            option = (EDIT_OPTION_OF if action == "edit" else OPTION_OF).get(exc.field)
            where = f"{exc.field} ({option})" if option and option.lower() != exc.field else exc.field
            raise CommandError(f"{where}: {exc.message}; nothing was stored") from None
        except UnknownRoutine as exc:
            raise CommandError(f"{exc}; `manage.py routine list` shows them") from None

    def _add(self, options) -> None:
        routine = changes.create(
            source=RoutineSource.OWNER,
            name=options["name"],
            schedule=options["schedule"],
            prompt=options["prompt"],
            **_pulse_values(options),
        )
        self.stdout.write(
            f"Added routine {routine.name!r}: {_words(routine)} ({routine.zone_name}); "
            f"next fire {_fire(routine.next_fire_at, routine)}."
        )

    def _edit(self, routine: Routine, options) -> None:
        values = {name: options[name] for name in ("name", "schedule", "prompt") if options[name] is not None}
        values |= _pulse_values(options)
        if not values:
            raise CommandError(
                "nothing to change: give the options to change (`routine edit --help` lists them)"
            )
        routine = changes.update(routine, values)
        self.stdout.write(
            f"Changed routine {routine.name!r} ({', '.join(sorted(values))}): {_words(routine)} "
            f"({routine.zone_name}); next fire {_fire(routine.next_fire_at, routine)}."
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
            ("model", routine.model or "AGENT_MODEL (default)"),
            (
                "timeout",
                f"{routine.timeout_seconds} s" if routine.timeout_seconds else "PULSE_TIMEOUT_SECONDS",
            ),
            ("max turns", routine.max_turns or "the agent's own"),
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
