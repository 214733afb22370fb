"""The worker loop: wake-ups, concurrency, leases, signals, drain.

The main thread claims, renews leases, reports the worker alive, recovers expired leases and fires
due routines; a thread per running pulse runs it (`pulses.worker.run`) and reports back through
`pulses.queue`. The database is touched only in short transactions: nothing is locked while an agent
runs. The runs in flight are `pulses.worker.dispatch`'s, the express lane's preemption and busy
notices `pulses.worker.express`', the options `pulses.worker.options`'.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol

from django.db import connection, connections
from django.utils import timezone

from pulses import queue
from pulses.agent.executor import Executor
from pulses.agent.process_groups import Reaper
from pulses.backoff import Backoff
from pulses.db.wakeup import Waiter, make_waiter
from pulses.routines import firing as routine_firing
from pulses.worker.dispatch import Dispatcher
from pulses.worker.express import ExpressLane
from pulses.worker.options import WorkerOptions
from pulses.worker.run import DATABASE_DOWN, Runner, default_executor, one_line, run_hooks
from pulses.worker.shutdown import ShutdownSignals
from pulses.worker.stops import StopRequests

__all__ = ["Companion", "Worker", "WorkerOptions"]

logger = logging.getLogger(__name__)

# How a companion that we stopped exits; any other code is passed on as the worker's own.
COMPANION_STOP_CODES = (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGQUIT)


class Companion(Protocol):
    """A process that lives and dies with the worker (`./reeve start`'s web process)."""

    name: str

    def fileno(self) -> int:
        """Readable once the process has exited (a pidfd)."""

    def poll(self) -> int | None: ...

    def stop(self, *, force: bool) -> None:
        """Ask it to stop: gracefully, or at once."""

    def wait(self) -> int:
        """Wait (bounded) until it has exited; its exit code."""


class Worker:
    def __init__(
        self,
        options: WorkerOptions,
        executor: Executor | None = None,
        *,
        companions: Sequence[Companion] = (),
        dead_workers: Sequence[str] = (),
    ) -> None:
        self.options = options
        # Workers proven dead (the instance lock they held was free): their claims are recovered at
        # once on start, not when their leases expire (pulses/ops/instance_lock.py).
        self.dead_workers = list(dead_workers)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.name = f"{self.host}:{self.pid}"
        self.started_at = timezone.now()
        self._reaper = None if executor or options.dry_run else Reaper()
        self.executor = executor or default_executor(self._reaper)
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="failure-hooks")
        self._waiter: Waiter | None = None
        # A graceful stop keeps the companions (the web process: the running agents' tools call its API)
        # until the drain is over; `run` stops them then. A second signal stops them at once.
        self.signals = ShutdownSignals(on_stop=lambda: None, on_force=self._force)
        self.companions = list(companions)
        self._drain_deadline: float | None = None
        self._next_fire_at: datetime | None = None
        self.dispatch = Dispatcher(
            worker=self.name,
            options=options,
            executor=self.executor,
            on_done=self._poke,
            on_cap_reached=self._alert_cap_reached,
        )
        self.express = ExpressLane(
            worker=self.name,
            options=options,
            dispatch=self.dispatch,
            executor=self.executor,
            hooks=self._hooks,
            stopping=self.signals.stopping,
        )
        self.stops = StopRequests(worker=self.name, dispatch=self.dispatch, executor=self.executor)
        self.runs = Runner(
            worker=self.name,
            executor=self.executor,
            hooks=self._hooks,
            failure_hooks=options.failure_hooks,
            pause_hooks=options.pause_hooks,
            held_hooks=options.held_hooks,
            resumed_hooks=options.resumed_hooks,
            mark_finishing=self.dispatch.mark_finishing,
            give_up=self._give_up_writing,
            hold_seen=self.dispatch.hold_seen,
            on_hold=self.dispatch.look_at_hold,
        )

    @property
    def completed(self) -> int:
        """Runs whose result this worker wrote."""
        return self.runs.completed

    # --- the loop ------------------------------------------------------------------------------
    def run(self, *, install_signals: bool = True, on_started: Callable[[], None] | None = None) -> int:
        """Run until drained (`--once`) or stopped by a signal; no pulse is left `processing`.
        `on_started` is called once the stop signals are handled (a SIGTERM right after `./reeve
        start` says it is serving is a graceful stop, not death by the signal's default action).

        Returns 0, or the exit code of a companion that stopped on its own (which stops the worker)."""
        self._database_at_start()
        self._waiter = make_waiter()
        for companion in self.companions:
            self._waiter.watch(companion.fileno())
        if install_signals:
            self.signals.install(wakeup_fd=self._waiter.wakeup_fd)
        opts = self.options
        logger.info(
            "worker_started worker=%s concurrency=%s critical_reserved=%s preempt=%s lease_s=%s once=%s "
            "dry_run=%s",
            self.name,
            opts.concurrency,
            opts.critical_reserved,
            ",".join(sorted(opts.preempt)) or "-",
            opts.lease_seconds,
            opts.once,
            opts.dry_run,
        )
        if on_started:
            on_started()
        slots = max(opts.concurrency, 1) + opts.critical_reserved
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="pulse")
        try:
            if self.dead_workers and not opts.dry_run:
                self.runs.record_lost_routine_runs(queue.recover_dead_workers(self.dead_workers))
            self.runs.record_lost_routine_runs(queue.recover_expired_leases())
            routine_firing.recompute_zones()
            self._loop(pool)
            self._drain()
        finally:
            _close_thread_connections(pool, slots)
            pool.shutdown(wait=True)
            self._hooks.shutdown(wait=True)
            self._stop_companions()
            code = self._wait_companions()
            self.signals.uninstall()
            self._waiter.close()
            if self._reaper:
                self._reaper.close()
            try:
                self._report_alive(stopped=True)
            except DATABASE_DOWN as exc:
                logger.warning("worker_final_heartbeat_failed error=%s", one_line(exc))
            logger.info("worker_stopped worker=%s completed=%s", self.name, self.completed)
        return code

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        opts = self.options
        next_renew = next_recover = next_alive = 0.0
        while not self._stop_requested():
            try:
                now = time.monotonic()
                if now >= next_renew:
                    self.dispatch.renew_leases()
                    next_renew = now + max(opts.lease_seconds / 3, 0.2)
                if now >= next_recover:
                    recovered = queue.recover_expired_leases(sparing=set(self.dispatch.running))
                    self.runs.record_lost_routine_runs(recovered)
                    next_recover = now + max(opts.lease_seconds / 2, 1.0)
                if now >= next_alive:
                    self._report_alive()
                    next_alive = now + opts.alive_seconds
                self.dispatch.reap_finished()
                self.stops.act()
                # Before the claim, never after it: a commit that lands later still wakes the wait.
                self._waiter.forget_changes()
                self._fire_routines()
                claimed = self.dispatch.claim_and_start(pool, self.runs.execute)
                idle = not claimed and not self.dispatch.running
                waiting = (
                    self.dispatch.setup_problem or self.dispatch.hold_seen() or self.dispatch.pause_seen()
                )
                if opts.once and idle and (waiting or not self.dispatch.due_now()):
                    break
                waiting_scan = self.express.tell_waiting()
                timeout = min(next_renew, next_recover, next_alive, waiting_scan) - time.monotonic()
                free = self.dispatch.free()
                if not free.ordinary:
                    # Every ordinary slot is busy: only a finishing run (a local poke) can let an
                    # ordinary pulse in, so other processes' commits need not wake us, unless a new
                    # critical pulse could take a reserved slot or make a preemptible run give way.
                    self.express.preempt_for_critical(free)
                    critical_room = free.reserved or self.express.preemptible()
                    # A routine still fires on time (its pulse waits for a slot, or takes a reserved one).
                    timeout = min(timeout, self._until_next_fire())
                    self._wait_busy(max(timeout, 0.0), local_only=not critical_room)
                    continue
                if not claimed:
                    timeout = min(timeout, self._until_next_due())
                else:  # it loops again at once when a run ends; a routine's fire may come sooner
                    timeout = min(timeout, self._until_next_fire())
                self._waiter.wait(max(timeout, 0.0))
            except DATABASE_DOWN as exc:
                self._wait_for_database(exc)
                next_renew = 0.0  # renew first: the leases ran on while nothing could renew them

    def _wait_busy(self, timeout: float, *, local_only: bool) -> None:
        """The wait of a worker whose ordinary slots are all busy. With `local_only` another process's
        commit cannot let a pulse in, but it may be a stop of one of this worker's runs: it wakes the
        wait only for that read (`StopRequests.act`), then the wait goes on."""
        deadline = time.monotonic() + timeout
        while self._waiter.wait(deadline - time.monotonic()) and local_only:
            self.stops.act()
            if time.monotonic() >= deadline:
                return

    def _until_next_due(self) -> float:
        """Seconds until the soonest pending pulse is due or the soonest routine fires; the safety
        poll when a pulse is due already (then it is held back by its session or taken by another
        worker, and a commit wakes us)."""
        now = timezone.now()
        wait = self.options.poll_seconds
        due_at = queue.next_due_at()
        if due_at is not None and due_at > now:
            wait = min((due_at - now).total_seconds(), 30.0)
        # Pulses waiting for the next spend period are claimed the moment it begins.
        wait = min(wait, self.dispatch.budget.seconds_until_resume())
        return min(
            wait,
            self._until_next_fire(now),
            self.dispatch.until_hold_recheck(now),
            self.dispatch.until_pause_ends(now),
        )

    def _until_next_fire(self, now: datetime | None = None) -> float:
        """Seconds until the soonest routine fires (inf without one). Never 0 before the fire time
        (a wake-up a hair early finds nothing due); a fire still due after this worker fired what it
        could is another worker's, mid-transaction, so a short pause, not a spin."""
        if self._next_fire_at is None:
            return float("inf")
        fire_from = self._next_fire_at - routine_firing.FIRE_AHEAD
        seconds = (fire_from - (now or timezone.now())).total_seconds()
        return max(seconds, 0.0005) if seconds > 0 else 0.05

    def _fire_routines(self) -> None:
        """Turn the routines whose time has come, or comes within FIRE_AHEAD, into pulses due at
        their fire times (each fire once, whichever worker gets there first), and learn when the
        next one fires, which bounds the wait. The pulse made ahead is then claimed the moment it is
        due, like any pulse scheduled for later: the firing's own transaction is not on the clock."""
        if self.options.dry_run:
            return
        next_at = routine_firing.next_fire_at()
        horizon = timezone.now() + routine_firing.FIRE_AHEAD
        if next_at is not None and next_at <= horizon:
            try:
                routine_firing.fire_due(horizon)
            except DATABASE_DOWN:
                raise
            except Exception:  # the worker boundary: a routine that cannot fire must not stop the queue
                logger.exception("routine_firing_failed worker=%s", self.name)
                self._next_fire_at = timezone.now() + timedelta(seconds=self.options.poll_seconds)
                return
            next_at = routine_firing.next_fire_at()
        self._next_fire_at = next_at

    def _give_up_writing(self, delay: float) -> bool:
        """A result write that would wait `delay` seconds more gives up once the drain's grace would
        be over, or at a second signal (the pulse then runs again when its lease expires)."""
        past_grace = self._drain_deadline is not None and time.monotonic() + delay > self._drain_deadline
        return past_grace or self.signals.forced.is_set()

    def _database_at_start(self) -> None:
        """A worker started while the database is down (systemd restarting it during a PostgreSQL
        restart) waits for it, backing off as the loop does, instead of ending with a traceback. No
        signal handler is installed yet and nothing runs, so SIGTERM meanwhile simply ends it."""
        backoff = Backoff(initial=1.0, cap=30.0)
        while True:
            try:
                connection.ensure_connection()
                return
            except DATABASE_DOWN as exc:
                delay = backoff.next_delay()
                logger.error(
                    "database_unavailable worker=%s at=start retry_in_s=%s error=%s",
                    self.name,
                    delay,
                    one_line(exc),
                )
                connections.close_all()
                time.sleep(delay)

    def _wait_for_database(self, error: Exception) -> None:
        """The database stopped answering the loop: running agents go on, and the loop comes back
        once it answers again (backing off up to 30 s); a signal still stops the worker meanwhile."""
        logger.error("database_unavailable worker=%s error=%s", self.name, one_line(error))
        backoff = Backoff(initial=1.0, cap=30.0)
        while not self._stop_requested():
            connections.close_all()  # the main thread's connection; the next query reconnects
            try:
                connection.ensure_connection()
                self._waiter.reconnect()
            except DATABASE_DOWN as exc:
                delay = backoff.next_delay()
                logger.warning("database_still_unavailable retry_in_s=%s error=%s", delay, one_line(exc))
                self._waiter.wait(delay, local_only=True)  # a signal wakes it
                continue
            logger.warning("database_available_again worker=%s", self.name)
            return

    # --- leases, liveness, shutdown ------------------------------------------------------------
    def _report_alive(self, *, stopped: bool = False) -> None:
        queue.report_alive(
            worker=self.name,
            host=self.host,
            pid=self.pid,
            started_at=self.started_at,
            running=len(self.dispatch.running),
            concurrency=self.options.concurrency,
            critical_reserved=self.options.critical_reserved,
            stopped=stopped,
        )

    def _drain(self) -> None:
        """Let running pulses finish within the grace period, renewing their leases; then stop them.
        The companions (the API the agents' tools call) keep running until the last run has ended."""
        dispatch = self.dispatch
        if not dispatch.running:
            return
        deadline = self._drain_deadline = time.monotonic() + self.options.grace_seconds
        logger.info(
            "worker_draining running=%s grace_s=%s", len(dispatch.running), self.options.grace_seconds
        )
        while dispatch.running and time.monotonic() < deadline and not self.signals.forced.is_set():
            try:
                dispatch.renew_leases()
            except DATABASE_DOWN as exc:
                logger.warning("lease_renewal_failed worker=%s error=%s", self.name, one_line(exc))
                connections.close_all()
            # Only a finishing run can end the drain, so local pokes are all it waits for.
            self._waiter.wait(min(max(self.options.lease_seconds / 3, 0.2), 1.0), local_only=True)
            self._stop_requested()
            dispatch.reap_finished()
            try:
                self.stops.act()  # a run asked to stop meanwhile need not wait out the grace
            except DATABASE_DOWN as exc:  # the grace's end stops it anyway, and its record reads the stop
                logger.warning("stop_requests_unread worker=%s error=%s", self.name, one_line(exc))
        if dispatch.running and not self.signals.forced.is_set():
            logger.warning("worker_interrupting running=%s", len(dispatch.running))
            self.executor.interrupt_all()
        while dispatch.running:  # the interrupted runs return their pulses to pending
            self._waiter.wait(1.0, local_only=True)
            self._stop_requested()
            dispatch.reap_finished()

    def _alert_cap_reached(self, reached_id: int) -> None:
        """A spend cap reached: the alert talks to the network, so on the hooks' thread."""
        if self.options.budget_hooks:
            self._hooks.submit(run_hooks, self.options.budget_hooks, reached_id)

    def _poke(self) -> None:
        if self._waiter:
            self._waiter.poke()

    def _stop_requested(self) -> bool:
        """Act on signals received and companions gone since the last look; True once stopping.
        Main thread only: this is where a signal's consequences run, never in its handler."""
        self.signals.check()
        for companion in self.companions:
            if not self.signals.stopping.is_set() and companion.poll() is not None:
                logger.error("reeve_process_exited name=%s code=%s", companion.name, companion.poll())
                self.signals.request_stop(f"{companion.name}_exited")
        return self.signals.stopping.is_set()

    def _force(self) -> None:
        self._stop_companions(force=True)
        self.executor.interrupt_all(grace=0.5)

    def _stop_companions(self, *, force: bool = False) -> None:
        for companion in self.companions:
            if companion.poll() is None:
                companion.stop(force=force)

    def _wait_companions(self) -> int:
        codes = [companion.wait() for companion in self.companions]
        return next((code for code in codes if code not in COMPANION_STOP_CODES), 0)


def _close_thread_connections(pool: ThreadPoolExecutor, size: int) -> None:
    """Have each of the pool's threads close its own database connections (Django's connections
    belong to the thread that opened them), so none outlives the worker loop: one task per thread,
    held at a barrier until every thread has one."""
    barrier = threading.Barrier(size)

    def close() -> None:
        connections.close_all()
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:  # a thread still busy: its connection closes with the process
            pass

    for future in [pool.submit(close) for _ in range(size)]:
        future.result()
