"""The waiters of `pulses.db.wakeup` on their own, without a worker: what wakes a wait and what
does not. (tests/db/test_wakeup.py checks the same end to end, with real Reeve processes.)"""

import os
import select
import sqlite3
import threading

import pytest
from django.db import connection, transaction

from pulses.db import wakeup

LONG = 30.0  # a wait nothing should need: a missing wake-up shows as a thread still waiting


def _waits_in_a_thread(waiter, **options):
    thread = threading.Thread(target=waiter.wait, args=(LONG,), kwargs=options, daemon=True)
    thread.start()
    return thread


def test_a_poke_from_another_thread_wakes_the_wait():
    waiter = wakeup.Waiter()
    try:
        thread = _waits_in_a_thread(waiter)
        waiter.poke()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        waiter.close()


def test_a_watched_descriptor_wakes_even_a_local_only_wait():
    waiter = wakeup.Waiter()
    read_end, write_end = os.pipe()
    try:
        waiter.watch(read_end)
        thread = _waits_in_a_thread(waiter, local_only=True)
        os.write(write_end, b"exit")
        thread.join(10)
        assert not thread.is_alive()
    finally:
        waiter.close()
        os.close(read_end)
        os.close(write_end)


def test_pokes_beyond_the_pipe_s_capacity_never_block_the_poker():
    waiter = wakeup.Waiter()
    try:
        for _ in range(100_000):
            waiter.poke()
        waiter.wait(0)  # drains them
        assert select.select([waiter._read_fd], [], [], 0)[0] == []
    finally:
        waiter.close()


@pytest.fixture
def sqlite_waiter(tmp_path, settings):
    path = tmp_path / "queue.db"
    sqlite3.connect(path).execute("CREATE TABLE pulses (id INTEGER)").connection.commit()
    waiter = wakeup.SqliteWaiter(str(path))
    yield waiter, path
    waiter.close()


def _commit_elsewhere(path):
    other = sqlite3.connect(path)
    other.execute("INSERT INTO pulses VALUES (1)")
    other.commit()
    other.close()


def test_a_commit_by_another_connection_wakes_the_sqlite_waiter(sqlite_waiter):
    waiter, path = sqlite_waiter
    thread = _waits_in_a_thread(waiter)
    _commit_elsewhere(path)
    thread.join(10)
    assert not thread.is_alive()


def test_a_local_only_wait_leaves_a_commit_for_the_next_wait(sqlite_waiter):
    waiter, path = sqlite_waiter
    _commit_elsewhere(path)
    waiter.wait(0.05, local_only=True)
    thread = _waits_in_a_thread(waiter)
    thread.join(10)
    assert not thread.is_alive()


def test_forgotten_changes_do_not_wake_the_next_wait(sqlite_waiter):
    waiter, path = sqlite_waiter
    _commit_elsewhere(path)
    waiter.forget_changes()
    if waiter.poll_seconds is None:  # inotify: nothing left to read on its descriptor
        assert select.select(waiter._change_fds(), [], [], 0)[0] == []
    else:  # the fallback: the data version is taken as seen
        assert not waiter._changed_since_last_poll()


def test_writes_to_other_files_in_the_folder_are_read_and_ignored(sqlite_waiter, tmp_path):
    waiter, _ = sqlite_waiter
    if waiter.poll_seconds is not None:
        pytest.skip("no inotify here: the waiter polls PRAGMA data_version instead")
    (tmp_path / "unrelated.log").write_text("noise")
    readable = select.select(waiter._change_fds(), [], [], 10)[0]
    assert readable and waiter._consume(readable) is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_a_notify_reaches_the_postgres_waiter_only_when_its_transaction_commits():
    waiter = wakeup.PostgresWaiter(connection.settings_dict)
    try:
        fds = waiter._change_fds()
        with transaction.atomic():
            wakeup.announce()
            assert select.select(fds, [], [], 0.2)[0] == []  # not before the commit
        assert select.select(fds, [], [], 10)[0] == fds
        assert waiter._consume(fds) is True
    finally:
        waiter.close()


@pytest.mark.django_db
def test_the_waiter_follows_the_configured_database():
    waiter = wakeup.make_waiter()
    try:
        expected = wakeup.PostgresWaiter if connection.vendor == "postgresql" else wakeup.SqliteWaiter
        assert type(waiter) is expected
    finally:
        waiter.close()
