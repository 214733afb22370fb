"""The stops asked of this worker's runs (`queue.request_stop`, from the API, the admin, a command or
Telegram, on any host): read at each wake-up of the loop while it runs something, and acted on off the
loop's thread, as a drain stops a run (SIGTERM to the agent's process group, SIGKILL after the grace).
How the stopped run is then recorded is `pulses.stops`'."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from pulses import queue
from pulses.agent.executor import Executor
from pulses.stops import stopped_because
from pulses.worker.dispatch import Dispatcher

logger = logging.getLogger(__name__)

# A stop that comes before the agent started (its wake check runs, or the thread is about to start it)
# is tried again this often until the agent runs or the run is over.
NOT_STARTED_RETRY_SECONDS = 0.05


class StopRequests:
    """Stops the runs of the worker `worker` that someone asked to stop, each once."""

    def __init__(self, *, worker: str, dispatch: Dispatcher, executor: Executor) -> None:
        self.worker = worker
        self.dispatch = dispatch
        self.executor = executor
        self._stopping: set[int] = set()  # runs being stopped already

    def act(self) -> None:
        """Read the stop requests for this worker's running pulses (one read by primary key, none
        while it runs nothing) and stop each run asked, off the loop's thread."""
        running = {pid: future for pid, future in self.dispatch.running.items() if not future.done()}
        self._stopping &= running.keys()
        unasked = running.keys() - self._stopping
        if not unasked:
            return
        for pulse_id, who in queue.stop_requests_for(unasked, worker=self.worker).items():
            self._stopping.add(pulse_id)
            logger.warning("pulse_stopping id=%s by=%s worker=%s", pulse_id, who, self.worker)
            # Off the loop: stopping the agent waits up to its grace for the group to go.
            thread = threading.Thread(
                target=self._interrupt,
                args=(pulse_id, stopped_because(who), running[pulse_id]),
                name=f"stop-{pulse_id}",
                daemon=True,
            )
            thread.start()

    def _interrupt(self, pulse_id: int, because: str, run: Future) -> None:
        while not run.done():
            if self.executor.interrupt(pulse_id, because=because):
                return
            time.sleep(NOT_STARTED_RETRY_SECONDS)
