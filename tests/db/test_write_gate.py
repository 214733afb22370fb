"""The SQLite write gate (`pulses.db.write_gate`): one writer at a time, in line, with a bound."""

import fcntl
import threading

import pytest
from django.conf import settings
from django.db import OperationalError, connection

from pulses.db.write_gate import WriteGateBusy, gated, write_gate

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="the gate is SQLite's alone")


def _gate_path() -> str:
    return f"{settings.DATABASES['default']['NAME']}.write-gate"


def test_the_gate_is_reentrant_within_a_thread():
    with write_gate(), write_gate():
        pass


def test_a_second_thread_waits_until_the_first_leaves_the_gate():
    inside, release, order = threading.Event(), threading.Event(), []

    def first():
        with write_gate():
            inside.set()
            release.wait(10)
            order.append("first out")

    def second():
        inside.wait(10)
        with write_gate():
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first out", "second in"]


def test_a_gate_held_elsewhere_past_the_busy_timeout_is_a_clear_operational_error(settings):
    settings.SQLITE_BUSY_TIMEOUT_SECONDS = 0.2
    with open(_gate_path(), "a") as other:  # another open file: flock treats it as another process
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(WriteGateBusy, match="database is locked: .* was held for more than 0.2 s"):
            with write_gate():
                pass
        fcntl.flock(other, fcntl.LOCK_UN)
    assert issubclass(WriteGateBusy, OperationalError)  # what the API answers 503 and the worker waits out
    with write_gate():  # free again
        pass


def test_gated_runs_the_function_inside_the_gate_and_returns_its_result():
    @gated
    def add(a, *, b):
        with open(_gate_path(), "a") as probe:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return a + b

    assert add(1, b=2) == 3
