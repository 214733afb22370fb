"""Waiting for one pulse to finish, for a script or a shell (`trigger_pulse --wait`).

The wait sleeps on the queue's own wake-ups (`pulses.db.wakeup`: inotify on SQLite's WAL, LISTEN on
PostgreSQL) and reads the pulse again after each, or at least every WAKE_SECONDS: a worker's record of
a run wakes it within milliseconds on SQLite, within a second at most anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pulses import answers
from pulses.db.wakeup import Waiter, make_waiter
from pulses.models import Pulse, Status
from pulses.states import FINISHED

WAKE_SECONDS = 1.0


class WaitTimedOut(Exception):
    """The pulse had not finished when the wait's time ran out; the message says what it is doing."""


@dataclass(frozen=True)
class Finished:
    """A pulse that finished: its final state, the agent's answer ("" when none), and the error."""

    pulse_id: int
    status: str
    answer: str
    error: str
    attempts: int

    @property
    def succeeded(self) -> bool:
        return self.status == Status.COMPLETED


def wait_until_finished(
    pulse_id: int, *, timeout: float | None = None, on_waiting: Callable[[Pulse], None] | None = None
) -> Finished:
    """Block until the pulse is completed, failed or cancelled (a failure with retries left is not an
    end: it waits for the retry) and return how it ended. WaitTimedOut after `timeout` seconds (None:
    no limit). `on_waiting` is called once with the pulse when it is not finished at the first look.
    Pulse.DoesNotExist if there is no such pulse."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waiter: Waiter | None = None  # made at the first wait: a finished pulse needs none
    try:
        while True:
            if waiter is not None:
                waiter.forget_changes()  # the read below sees every commit made before it
            pulse = Pulse.objects.only("status", "error_message", "attempt_count").get(pk=pulse_id)
            if pulse.status in FINISHED:
                return Finished(
                    pulse_id=pulse_id,
                    status=pulse.status,
                    answer=answers.answer(pulse_id),
                    error=pulse.error_message,
                    attempts=pulse.attempt_count,
                )
            left = WAKE_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimedOut(
                    f"pulse #{pulse_id} has not finished after {timeout:g} s (it is {pulse.status}); "
                    f"it stays queued: ./reeve pulse_queue {pulse_id} shows it"
                )
            if waiter is None:
                if on_waiting is not None:
                    on_waiting(pulse)
                waiter = make_waiter()
            waiter.wait(min(left, WAKE_SECONDS))
    finally:
        if waiter is not None:
            waiter.close()
