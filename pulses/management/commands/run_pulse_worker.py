from django.core.management.base import CommandError

from pulses.management.base import ReeveCommand, refusals
from pulses.ops import instance_lock
from pulses.ops.private_files import tighten
from pulses.worker.loop import Worker, WorkerOptions


class Command(ReeveCommand):
    """Run due pulses through the agent CLI, highest priority first, each exactly once per attempt.
    SIGTERM/Ctrl+C drains running pulses (PULSE_SHUTDOWN_GRACE_SECONDS); a second one stops at once."""

    refused = (instance_lock.AlreadyRunning,)

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run what is due now, then exit")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="log the due pulses and the agent command line; run and change nothing",
        )
        parser.add_argument(
            "--concurrency", type=int, default=None, help="pulses at once (default: PULSE_MAX_CONCURRENT)"
        )

    def handle(
        self, *args, once: bool, dry_run: bool, concurrency: int | None, verbosity: int, **options
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise CommandError("--concurrency must be 1 or more")
        self.log_at_verbosity(verbosity)
        if not dry_run:
            # Shared: more workers may join on purpose, but not beside a `./reeve start`.
            instance_lock.hold(exclusive=False, role="run_pulse_worker")
        tighten()  # files made before Reeve ran with umask 077 become private on this start
        with refusals(ValueError):
            worker_options = WorkerOptions.from_settings(concurrency=concurrency, once=once, dry_run=dry_run)
        dead = [] if dry_run else instance_lock.dead_workers()
        Worker(worker_options, dead_workers=dead).run()
