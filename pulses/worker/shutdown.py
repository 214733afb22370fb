"""SIGTERM/SIGINT/SIGHUP for the worker: the first asks for a graceful drain, the second forces a stop.

The handlers only count the signal: they run between two bytecodes of the main thread, wherever it
is, and anything that takes a lock there (`Event.set()`, logging, `interrupt_all`) can deadlock
against the lock that very thread holds (Python's locks are not re-entrant). The kernel's side of
the handler (`signal.set_wakeup_fd`) writes a byte to the waiter's self-pipe, so a main thread asleep
in `select()` wakes at once; the worker then calls `check()`, which logs and runs the callbacks
outside any handler. A closed terminal (SIGHUP) stops Reeve like Ctrl+C, instead of orphaning it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class ShutdownSignals:
    """Installs the handlers; `stopping` and `forced` say which stage the worker is in."""

    def __init__(self, *, on_stop: Callable[[], None], on_force: Callable[[], None]) -> None:
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self._on_stop = on_stop
        self._on_force = on_force
        self._received: list[int] = []  # appended by the handler: list.append takes no lock
        self._seen = 0
        self._previous_wakeup_fd: int | None = None

    def install(self, *, wakeup_fd: int) -> None:
        """Handle the stop signals from now on; each one also writes a byte to `wakeup_fd`
        (non-blocking), which the waiter watches."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        self._previous_wakeup_fd = signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)

    def uninstall(self) -> None:
        """Stop writing to the wakeup fd (before it is closed); the handlers stay, counting."""
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None

    def _handle(self, signum: int, _frame: object) -> None:
        self._received.append(signum)

    def request_stop(self, reason: str) -> None:
        """Begin the graceful stop from the worker's own thread (a companion process exited)."""
        if not self.stopping.is_set():
            logger.info("worker_stopping reason=%s draining=true", reason)
            self.stopping.set()
            self._on_stop()

    def check(self) -> None:
        """Act on the signals received since the last call; only ever from the main thread."""
        while self._seen < len(self._received):
            name = signal.Signals(self._received[self._seen]).name
            self._seen += 1
            if not self.stopping.is_set():
                logger.info("worker_stopping signal=%s draining=true", name)
                self.stopping.set()
                self._on_stop()
            elif not self.forced.is_set():
                logger.warning("worker_force_stop signal=%s", name)
                self.forced.set()
                self._on_force()
