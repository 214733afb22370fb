from pulses.limits import TIME_RANGE
from pulses.management.base import ReeveCommand
from pulses.models import Status
from pulses.ops import legacy
from pulses.ops.legacy_import import import_original
from pulses.ops.legacy_rows import ImportResult


class Command(ReeveCommand):
    """Carry the original Reeve's queue (its Alembic schema) over into Reeve's: keeps a copy of the original
    first, moves every pulse in one transaction, then applies Reeve's migrations. A database already in
    Reeve's schema is left as it is."""

    refused = (legacy.LegacyError,)

    def add_arguments(self, parser):
        parser.add_argument(
            "path",
            nargs="?",
            help="the original's SQLite file or its PULSE_DB_URL (sqlite+aiosqlite:///..., "
            "postgresql+asyncpg://...); default: the configured database",
        )

    def handle(self, *args, path: str | None, **options) -> None:
        self.stdout.write(summary(import_original(path)))


def _counts(by_status: dict[str, int]) -> str:
    total = sum(by_status.values())
    parts = ", ".join(f"{by_status[s]} {s}" for s in Status.values if by_status.get(s))
    return f"{total} pulse(s){': ' + parts if parts else ''}"


def summary(result: ImportResult) -> str:
    if result.already_reeve:
        return (
            f"{result.database} already holds Reeve's queue ({_counts(result.by_status)}): "
            "nothing to import, nothing changed."
        )
    lines = [
        f"Imported the original Reeve's queue in {result.database}: {result.rows} row(s) became "
        f"{_counts(result.by_status)}.",
        f"The original is kept in {result.backup}.",
    ]
    if result.retries_folded:
        lines.append(f"{result.retries_folded} retry row(s) became attempts of the pulse they retried.")
    if result.interrupted:
        lines.append(
            f"{result.interrupted} pulse(s) the original was running when it stopped are pending again."
        )
    if result.session_ids_dropped:
        lines.append(
            f"{result.session_ids_dropped} session id(s) that are not agent session ids were dropped "
            "(those pulses start a new session)."
        )
    if result.times_moved:
        lines.append(
            f"{result.times_moved} time(s) outside the {TIME_RANGE} Reeve accepts moved to the "
            "nearest day inside them."
        )
    if result.limits_applied:
        lines.append(
            f"{result.limits_applied} value(s) beyond Reeve's limits were brought inside them (a retry limit "
            "over 100 became 100) or dropped (a run's duration over 24 days)."
        )
    if result.other_database:
        lines.append(f"Reeve's migrations are applied. To use this database, set {result.other_database}.")
    else:
        lines.append(
            "Reeve's migrations are applied: start Reeve (./reeve start, or the reeve-daemon service)."
        )
    return "\n".join(lines)
