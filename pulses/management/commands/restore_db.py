from pathlib import Path

from pulses.management.base import ReeveCommand
from pulses.ops.backup import BackupError, restore


class Command(ReeveCommand):
    """Replace the database with a backup made by backup_db (.db.gz, .db or .sql.gz). Stop the services first
    (sudo systemctl stop reeve-telegram reeve-daemon); the current SQLite file is kept beside it as
    *.before-restore-TIMESTAMP."""

    refused = (BackupError,)

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the backup file (…/backups/pulse_queue_*.db.gz)")

    def handle(self, *args, file: Path, **options) -> None:
        result = restore(file)
        if result.saved_previous:
            self.stdout.write(f"Previous database kept as {result.saved_previous}")
        self.stdout.write(f"Restored {file} into {result.database}")
