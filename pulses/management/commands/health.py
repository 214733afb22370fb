from pulses.management.base import ReeveCommand
from pulses.ops import health


class Command(ReeveCommand):
    """Is Reeve healthy? (pulses/ops/health.py: no pulse overdue, a worker reporting, the Telegram
    listener polling when configured, the outbox moving, the agent able to run.) Prints one line per
    problem and exits 1 when there is one, so `manage.py health || mail ...` works. With --alert: one
    Telegram alert when health turns bad and one when it is good again (the incident is stored)."""

    def add_arguments(self, parser):
        parser.add_argument("--alert", action="store_true", help="alert on Telegram once per incident")
        parser.add_argument("--quiet", action="store_true", help="print nothing when healthy")
        parser.add_argument(
            "--problem",
            action="append",
            default=[],
            help="a problem found elsewhere (reeve-health-check: a unit, the API), judged with the rest",
        )

    def handle(self, *args, alert: bool, quiet: bool, problem: list[str], **options) -> None:
        found = health.assess()
        # Given problems first; ours unless one given already says it (doctor's `health` lines).
        found.problems = [*problem, *(p for p in found.problems if not any(p in given for given in problem))]
        if alert:
            health.watch(found)
        if found.healthy:
            if not quiet:
                self.stdout.write(f"OK: {found.summary()}")
            return
        for line in found.problems:
            self.stdout.write(f"UNHEALTHY: {line}")
        raise SystemExit(1)
