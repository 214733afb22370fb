from pathlib import Path

from django.core.management.base import CommandError

from pulses.management.base import ReeveCommand
from pulses.ops.backup import DEFAULT_KEEP_DAYS, BackupError, backup, default_directory


class Command(ReeveCommand):
    """Back up the database while Reeve runs: a consistent copy (SQLite backup API, or pg_dump on PostgreSQL),
    gzip-compressed, then delete backups older than --keep-days."""

    refused = (BackupError,)

    def add_arguments(self, parser):
        parser.add_argument(
            "--dir", type=Path, default=None, help=f"where backups go (default: {default_directory()})"
        )
        parser.add_argument(
            "--keep-days",
            type=int,
            default=DEFAULT_KEEP_DAYS,
            help=f"delete backups older than this many days; 0 keeps all (default {DEFAULT_KEEP_DAYS})",
        )

    def handle(self, *args, keep_days: int, **options) -> None:
        if keep_days < 0:
            raise CommandError("--keep-days must be 0 or more")
        result = backup(directory=options["dir"], keep_days=keep_days)
        for path in result.removed:
            self.stdout.write(f"Removed old backup: {path.name}")
        self.stdout.write(f"Backup completed: {result.path} ({result.size} bytes)")
