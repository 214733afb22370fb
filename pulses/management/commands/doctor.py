import shlex

from pulses.management.base import ReeveCommand
from pulses.ops.doctor import FAIL, WARN, resolved_paths, run_checks

MARKS = {"ok": "ok  ", WARN: "WARN", FAIL: "FAIL"}


class Command(ReeveCommand):
    """Check that Reeve can run: configuration, API token, database and migrations, agent command, Desk, API
    health, Telegram token. Each problem is one line saying what to fix; exit 1 on a failure."""

    requires_system_checks = "__all__"  # every system check (Django's default), not only COMMAND_CHECKS

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-api", action="store_true", help="skip the API health check (web not running)"
        )
        parser.add_argument("--no-telegram", action="store_true", help="skip the Telegram token check")
        parser.add_argument(
            "--paths",
            action="store_true",
            help="print the resolved data, database, log and Desk paths as shell assignments, check nothing",
        )

    def handle(self, *args, paths: bool, no_api: bool, no_telegram: bool, **options) -> None:
        if paths:
            for key, value in resolved_paths().items():
                self.stdout.write(f"{key}={shlex.quote(value)}")
            return
        checks = run_checks(api=not no_api, telegram=not no_telegram)
        for check in checks:
            self.stdout.write(f"{MARKS[check.level]}  {check.name:<14} {check.message}")
        failed = [c for c in checks if c.failed]
        if failed:
            self.stderr.write(f"doctor: {len(failed)} problem(s) to fix: {', '.join(c.name for c in failed)}")
            raise SystemExit(1)
        self.stdout.write("doctor: all checks passed")
