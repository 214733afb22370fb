from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from pulses.management import COMMAND_CHECKS
from pulses.ops.backup import BackupError, restore


class Command(BaseCommand):
    help = (
        "Replace the database with a backup made by backup_db (.db.gz, .db or .sql.gz). Stop the services "
        "first (sudo systemctl stop reeve-telegram reeve-daemon); the current SQLite file is kept beside "
        "it as *.before-restore-TIMESTAMP."
    )
    requires_system_checks = COMMAND_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the backup file (…/backups/pulse_queue_*.db.gz)")

    def handle(self, *args, **options):
        try:
            result = restore(options["file"])
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        if result.saved_previous:
            self.stdout.write(f"Previous database kept as {result.saved_previous}")
        self.stdout.write(f"Restored {options['file']} into {result.database}")
