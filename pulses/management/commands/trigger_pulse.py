from django.core.management.base import CommandError

from pulses import queue
from pulses.limits import SESSION_ID_FORM, InvalidSessionId, check_session_id
from pulses.management.base import ReeveCommand, add_agent_options, refusals
from pulses.models import Priority
from pulses.ops.hourly_prompt import schedule_hourly_prompt
from pulses.timeparse import TimeParseError, parse_when


class Command(ReeveCommand):
    """Schedule a pulse: a prompt that wakes the agent at a given time. With --heartbeat, schedule this hour's
    heartbeat (its prompt follows the time of day)."""

    def add_arguments(self, parser):
        parser.add_argument("prompt", nargs="?", help="what the agent should do (not with --heartbeat)")
        parser.add_argument(
            "--at", default="now", help="when: 'now' (default), ISO 8601, 'in 5 minutes', 'tomorrow at 9am'"
        )
        parser.add_argument(
            "--priority",
            default=Priority.NORMAL,
            choices=Priority.values,
            help="run order among due pulses (default: normal)",
        )
        parser.add_argument("--source", default="manual", help="who scheduled it (default: manual)")
        parser.add_argument("--tag", action="append", default=[], help="a tag; repeat for more")
        parser.add_argument("--session", default="", help=f"agent session to resume ({SESSION_ID_FORM})")
        parser.add_argument(
            "--sticky", action="append", default=[], help="a reminder appended to the prompt; repeat for more"
        )
        parser.add_argument("--max-retries", type=int, default=3, help="retries after the first attempt")
        parser.add_argument(
            "--idempotency-key", default=None, help="scheduling twice with one key returns the first pulse"
        )
        parser.add_argument(
            "--deliver",
            choices=["telegram"],
            default="",
            help="telegram: send the agent's answer to the configured Telegram chat when it finishes",
        )
        parser.add_argument(
            "--check", default="", help="a wake check run in the Desk first (exit 1: nothing to do, no agent)"
        )
        add_agent_options(parser, what="its run")
        parser.add_argument(
            "--heartbeat",
            action="store_true",
            help="schedule the hourly heartbeat (morning/afternoon/evening/night prompt)",
        )

    def handle(self, *args, **options):
        if options["heartbeat"]:
            result = schedule_hourly_prompt()
        else:
            if not options["prompt"] or not options["prompt"].strip():
                raise CommandError("a PROMPT is required (or use --heartbeat)")
            with refusals(TimeParseError):
                when = parse_when(options["at"])
            with refusals(InvalidSessionId, prefix="--session: "):
                session_id = check_session_id(options["session"])
            with refusals(queue.InvalidPulse):
                result = queue.schedule(
                    prompt=options["prompt"],
                    scheduled_at=when,
                    priority=options["priority"],
                    source=options["source"],
                    session_id=session_id,
                    sticky_notes=options["sticky"],
                    tags=options["tag"],
                    max_retries=options["max_retries"],
                    idempotency_key=options["idempotency_key"],
                    deliver=options["deliver"],
                    check_command=options["check"],
                    model=options["model"],
                    timeout_seconds=options["timeout_seconds"],
                    max_turns=options["max_turns"],
                )
        pulse = result.pulse
        verb = "Scheduled" if result.created else "Already scheduled"
        self.stdout.write(f"{verb} pulse #{pulse.pk} ({pulse.priority}) for {pulse.scheduled_at.isoformat()}")
