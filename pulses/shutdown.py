"""SIGTERM/SIGINT for the worker: the first asks for a graceful drain, the second forces a stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class ShutdownSignals:
    """Installs the handlers; `stopping` and `forced` say which stage the worker is in."""

    def __init__(self, *, on_stop: Callable[[], None], on_force: Callable[[], None]) -> None:
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self._on_stop = on_stop
        self._on_force = on_force

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            logger.warning("worker_force_stop signal=%s", name)
            self.forced.set()
            self._on_force()
        else:
            logger.info("worker_stopping signal=%s draining=true", name)
            self.stopping.set()
            self._on_stop()
