"""The instance lock as proof of death (pulses/ops/instance_lock.py): the process that takes it alone
learns which worker held it last, and only then; workers joining live ones still share it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time

import pytest

from pulses.ops import instance_lock

pytestmark = pytest.mark.database_independent  # a lock file, no database


@pytest.fixture
def lock_file(settings, tmp_path):
    path = tmp_path / "pulse_queue.db.instance-lock"
    settings.REEVE_LOCK_FILE = str(path)
    opened: list[int] = []
    yield path, opened
    for fd in opened:
        os.close(fd)


def test_a_worker_taking_the_lock_alone_learns_the_last_holders_name_and_writes_its_own(lock_file):
    path, opened = lock_file
    path.write_text(json.dumps({"pid": 4242, "worker": "otherhost:4242", "role": "./reeve start"}))
    opened.append(instance_lock.hold(exclusive=False, role="run_pulse_worker"))
    assert instance_lock.dead_workers() == ["otherhost:4242"]
    assert json.loads(path.read_text())["worker"] == f"{socket.gethostname()}:{os.getpid()}"


def test_an_older_file_without_a_worker_name_names_this_hosts_pid(lock_file):
    path, opened = lock_file
    path.write_text(json.dumps({"pid": 4242, "role": "./reeve start"}))
    opened.append(instance_lock.hold(exclusive=True, role="./reeve start"))
    assert instance_lock.dead_workers() == [f"{socket.gethostname()}:4242"]


def test_a_worker_joining_a_live_one_proves_nothing_and_leaves_the_file_alone(lock_file):
    path, opened = lock_file
    opened.append(instance_lock.hold(exclusive=False, role="run_pulse_worker"))
    first = path.read_text()
    instance_lock._dead = []
    opened.append(instance_lock.hold(exclusive=False, role="run_pulse_worker"))  # shared: it may join
    assert instance_lock.dead_workers() == [] and path.read_text() == first
    with pytest.raises(instance_lock.AlreadyRunning):
        instance_lock.hold(exclusive=True, role="./reeve start")


def test_a_worker_starting_while_another_holds_the_lock_alone_for_a_moment_still_joins(lock_file):
    path, opened = lock_file
    path.touch()
    other = os.open(path, os.O_RDWR)
    opened.append(other)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another worker reading and writing the file

    def convert() -> None:
        time.sleep(0.3)
        fcntl.flock(other, fcntl.LOCK_SH)

    thread = threading.Thread(target=convert)
    thread.start()
    opened.append(instance_lock.hold(exclusive=False, role="run_pulse_worker"))
    thread.join()
