"""Retention: old finished pulses leave the database in short batches, and the space comes back.

Completed and cancelled pulses go once they finished PULSE_HISTORY_DAYS ago, failed ones after
PULSE_FAILED_HISTORY_DAYS (or the former, whichever is longer), each with its attempts and its runs'
live tails; output tails (the attempts' stdout and stderr, and the live tails' lines) may go sooner
(PULSE_OUTPUT_TAIL_DAYS). Pending and processing pulses are never candidates, nor is a
pulse that another pulse still names as its parent. The Telegram bridge's record of a message
(`telegram_messages`) goes with its pulse, or, when it has none, once it is older than
PULSE_HISTORY_DAYS; the files saved for such messages under the Desk's `inbox/telegram/` go with it,
and so does any file there older than that which no remaining message names (left by a crash).

Each batch is one short write transaction (on SQLite inside the write gate, so the worker and the
API take their turns between batches; on PostgreSQL its rows are locked, so a requeue in between
waits or is skipped). Then SQLite's free pages are handed back with incremental vacuum, a few
thousand pages per transaction, and PostgreSQL runs a plain VACUUM (which blocks no writer). Running
it again deletes nothing more.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from pulses import history, run_tails
from pulses.db import is_postgres
from pulses.db.write_gate import write_gate
from pulses.models import Pulse, PulseAttempt, RunTailEvent, Status
from telegram_bridge.models import TelegramMessage

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
PAUSE_SECONDS = 0.05  # between batches: the others' writes go first
VACUUM_PAGES = 2000  # per incremental-vacuum transaction (8 MB of 4 KB pages)


class RetentionError(ValueError):
    """A retention setting or option that cannot be applied."""


@dataclass(frozen=True)
class Policy:
    """What goes: finished before these moments (None keeps that kind forever)."""

    finished_before: datetime | None  # completed and cancelled pulses
    failed_before: datetime | None
    tails_before: datetime | None  # the attempts' stdout and stderr tails, the runs' live tails

    @classmethod
    def from_settings(cls, *, older_than: timedelta | None = None, now: datetime | None = None) -> Policy:
        """The configured policy; `older_than` replaces PULSE_HISTORY_DAYS for this run."""
        now = now or timezone.now()
        finished, failed, tails = (_days(value) for value in kept_days())
        if older_than is not None:
            finished = older_than
            failed_days = _days(settings.PULSE_FAILED_HISTORY_DAYS)
            failed = max(failed_days, older_than) if failed_days else None
        return cls(
            finished_before=now - finished if finished else None,
            failed_before=now - failed if failed else None,
            tails_before=now - tails if tails else None,
        )


def kept_days() -> tuple[int, int, int]:
    """How many days finished pulses, failed pulses and output tails are kept (0: forever).
    Failed pulses are kept the longer of PULSE_HISTORY_DAYS and PULSE_FAILED_HISTORY_DAYS."""
    names = ("PULSE_HISTORY_DAYS", "PULSE_FAILED_HISTORY_DAYS", "PULSE_OUTPUT_TAIL_DAYS")
    finished, failed, tails = (getattr(settings, name) for name in names)
    for name, value in zip(names, (finished, failed, tails), strict=True):
        if value < 0:
            raise RetentionError(f"{name} is {value}: use a number of days, or 0 to keep everything")
    failed = 0 if 0 in (finished, failed) else max(finished, failed)
    return finished, failed, tails


def describe() -> str:
    """What retention keeps, in words (for the dashboard)."""

    def days(value: int) -> str:
        return "forever" if value == 0 else f"{value} days"

    try:
        finished, failed, tails = kept_days()
    except RetentionError as exc:
        return str(exc)
    return f"finished pulses {days(finished)}, failed ones {days(failed)}, output tails {days(tails)}"


def _days(value: int) -> timedelta | None:
    return timedelta(days=value) if value else None


def candidates(policy: Policy) -> list:
    """Per final status, its pulses old enough to go that no other pulse names as parent, oldest
    first: each one walk along the (status, finished_at) index."""
    named_as_parent = Exists(Pulse.objects.filter(parent_id=OuterRef("pk")))
    cutoffs = {
        Status.COMPLETED: policy.finished_before,
        Status.CANCELLED: policy.finished_before,
        Status.FAILED: policy.failed_before,
    }
    return [
        Pulse.objects.filter(status=status, finished_at__lt=cutoff)
        .filter(~named_as_parent)
        .order_by("finished_at", "id")
        for status, cutoff in cutoffs.items()
        if cutoff is not None
    ]


def _pulseless_messages(policy: Policy):
    """The bridge's records of messages without a pulse (its pulse went, or it never made one: a
    /new, a duplicate) received before PULSE_HISTORY_DAYS."""
    if policy.finished_before is None:
        return TelegramMessage.objects.none()
    return TelegramMessage.objects.filter(pulse__isnull=True, created_at__lt=policy.finished_before)


def _delete_messages(result: PruneResult, messages) -> int:
    """Delete these message records; their saved files are removed after the batches."""
    for files in messages.values_list("files", flat=True):
        result._doomed_files.extend(
            str(item.get("path", "")) for item in files or () if isinstance(item, dict)
        )
    deleted = messages.delete()[0]
    result.telegram_messages += deleted
    return deleted


def inbox_folder() -> Path:
    from telegram_bridge.media import INBOX

    return Path(settings.REEVE_DESK_PATH) / INBOX


_DAY_FOLDER = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")


def _folder_day(name: str) -> date | None:
    """The day a folder of the inbox is named after, or None when its name is not a real date."""
    if not _DAY_FOLDER.match(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:  # 2026-02-30, 2026-13-01
        return None


def _remove_inbox_files(policy: Policy, named: list[str], skipped: list[str]) -> int:
    """Remove the files of the deleted messages, then every file in a day folder of the inbox older
    than PULSE_HISTORY_DAYS that no remaining message names, and the day folders left empty. Only
    files inside the Telegram inbox are touched; folders not named after a real date are left alone
    and added to `skipped`. Returns how many files were removed."""
    inbox = inbox_folder()
    if policy.finished_before is None or not inbox.is_dir():
        return 0
    inbox = inbox.resolve()
    removed = 0
    candidates = {Path(path) for path in named if path}
    last_day = timezone.localtime(policy.finished_before).date() - timedelta(days=1)  # a day's margin
    old_folders = []
    for folder in inbox.iterdir():
        if not folder.is_dir():
            continue
        day = _folder_day(folder.name)
        if day is None:
            # The agent can write in the Desk: a folder such as 2026-02-30 is not one Reeve made.
            logger.warning("history_prune_folder_skipped path=%s reason=not_a_date", folder)
            skipped.append(str(folder))
        elif day < last_day:
            old_folders.append(folder)
    if old_folders:
        still_named = {
            Path(str(item.get("path", "")))
            # Every remaining message: an edit made today saves its file in the day folder of the
            # message it edits, which may be an old one.
            for files in TelegramMessage.objects.exclude(files=[]).values_list("files", flat=True)
            for item in files or ()
            if isinstance(item, dict)
        }
        for folder in old_folders:
            candidates.update(path for path in folder.iterdir() if path.is_file() and path not in still_named)
    for path in candidates:
        try:
            if path.resolve().parent.parent != inbox or not path.is_file():
                continue  # not a file of the Telegram inbox: never touched
            path.unlink()
            removed += 1
        except OSError as exc:
            logger.warning("history_prune_file_kept path=%s error=%s", path, exc)
    for folder in old_folders:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
    return removed


def _old_tails(policy: Policy):
    # The same condition as the partial index attempts_with_tails_idx, so it is used.
    with_tails = ~Q(stdout_tail="") | ~Q(stderr_tail="")
    return PulseAttempt.objects.filter(with_tails, finished_at__lt=policy.tails_before)


@dataclass
class PruneResult:
    """What one prune did (with dry_run: would do): rows deleted and trimmed, its batches, the
    database's size before and after, and the Telegram records and inbox files it removed."""

    pulses: int = 0
    attempts: int = 0
    tails_trimmed: int = 0
    run_tail_events: int = 0  # lines of the runs' live tails (pulses.run_tails)
    batches: int = 0
    longest_batch_ms: float = 0.0
    size_before: int | None = None
    size_after: int | None = None
    space_note: str = ""
    dry_run: bool = False
    telegram_messages: int = 0
    inbox_files: int = 0
    skipped_folders: list[str] = field(default_factory=list)  # inbox folders not named by a real date
    _doomed_files: list[str] = field(default_factory=list, repr=False)


def _batch(result: PruneResult, work) -> int:
    """Run one batch in its own short write transaction; returns how many rows it handled."""
    started = time.perf_counter()
    with write_gate(), transaction.atomic():
        done = work()
    result.batches += 1
    result.longest_batch_ms = max(result.longest_batch_ms, (time.perf_counter() - started) * 1000)
    return done


def prune(
    policy: Policy, *, dry_run: bool = False, batch_size: int = BATCH_SIZE, pause: float = PAUSE_SECONDS
) -> PruneResult:
    """Delete what `policy` lets go, trim old tails, give the space back; `dry_run` only counts."""
    result = PruneResult(dry_run=dry_run, size_before=history.database_size()[0])
    if dry_run:
        for doomed in candidates(policy):
            result.pulses += doomed.count()
            result.attempts += PulseAttempt.objects.filter(pulse_id__in=doomed.values("pk")).count()
        if policy.tails_before:
            result.tails_trimmed = _old_tails(policy).count()
            result.run_tail_events = run_tails.older_than(policy.tails_before).count()
        with_pulse = [
            TelegramMessage.objects.filter(pulse_id__in=doomed.values("pk")) for doomed in candidates(policy)
        ]
        result.telegram_messages = sum(m.count() for m in with_pulse) + _pulseless_messages(policy).count()
        result.size_after = result.size_before
        return result

    def deleter(doomed):
        def delete_some() -> int:
            picked = doomed.values_list("id", flat=True)
            if is_postgres():
                picked = picked.select_for_update(skip_locked=True, of=("self",))
            ids = list(picked[:batch_size])
            if ids:
                _delete_messages(result, TelegramMessage.objects.filter(pulse_id__in=ids))
                result.run_tail_events += RunTailEvent.objects.filter(pulse_id__in=ids).delete()[0]
                result.attempts += PulseAttempt.objects.filter(pulse_id__in=ids).delete()[0]
                result.pulses += Pulse.objects.filter(id__in=ids).delete()[1].get(Pulse._meta.label, 0)
            return len(ids)

        return delete_some

    def delete_pulseless_messages() -> int:
        ids = list(_pulseless_messages(policy).values_list("id", flat=True)[:batch_size])
        return _delete_messages(result, TelegramMessage.objects.filter(id__in=ids))

    def trim_some() -> int:
        ids = list(_old_tails(policy).values_list("id", flat=True)[:batch_size])
        trimmed = PulseAttempt.objects.filter(id__in=ids).update(stdout_tail="", stderr_tail="")
        result.tails_trimmed += trimmed
        return trimmed

    def drop_run_tails() -> int:
        ids = list(run_tails.older_than(policy.tails_before).values_list("id", flat=True)[:batch_size])
        dropped = RunTailEvent.objects.filter(id__in=ids).delete()[0]
        result.run_tail_events += dropped
        return dropped

    # A pulse kept only because a pulse about to go names it as parent goes on a later pass.
    while True:
        deleted = result.pulses
        for doomed in candidates(policy):
            while _batch(result, deleter(doomed)):
                time.sleep(pause)
        if result.pulses == deleted:
            break
    while policy.finished_before is not None and _batch(result, delete_pulseless_messages):
        time.sleep(pause)
    result.inbox_files = _remove_inbox_files(policy, result._doomed_files, result.skipped_folders)
    while policy.tails_before is not None and _batch(result, trim_some):
        time.sleep(pause)
    while policy.tails_before is not None and _batch(result, drop_run_tails):
        time.sleep(pause)
    if result.pulses:
        history.rebuild()  # the daily counts drop the deleted days
    result.space_note = give_space_back()
    result.size_after = history.database_size()[0]
    logger.info(
        "history_pruned pulses=%s attempts=%s tails_trimmed=%s run_tail_events=%s telegram_messages=%s "
        "inbox_files=%s batches=%s longest_batch_ms=%.0f",
        result.pulses,
        result.attempts,
        result.tails_trimmed,
        result.run_tail_events,
        result.telegram_messages,
        result.inbox_files,
        result.batches,
        result.longest_batch_ms,
    )
    return result


def auto_vacuum_mode() -> str | None:
    """SQLite's auto_vacuum setting of this database file (none, full, incremental)."""
    if is_postgres():
        return None
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA auto_vacuum")
        return {0: "none", 1: "full", 2: "incremental"}.get(cursor.fetchone()[0], "unknown")


def give_space_back() -> str:
    """Hand freed pages back to the file system; says what it did (or why it could not)."""
    if connection.in_atomic_block:
        return "space not given back: vacuum cannot run inside a transaction"
    if is_postgres():
        with connection.cursor() as cursor:
            # A plain VACUUM: space inside the tables is reused at once, trailing pages go back to
            # the file system, and no writer waits (VACUUM FULL would lock the tables).
            cursor.execute("VACUUM (ANALYZE) pulses, pulse_attempts")
        return "VACUUM (ANALYZE) ran on pulses and pulse_attempts"
    if is_postgres():
        return ""
    mode = auto_vacuum_mode()
    if mode != "incremental":
        return (
            f"auto_vacuum is {mode} on this database file, so freed pages stay inside it (new rows reuse "
            "them); run `manage.py prune_history --vacuum-full` once, while Reeve is stopped, to shrink "
            "the file and switch incremental vacuum on"
        )
    with connection.cursor() as cursor:

        def free_pages() -> int:
            cursor.execute("PRAGMA freelist_count")
            return cursor.fetchone()[0]

        before = remaining = free_pages()
        while remaining:
            with write_gate():
                # Each step of this statement frees one page, and Python's sqlite3 steps a statement
                # without result columns only once per execute(): executescript() runs it through.
                connection.connection.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
            now_free = free_pages()
            if now_free >= remaining:
                break
            remaining = now_free
            time.sleep(PAUSE_SECONDS)
        # The file itself shrinks when the WAL is checkpointed back into it.
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return f"incremental vacuum gave back {before - remaining} free pages"


def vacuum_full() -> str:
    """SQLite: rewrite the file once with incremental auto-vacuum switched on (holds the database for
    as long as the copy takes; run it while Reeve is stopped). PostgreSQL: a plain VACUUM."""
    if is_postgres():
        return give_space_back()
    with write_gate(), connection.cursor() as cursor:
        cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return f"the file was rewritten; auto_vacuum is now {auto_vacuum_mode()}"
