"""The express lane's moves beyond the reserved slots: a critical pulse that finds no slot free makes a
preemptible run give way (PULSE_PREEMPT), and one held back by a session this worker is running is
reported to the waiting hooks (the Telegram bridge tells the chat it is still busy)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.utils import timezone

from pulses import queue
from pulses.agent.executor import Executor
from pulses.models import PRIORITY_RANK
from pulses.worker.dispatch import Dispatcher
from pulses.worker.options import WorkerOptions
from pulses.worker.run import run_hooks
from pulses.worker.slots import Free

logger = logging.getLogger(__name__)

WAITING_SCAN_SECONDS = 1.0  # how often a worker running pulses looks for critical pulses held back by them


class ExpressLane:
    """Makes room for, and tells about, the critical pulses that wait on the worker `worker`."""

    def __init__(
        self,
        *,
        worker: str,
        options: WorkerOptions,
        dispatch: Dispatcher,
        executor: Executor,
        hooks: ThreadPoolExecutor,
        stopping: threading.Event,
    ) -> None:
        self.worker = worker
        self.options = options
        self.dispatch = dispatch
        self.executor = executor
        self._hooks = hooks
        self._stopping = stopping
        self._waiting_scan_at = 0.0
        self._told_waiting: set[int] = set()  # critical pulses whose wait the waiting hooks heard of

    def preemptible(self) -> list[int]:
        """Running pulses a critical pulse may interrupt (PULSE_PREEMPT), lowest priority and
        latest claimed first; not those already asked to stop, nor those preempted once before (on
        any worker: the pulse records it), so no pulse is interrupted over and over."""
        dispatch = self.dispatch
        runs = [
            (pid, priority)
            for pid, priority in dispatch.priorities.items()
            if priority in self.options.preempt
            and pid not in dispatch.preempted
            and pid not in dispatch.preempted_before
        ]
        runs.sort(key=lambda run: (PRIORITY_RANK.get(run[1], 0), run[0]), reverse=True)
        return [pid for pid, _ in runs]

    def preempt_for_critical(self, free: Free) -> None:
        """No slot is free for a critical pulse that is due and whose session is free: ask one
        preemptible run to stop (as a drain would) so the critical pulse takes its slot. The run
        returns to pending with its session and without spending a retry."""
        if free.for_critical or self.dispatch.preempted or self._stopping.is_set():
            return  # one preemption at a time: the next waits until that slot has changed hands
        if self.dispatch.pause_seen():
            return  # a paused queue claims nothing, so nothing would take the freed slot
        victims = self.preemptible()
        if not victims:
            return
        waiting = queue.critical_waiting_for_a_slot()
        if waiting is None:
            return
        victim = victims[0]
        self.dispatch.preempted.add(victim)
        if not queue.mark_preempted(victim, worker=self.worker):
            return  # its run is ending, or its lease was lost: nothing to interrupt
        logger.warning("pulse_preempted id=%s for=%s worker=%s", victim, waiting, self.worker)
        because = f"interrupted for pulse {waiting}"
        # Off the loop: stopping the agent waits up to its grace for the group to go.
        thread = threading.Thread(
            target=self.executor.interrupt, args=(victim,), kwargs={"because": because}, daemon=True
        )
        thread.start()

    def tell_waiting(self) -> float:
        """Hand critical pulses held back by this worker's running sessions for longer than
        `busy_notice_seconds` to the waiting hooks, once each. Returns the monotonic time it needs to
        look again."""
        opts = self.options
        now = time.monotonic()
        if not opts.waiting_hooks or not self.dispatch.running:
            return float("inf")
        if now < self._waiting_scan_at:
            return self._waiting_scan_at
        self._waiting_scan_at = now + WAITING_SCAN_SECONDS
        waiting = queue.waiting_for_sessions_of(self.worker)
        self._told_waiting &= {pulse_id for pulse_id, _ in waiting}  # the rest ran or went
        for pulse_id, due_at in waiting:
            waited = (timezone.now() - due_at).total_seconds()
            if pulse_id not in self._told_waiting and waited >= opts.busy_notice_seconds:
                self._told_waiting.add(pulse_id)
                logger.info("pulse_waiting_for_session id=%s waited_s=%.1f", pulse_id, waited)
                self._hooks.submit(run_hooks, opts.waiting_hooks, pulse_id)
        return self._waiting_scan_at
