from django.core.management.base import CommandError

from pulses import queue, reports, waiting
from pulses.limits import SESSION_ID_FORM, InvalidSessionId, check_session_id
from pulses.management.base import ReeveCommand, add_agent_options, refusals
from pulses.models import Priority, Pulse, Status
from pulses.ops.hourly_prompt import schedule_hourly_prompt
from pulses.timeparse import TimeParseError, parse_when


class Command(ReeveCommand):
    """Schedule a pulse: a prompt that wakes the agent at a given time, and print its id. With --heartbeat,
    schedule this hour's heartbeat (its prompt follows the time of day). In a script: `id=$(./reeve
    trigger_pulse -q "...")` holds the id alone; `./reeve trigger_pulse --wait "..."` prints the agent's
    answer once the pulse has run (exit 1 when it failed or was cancelled, 2 when --timeout ran out)."""

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
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="print the pulse's id alone (for id=$(...)); with --wait, print only the answer",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="wait until the pulse has run and print the agent's answer on stdout "
            "(exit 1 when it failed or was cancelled); retries are waited for too",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            metavar="S",
            help="with --wait: give up after S seconds (exit 2; the pulse stays queued). Default: no limit",
        )

    def handle(self, *args, **options):
        if options["timeout"] is not None and (not options["wait"] or options["timeout"] < 0):
            raise CommandError("--timeout takes 0 or more seconds, and goes with --wait")
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
        said = f"{verb} pulse #{pulse.pk} ({pulse.priority}) for {pulse.scheduled_at.isoformat()}"
        if not options["wait"]:
            self.stdout.write(str(pulse.pk) if options["quiet"] else said)
            return
        # With --wait, stdout is the answer alone: what was scheduled is a note on stderr.
        if not options["quiet"]:
            self.stderr.write(f"{said}; waiting for it to finish")
        self._wait(pulse.pk, timeout=options["timeout"], quiet=options["quiet"])

    def _wait(self, pulse_id: int, *, timeout: float | None, quiet: bool) -> None:
        def note_no_worker(pulse: Pulse) -> None:
            if not quiet and not reports.recent_workers():
                self.stderr.write("no worker is running: it runs once Reeve is started (./reeve start)")

        try:
            finished = waiting.wait_until_finished(pulse_id, timeout=timeout, on_waiting=note_no_worker)
        except waiting.WaitTimedOut as exc:
            raise CommandError(str(exc), returncode=2) from None
        except KeyboardInterrupt:  # Ctrl+C stops the wait, not the pulse
            raise CommandError(
                f"stopped waiting; pulse #{pulse_id} stays queued: ./reeve pulse_queue {pulse_id}",
                returncode=130,
            ) from None
        if finished.succeeded:
            self.stdout.write(finished.answer)
            return
        if finished.status == Status.CANCELLED:
            raise CommandError(f"pulse #{pulse_id} was cancelled")
        error = finished.error or "no error was recorded"
        raise CommandError(f"pulse #{pulse_id} failed after {finished.attempts} attempt(s): {error}")
