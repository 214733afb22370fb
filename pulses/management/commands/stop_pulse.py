from django.core.management.base import CommandError

from pulses import queue
from pulses.management.base import ReeveCommand
from pulses.models import Pulse, PulseNotRunning


class Command(ReeveCommand):
    """Stop a running pulse: its agent's process group gets SIGTERM, then SIGKILL 3 s later
    (exactly as a worker's drain stops a run), and the pulse ends cancelled with an attempt saying
    'stopped by command'; with --retry it goes back to pending instead, without spending an attempt.
    The request is stored: the worker running it acts within about a second, on any host."""

    refused = (PulseNotRunning,)

    def add_arguments(self, parser):
        parser.add_argument("pulse_id", type=int, help="the running pulse's id (pulse_queue processing)")
        parser.add_argument(
            "--retry", action="store_true", help="return it to pending once stopped (no attempt spent)"
        )

    def handle(self, *args, **options):
        pulse_id = options["pulse_id"]
        try:
            queue.request_stop(pulse_id, by="command", retry=options["retry"])
        except Pulse.DoesNotExist:
            raise CommandError(f"no pulse with id {pulse_id}") from None
        then = "returns to pending" if options["retry"] else "ends cancelled"
        self.stdout.write(f"Stopping pulse #{pulse_id}: its worker stops the agent, then it {then}.")
