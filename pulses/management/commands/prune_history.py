import re
from datetime import timedelta

from django.core.management.base import CommandError

from pulses.management.base import ReeveCommand
from pulses.ops import retention
from pulses.ops.retention import Policy, RetentionError, prune

_AGE = re.compile(r"^(\d+)\s*([dhw]?)$")
_UNITS = {"": "days", "d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w` or a bare number of days."""
    match = _AGE.match(text.strip().lower())
    if not match:
        raise CommandError(f"--older-than {text!r}: give an age such as 90d, 12h or 2w")
    age = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if not age:
        raise CommandError("--older-than must be more than 0 (PULSE_HISTORY_DAYS=0 keeps everything)")
    return age


def _size(size: int | None) -> str:
    return "?" if size is None else f"{size / 1_048_576:.1f} MB"


class Command(ReeveCommand):
    """Delete finished pulses (and their attempts) older than PULSE_HISTORY_DAYS, failed ones after
    PULSE_FAILED_HISTORY_DAYS, trim output tails older than PULSE_OUTPUT_TAIL_DAYS, and give the space
    back. Short batches: the worker and the API keep running."""

    refused = (RetentionError,)

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            default=None,
            help="this run deletes completed and cancelled pulses older than this (90d, 12h, 2w) "
            "instead of PULSE_HISTORY_DAYS",
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
        parser.add_argument(
            "--vacuum-full",
            action="store_true",
            help="SQLite: afterwards rewrite the file once with incremental vacuum switched on (for a "
            "database created before it was; holds the database meanwhile: stop Reeve first)",
        )

    def handle(self, *args, older_than: str | None, dry_run: bool, vacuum_full: bool, **options) -> None:
        age = parse_age(older_than) if older_than is not None else None
        result = prune(Policy.from_settings(older_than=age), dry_run=dry_run)
        delete, trim = ("Would delete", "would trim") if result.dry_run else ("Deleted", "trimmed")
        self.stdout.write(
            f"{delete} {result.pulses} pulses with {result.attempts} attempts; "
            f"{trim} the output tails of {result.tails_trimmed} attempts; "
            f"{delete.lower()} {result.run_tail_events} lines of the runs' live tails."
        )
        files = "" if result.dry_run else f" and {result.inbox_files} files from the Desk's inbox/telegram/"
        self.stdout.write(f"{delete} {result.telegram_messages} Telegram message records{files}.")
        if result.dry_run:
            return
        for folder in result.skipped_folders:
            self.stdout.write(f"Left alone {folder}: its name is not a date (YYYY-MM-DD) Reeve would use.")
        self.stdout.write(
            f"{result.batches} batches, the longest {result.longest_batch_ms:.0f} ms; "
            f"database {_size(result.size_before)} -> {_size(result.size_after)}."
        )
        if result.space_note:
            self.stdout.write(result.space_note)
        if vacuum_full:
            self.stdout.write(retention.vacuum_full())
