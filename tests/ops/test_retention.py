"""Retention: what prune_history deletes and what it never touches, tails, the command, and a large
prune while a worker drains the queue."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from bench.history_load import load_postgres, load_sqlite
from pulses import reports, run_tails
from pulses.agent.events import RunEvent
from pulses.models import Pulse, PulseAttempt, RunTailEvent, Status
from pulses.ops.retention import Policy, RetentionError, prune
from tests.support.factories import PulseAttemptFactory, PulseFactory
from tests.support.reeve_processes import noop_agent_env, noop_starts


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


def finished(status: str, days: float, **fields) -> Pulse:
    pulse = PulseFactory(status=status, finished_at=days_ago(days), scheduled_at=days_ago(days), **fields)
    if status != Status.CANCELLED:
        PulseAttemptFactory(pulse=pulse, finished_at=days_ago(days), stdout_tail="out", stderr_tail="err")
    return pulse


def alive(*pulses: Pulse) -> set[int]:
    return set(Pulse.objects.filter(pk__in=[p.pk for p in pulses]).values_list("pk", flat=True))


@pytest.fixture
def retention(settings):
    settings.PULSE_HISTORY_DAYS = 180
    settings.PULSE_FAILED_HISTORY_DAYS = 365
    settings.PULSE_OUTPUT_TAIL_DAYS = 30
    return settings


@pytest.mark.django_db
def test_prune_keeps_pending_processing_young_and_referenced_pulses_and_removes_the_rest(retention):
    old_done = finished(Status.COMPLETED, 200)
    old_cancelled = finished(Status.CANCELLED, 200)
    old_failed = finished(Status.FAILED, 200)  # failed ones are kept longer
    ancient_failed = finished(Status.FAILED, 400)
    young = finished(Status.COMPLETED, 10)
    pending = PulseFactory(scheduled_at=days_ago(300))
    processing = PulseFactory(processing=True, scheduled_at=days_ago(300))
    parent = finished(Status.COMPLETED, 300)
    child = PulseFactory(parent=parent)  # pending: its parent stays
    old_parent = finished(Status.COMPLETED, 300)
    finished(Status.COMPLETED, 250, parent=old_parent)  # both old: both go (the child first)

    result = prune(Policy.from_settings(), batch_size=2, pause=0)

    assert alive(old_done, old_cancelled, ancient_failed, old_parent) == set()
    kept = alive(old_failed, young, pending, processing, parent, child)
    assert kept == {p.pk for p in (old_failed, young, pending, processing, parent, child)}
    assert result.pulses == 5 and result.attempts == 4
    assert not PulseAttempt.objects.exclude(pulse__in=Pulse.objects.all()).exists()
    assert PulseAttempt.objects.filter(pulse=old_failed).exists()
    assert reports.stats().by_status["completed"] == 2  # the daily counts follow


@pytest.mark.django_db
def test_prune_twice_deletes_nothing_the_second_time(retention):
    for days in (190, 200, 210, 5):
        finished(Status.COMPLETED, days)
    first = prune(Policy.from_settings(), pause=0)
    again = prune(Policy.from_settings(), pause=0)
    assert (first.pulses, first.attempts) == (3, 3)
    assert (again.pulses, again.attempts, again.tails_trimmed) == (0, 0, 0)
    assert Pulse.objects.count() == 1


@pytest.mark.django_db
def test_old_output_tails_are_trimmed_and_their_attempts_kept(retention):
    old = finished(Status.COMPLETED, 45)
    young = finished(Status.COMPLETED, 2)
    result = prune(Policy.from_settings(), pause=0)
    assert result.pulses == 0 and result.tails_trimmed == 1
    trimmed = PulseAttempt.objects.get(pulse=old)
    assert (trimmed.stdout_tail, trimmed.stderr_tail, trimmed.exit_code) == ("", "", trimmed.exit_code)
    assert PulseAttempt.objects.get(pulse=young).stdout_tail == "out"


def _tail(pulse: Pulse, days: float, lines: int = 3) -> None:
    events = [RunEvent(kind="tool", summary=f"Bash: step {i}", at=days_ago(days)) for i in range(lines)]
    run_tails.append(pulse.pk, 1, events, keep=200)


@pytest.mark.django_db
def test_the_runs_live_tails_go_with_their_pulse_and_after_the_output_tail_days(retention):
    gone_pulse = finished(Status.COMPLETED, 200)
    _tail(gone_pulse, 1)  # young lines, but they go with their pulse
    old_tail = finished(Status.COMPLETED, 45)
    _tail(old_tail, 45)
    young = finished(Status.COMPLETED, 2)
    _tail(young, 2)
    running = PulseFactory(processing=True)
    _tail(running, 0)

    assert prune(Policy.from_settings(), dry_run=True).run_tail_events == 3  # older than 30 days
    result = prune(Policy.from_settings(), batch_size=2, pause=0)

    assert result.run_tail_events == 6
    left = set(RunTailEvent.objects.values_list("pulse_id", flat=True))
    assert left == {young.pk, running.pk}
    assert alive(old_tail) == {old_tail.pk}  # the pulse stays; only its live tail went
    out = StringIO()
    call_command("prune_history", stdout=out)
    assert "deleted 0 lines of the runs' live tails" in out.getvalue()


@pytest.mark.django_db
def test_zero_days_keeps_everything(retention):
    retention.PULSE_HISTORY_DAYS = 0
    retention.PULSE_OUTPUT_TAIL_DAYS = 0
    finished(Status.COMPLETED, 2000)
    finished(Status.FAILED, 2000)
    result = prune(Policy.from_settings(), pause=0)
    assert (result.pulses, result.tails_trimmed) == (0, 0)
    assert Pulse.objects.count() == 2


@pytest.mark.django_db
def test_older_than_replaces_the_history_days_but_failed_ones_keep_their_own(retention):
    done = finished(Status.COMPLETED, 100)
    failed = finished(Status.FAILED, 100)
    prune(Policy.from_settings(older_than=timedelta(days=90)), pause=0)
    assert alive(done, failed) == {failed.pk}


@pytest.mark.django_db
def test_dry_run_counts_and_changes_nothing(retention):
    finished(Status.COMPLETED, 200)
    finished(Status.COMPLETED, 40)
    out = StringIO()
    call_command("prune_history", "--dry-run", stdout=out)
    assert out.getvalue().startswith(
        "Would delete 1 pulses with 1 attempts; would trim the output tails of 2"
    )
    assert Pulse.objects.count() == 2 and PulseAttempt.objects.exclude(stdout_tail="").count() == 2


@pytest.mark.django_db
def test_the_command_reports_what_it_deleted(retention):
    finished(Status.COMPLETED, 100)
    out = StringIO()
    call_command("prune_history", "--older-than", "90d", stdout=out)
    assert "Deleted 1 pulses with 1 attempts" in out.getvalue()
    assert Pulse.objects.count() == 0


@pytest.mark.parametrize("age", ["ninety", "90x", "0d", "-5d", ""])
def test_the_command_refuses_an_age_it_cannot_read(age):
    with pytest.raises(CommandError, match="--older-than"):
        call_command("prune_history", "--older-than", age)


def test_a_negative_setting_is_a_clear_error(settings):
    settings.PULSE_HISTORY_DAYS = -1
    with pytest.raises(RetentionError, match="PULSE_HISTORY_DAYS is -1"):
        Policy.from_settings()


@pytest.mark.slow(weight=7)  # ~12-15 CPU-s: scheduled early (tests/conftest.py)
def test_a_worker_drains_while_a_large_prune_runs_and_the_file_shrinks(reeve_home):
    """30,000 old pulses with their attempts go in batches while a worker runs 300 due pulses: every
    pulse runs exactly once, nobody sees "database is locked", and the SQLite file gets smaller."""
    old = 30_000
    end = datetime.now(UTC) - timedelta(days=400)  # failed ones too are past their 365 days
    if reeve_home.database_url:
        load_postgres(reeve_home.database_url, old, days=100, end=end)
    else:
        load_sqlite(str(reeve_home.db_path), old, days=100, end=end)
    reeve_home.manage(
        "shell",
        "-c",
        "from pulses import queue\nfor i in range(300):\n    queue.schedule(prompt=f'drain {i}')\n",
    )
    size_before = reeve_home.db_path.stat().st_size if not reeve_home.database_url else 0
    noop_log = reeve_home.path / "noop.log"
    env = {**noop_agent_env(noop_log), "PULSE_MAX_CONCURRENT": "4", "LOG_LEVEL": "WARNING"}
    worker = reeve_home.start("run_pulse_worker", "--once", **env)
    pruner = reeve_home.start("prune_history", "--older-than", "90d", **env)
    assert pruner.wait(timeout=600) == 0, reeve_home.output(pruner)
    assert worker.wait(timeout=600) == 0, reeve_home.output(worker)

    statuses = dict(reeve_home.query("SELECT status, COUNT(*) FROM pulses GROUP BY status"))
    assert statuses == {"completed": 300}
    runs = noop_starts(noop_log)
    assert len(runs) == 300 and set(runs.values()) == {1}
    assert reeve_home.query("SELECT COUNT(*) FROM pulse_attempts") == [(300,)]
    for proc in (worker, pruner):
        assert "database is locked" not in reeve_home.output(proc)
    assert f"Deleted {old} pulses" in reeve_home.output(pruner)
    if not reeve_home.database_url:
        assert reeve_home.db_path.stat().st_size < size_before / 4


@pytest.mark.slow
def test_an_older_file_without_incremental_vacuum_is_converted_once_by_vacuum_full(reeve_home):
    if reeve_home.database_url:
        pytest.skip("auto_vacuum is SQLite's")
    old = reeve_home.path / "old"
    old.mkdir()
    home = type(reeve_home)(old)
    conn = sqlite3.connect(home.db_path)  # a file made before Reeve asked for incremental vacuum
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("CREATE TABLE made_before (x)")
    conn.close()
    home.migrate()
    assert home.query("PRAGMA auto_vacuum") == [(0,)]
    load_sqlite(str(home.db_path), 3000, days=30, end=datetime.now(UTC) - timedelta(days=400))
    assert "WARN  history" in home.manage("doctor", "--no-api", "--no-telegram", check=False).stdout
    pruned = home.manage("prune_history", "--older-than", "90d")
    assert "auto_vacuum is none on this database file" in pruned.stdout
    size = home.db_path.stat().st_size
    home.manage("prune_history", "--vacuum-full")
    assert home.query("PRAGMA auto_vacuum") == [(2,)]
    assert home.db_path.stat().st_size < size / 4


@pytest.mark.django_db
def test_telegram_records_and_inbox_files_go_with_the_pulse_history(retention, tmp_path):
    from telegram_bridge.models import TelegramMessage

    retention.REEVE_DESK_PATH = tmp_path / "desk"
    inbox = tmp_path / "desk" / "inbox" / "telegram"

    def saved(days: float, name: str):
        path = inbox / timezone.localtime(days_ago(days)).date().isoformat() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"photo")
        return path

    def message(number: int, pulse, files=(), *, days: float) -> None:
        entries = [{"unique_id": str(number), "kind": "photo", "path": str(f), "details": ""} for f in files]
        record = TelegramMessage.objects.create(
            bot_id=1,
            chat_id=42,
            message_id=number,
            update_id=number,
            outcome="pulse",
            pulse=pulse,
            files=entries,
        )
        TelegramMessage.objects.filter(pk=record.pk).update(created_at=days_ago(days))

    old_photo, kept_photo = saved(200, "42-1.jpg"), saved(200, "42-2.jpg")
    leftover = saved(200, ".42-3.jpg.part")  # a crash's leftover: no message names it
    young_photo = saved(5, "42-9.jpg")
    outside = tmp_path / "notes.txt"  # a path outside the inbox is never touched
    outside.write_text("mine")
    message(1, finished(Status.COMPLETED, 200), [old_photo], days=200)  # goes with its pulse
    message(2, finished(Status.FAILED, 200), [kept_photo], days=200)  # failed pulses stay 365 days
    message(3, None, days=200)  # a /new: never had a pulse
    message(4, None, days=5)
    message(5, None, [outside], days=200)
    message(9, finished(Status.COMPLETED, 5), [young_photo], days=5)

    assert prune(Policy.from_settings(), dry_run=True).telegram_messages == 3
    assert TelegramMessage.objects.count() == 6 and old_photo.exists()
    result = prune(Policy.from_settings(), batch_size=2, pause=0)

    assert set(TelegramMessage.objects.values_list("message_id", flat=True)) == {2, 4, 9}
    assert result.telegram_messages == 3 and result.inbox_files == 2
    assert not old_photo.exists() and not leftover.exists()
    assert kept_photo.exists() and young_photo.exists() and outside.exists()
    again = prune(Policy.from_settings(), pause=0)
    assert (again.telegram_messages, again.inbox_files) == (0, 0)


@pytest.mark.django_db
def test_an_inbox_folder_named_after_no_real_date_is_left_alone_and_reported_never_a_traceback(
    retention, tmp_path
):
    retention.REEVE_DESK_PATH = tmp_path / "desk"
    inbox = tmp_path / "desk" / "inbox" / "telegram"
    bogus = [inbox / name for name in ("2026-02-30", "2025-13-01", "notes")]  # the agent can write there
    for folder in bogus:
        folder.mkdir(parents=True)
        (folder / "42-1.jpg").write_bytes(b"photo")
    old_day = inbox / timezone.localtime(days_ago(200)).date().isoformat()
    old_day.mkdir()
    (old_day / ".42-3.jpg.part").write_bytes(b"left by a crash")

    out = StringIO()
    call_command("prune_history", stdout=out)

    assert not old_day.exists()  # the real day folders are still pruned
    assert all((folder / "42-1.jpg").exists() for folder in bogus)
    assert "Left alone" in out.getvalue() and "2026-02-30" in out.getvalue()
