"""`manage.py queue pause [--until WHEN] [--reason TEXT] | resume | status`: the queue's pause switch."""

from __future__ import annotations

from django.core.management.base import CommandParser

from pulses import queue
from pulses.management.base import ReeveCommand
from pulses.timeparse import TimeParseError, parse_when

BY = "command"


class Command(ReeveCommand):
    """Pause the whole queue (no pulse is claimed; runs already going finish; routines still fire and
    their catch-up rule applies on resume), resume it, or show whether it is paused. Example: queue pause
    --until "in 2 hours" --reason "upgrading the server" """

    refused = (queue.InvalidPause, TimeParseError)

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        pause = actions.add_parser(
            "pause", help="stop claiming pulses", description="Stop claiming pulses until resumed or --until."
        )
        pause.add_argument(
            "--until",
            default="",
            help="when it resumes by itself: 'in 2 hours', '07:00', 'tomorrow 9am', ISO (default: by hand)",
        )
        pause.add_argument("--reason", default="", help="why, shown on the status surfaces")
        actions.add_parser("resume", help="claim pulses again", description="Claim pulses again.")
        actions.add_parser("status", help="whether the queue is paused", description="Whether it is paused.")

    def handle(self, *args, **options):
        action = options["action"]
        if action == "pause":
            until = parse_when(options["until"]) if options["until"] else None
            state = queue.pause(by=BY, until=until, reason=options["reason"])
            self.stdout.write(f"Paused: {state.summary()}.")
        elif action == "resume":
            resumed = queue.resume(by=BY)
            if resumed is None:
                self.stdout.write("The queue was not paused.")
            else:
                skipped = (
                    f"; {resumed.skipped_fires} routine fire(s) skipped" if resumed.skipped_fires else ""
                )
                self.stdout.write(f"Resumed: pulses are claimed again{skipped}.")
        else:
            state = queue.queue_pause_state()
            self.stdout.write(
                f"Paused: {state.summary()}." if state.paused else "Running: the queue is not paused."
            )
