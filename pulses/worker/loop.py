"""The worker loop: wake-ups, concurrency, leases, signals, drain.

The main thread claims, renews leases, reports the worker alive, recovers expired leases and fires
due routines; a thread per running pulse runs it (`pulses.worker.run`) and reports back through
`pulses.queue`. The database is touched only in short
transactions: nothing is locked while an agent runs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone
from django.utils.module_loading import import_string

from pulses import queue
from pulses.agent.executor import Executor, Reaper
from pulses.backoff import Backoff
from pulses.db.wakeup import Waiter, make_waiter
from pulses.models import PRIORITY_RANK, Pulse
from pulses.routines import firing as routine_firing
from pulses.worker.run import DATABASE_DOWN, Runner, default_executor, one_line, request, run_hooks
from pulses.worker.shutdown import ShutdownSignals
from pulses.worker.slots import CRITICAL, Free, free_slots, preemptible

logger = logging.getLogger(__name__)

# While the agent command and the Desk are there, they are looked for again this often.
SETUP_RECHECK_SECONDS = 5.0
WAITING_SCAN_SECONDS = 1.0  # how often a worker running pulses looks for critical pulses held back by them
# How a companion that we stopped exits; any other code is passed on as the worker's own.
COMPANION_STOP_CODES = (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGQUIT)


@dataclass
class WorkerOptions:
    concurrency: int = 1
    critical_reserved: int = 0  # slots beyond `concurrency` that only critical pulses take
    preempt: frozenset[str] = frozenset()  # priorities a critical pulse may interrupt for a slot
    busy_notice_seconds: float = 5.0  # a critical pulse waiting this long for its session is reported
    lease_seconds: float = 60.0
    poll_seconds: float = 5.0
    grace_seconds: float = 30.0
    alive_seconds: float = 10.0  # how often the worker reports it is alive (PULSE_HEARTBEAT_SECONDS)
    once: bool = False
    dry_run: bool = False
    failure_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Called with a routine's id when its failures paused it (the Telegram alert).
    pause_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Called with a critical pulse's id once it has waited `busy_notice_seconds` for its session.
    waiting_hooks: list[Callable[[int], None]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, **overrides: object) -> WorkerOptions:
        hooks = [import_string(path) for path in getattr(settings, "PULSE_FAILURE_HOOKS", [])]
        waiting = [import_string(path) for path in getattr(settings, "PULSE_WAITING_HOOKS", [])]
        if settings.PULSE_CRITICAL_RESERVED < 0:
            raise ValueError("PULSE_CRITICAL_RESERVED must be 0 (no express lane) or more")
        options = cls(
            concurrency=settings.PULSE_MAX_CONCURRENT,
            critical_reserved=settings.PULSE_CRITICAL_RESERVED,
            preempt=preemptible(settings.PULSE_PREEMPT),
            busy_notice_seconds=settings.PULSE_BUSY_NOTICE_SECONDS,
            waiting_hooks=waiting,
            lease_seconds=settings.PULSE_LEASE_SECONDS,
            poll_seconds=settings.PULSE_POLL_SECONDS,
            grace_seconds=settings.PULSE_SHUTDOWN_GRACE_SECONDS,
            alive_seconds=settings.PULSE_HEARTBEAT_SECONDS,
            failure_hooks=hooks,
            pause_hooks=[import_string(path) for path in getattr(settings, "ROUTINE_PAUSE_HOOKS", [])],
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(options, key, value)
        return options


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
    ) -> None:
        self.options = options
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.name = f"{self.host}:{self.pid}"
        self.started_at = timezone.now()
        self._reaper = None if executor or options.dry_run else Reaper()
        self.executor = executor or default_executor(self._reaper)
        self._running: dict[int, Future] = {}
        self._priorities: dict[int, str] = {}  # of the running pulses: which slots they hold
        self._preempted: set[int] = set()  # running pulses asked to make room for a critical one
        self._waiting_scan_at = 0.0
        self._told_waiting: set[int] = set()  # critical pulses whose wait the waiting hooks heard of
        # Runs whose agent has ended and whose result is being written: their leases end on purpose.
        self._finishing: set[int] = set()
        self._finishing_lock = threading.Lock()
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="failure-hooks")
        self._waiter: Waiter | None = None
        self._seen_dry_run: set[int] = set()
        self.signals = ShutdownSignals(on_stop=self._stop_companions, on_force=self._force)
        self.companions = list(companions)
        self._drain_deadline: float | None = None
        self._next_fire_at: datetime | None = None
        self.setup_problem = ""  # what keeps every pulse from running (no agent command, no Desk)
        self._setup_checked_until = 0.0
        self.runs = Runner(
            worker=self.name,
            executor=self.executor,
            hooks=self._hooks,
            failure_hooks=options.failure_hooks,
            pause_hooks=options.pause_hooks,
            mark_finishing=self._mark_finishing,
            give_up=self._give_up_writing,
        )

    @property
    def completed(self) -> int:
        """Runs whose result this worker wrote."""
        return self.runs.completed

    # --- the loop ------------------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> int:
        """Run until drained (`--once`) or stopped by a signal; no pulse is left `processing`.

        Returns 0, or the exit code of a companion that stopped on its own (which stops the worker)."""
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
        slots = max(opts.concurrency, 1) + opts.critical_reserved
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="pulse")
        try:
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
                self._report_alive()
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
                    self._renew()
                    next_renew = now + max(opts.lease_seconds / 3, 0.2)
                if now >= next_recover:
                    self.runs.record_lost_routine_runs(queue.recover_expired_leases())
                    next_recover = now + max(opts.lease_seconds / 2, 1.0)
                if now >= next_alive:
                    self._report_alive()
                    next_alive = now + opts.alive_seconds
                self._reap_finished()
                # Before the claim, never after it: a commit that lands later still wakes the wait.
                self._waiter.forget_changes()
                self._fire_routines()
                claimed = self._claim_and_start(pool)
                idle = not claimed and not self._running
                if opts.once and idle and (self.setup_problem or not self._due_now()):
                    break
                timeout = min(next_renew, next_recover, next_alive, self._tell_waiting()) - time.monotonic()
                free = self._free()
                if not free.ordinary:
                    # Every ordinary slot is busy: only a finishing run (a local poke) can let an
                    # ordinary pulse in, so other processes' commits need not wake us, unless a new
                    # critical pulse could take a reserved slot or make a preemptible run give way.
                    self._preempt_for_critical(free)
                    critical_room = free.reserved or self._preemptible()
                    # A routine still fires on time (its pulse waits for a slot, or takes a reserved one).
                    timeout = min(timeout, self._until_next_fire())
                    self._waiter.wait(max(timeout, 0.0), local_only=not critical_room)
                    continue
                if not claimed:
                    timeout = min(timeout, self._until_next_due())
                else:  # it loops again at once when a run ends; a routine's fire may come sooner
                    timeout = min(timeout, self._until_next_fire())
                self._waiter.wait(max(timeout, 0.0))
            except DATABASE_DOWN as exc:
                self._wait_for_database(exc)
                next_renew = 0.0  # renew first: the leases ran on while nothing could renew them

    def _free(self) -> Free:
        opts = self.options
        return free_slots(
            self._priorities.values(), ordinary=opts.concurrency, reserved=opts.critical_reserved
        )

    def _claim_and_start(self, pool: ThreadPoolExecutor) -> int:
        if self.options.dry_run:
            return self._dry_run()
        if self._cannot_run_agents():
            return 0
        claimed = 0
        while True:
            free = self._free()
            if free.ordinary:
                limit, critical_only = free.ordinary, False
            elif free.reserved and queue.critical_waiting_for_a_slot() is not None:
                # A read first: on SQLite a claim is a write transaction, and a busy worker comes
                # here at every commit while its reserved slots wait for a critical pulse.
                limit, critical_only = free.reserved, True
            else:
                return claimed
            pulses = queue.claim(
                worker=self.name,
                limit=limit,
                lease_seconds=self.options.lease_seconds,
                critical_only=critical_only,
            )
            for pulse in pulses:
                future = pool.submit(self.runs.execute, pulse)
                # Poke only once the future is done, or the woken loop could still see it running.
                future.add_done_callback(lambda _future: self._poke())
                self._running[pulse.pk] = future
                self._priorities[pulse.pk] = pulse.priority
            claimed += len(pulses)
            # Claimed in run order, so a batch that ends with a non-critical pulse, or is short,
            # left no critical pulse behind. A full batch of critical ones took the reserved slots
            # first and may have left ordinary slots open for more: claim again.
            if critical_only or len(pulses) < limit or pulses[-1].priority != CRITICAL:
                return claimed

    def _cannot_run_agents(self) -> bool:
        """True while the agent command or the Desk is missing: then nothing is claimed, so a setup
        mistake never spends a pulse's retries. Checked before each claim while there is a problem, so
        the worker carries on by itself once it is fixed (the safety poll brings the next look), and
        every few seconds while there is none (a few stat calls kept off the busy path)."""
        now = time.monotonic()
        if not self.setup_problem and now < self._setup_checked_until:
            return False
        self._setup_checked_until = now + SETUP_RECHECK_SECONDS
        problem = self.executor.setup_problem()
        if problem != self.setup_problem:
            if problem:
                logger.warning(
                    "worker_waiting_for_agent worker=%s problem=%s; no pulse is claimed until it is fixed",
                    self.name,
                    problem,
                )
            else:
                logger.warning("worker_agent_ready worker=%s: claiming pulses again", self.name)
            self.setup_problem = problem
        return bool(problem)

    def _dry_run(self) -> int:
        fresh = [p for p in Pulse.objects.due()[:100] if p.pk not in self._seen_dry_run]
        for pulse in fresh:
            self._seen_dry_run.add(pulse.pk)
            logger.info(
                "pulse_dry_run id=%s priority=%s argv=%s",
                pulse.pk,
                pulse.priority,
                self.executor.argv(request(pulse)),
            )
        return 0

    def _due_now(self) -> bool:
        if self.options.dry_run:
            return False
        return Pulse.objects.due().exists()

    def _until_next_due(self) -> float:
        """Seconds until the soonest pending pulse is due or the soonest routine fires; the safety
        poll when a pulse is due already (then it is held back by its session or taken by another
        worker, and a commit wakes us)."""
        now = timezone.now()
        wait = self.options.poll_seconds
        due_at = queue.next_due_at()
        if due_at is not None and due_at > now:
            wait = min((due_at - now).total_seconds(), 30.0)
        return min(wait, self._until_next_fire(now))

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

    def _reap_finished(self) -> None:
        for pulse_id in [pid for pid, fut in self._running.items() if fut.done()]:
            self._running.pop(pulse_id)
            self._priorities.pop(pulse_id, None)
            self._preempted.discard(pulse_id)
            with self._finishing_lock:
                self._finishing.discard(pulse_id)

    def _mark_finishing(self, pulse_id: int) -> None:
        with self._finishing_lock:
            self._finishing.add(pulse_id)

    # --- the express lane ----------------------------------------------------------------------
    def _preemptible(self) -> list[int]:
        """Running pulses a critical pulse may interrupt (PULSE_PREEMPT), lowest priority and
        latest claimed first; not those already asked to stop."""
        runs = [
            (pid, priority)
            for pid, priority in self._priorities.items()
            if priority in self.options.preempt and pid not in self._preempted
        ]
        runs.sort(key=lambda run: (PRIORITY_RANK.get(run[1], 0), run[0]), reverse=True)
        return [pid for pid, _ in runs]

    def _preempt_for_critical(self, free: Free) -> None:
        """No slot is free for a critical pulse that is due and whose session is free: ask one
        preemptible run to stop (as a drain would) so the critical pulse takes its slot. The run
        returns to pending with its session and without spending a retry."""
        if free.for_critical or self._preempted or self.signals.stopping.is_set():
            return  # one preemption at a time: the next waits until that slot has changed hands
        victims = self._preemptible()
        if not victims:
            return
        waiting = queue.critical_waiting_for_a_slot()
        if waiting is None:
            return
        victim = victims[0]
        self._preempted.add(victim)
        logger.warning("pulse_preempted id=%s for=%s worker=%s", victim, waiting, self.name)
        because = f"interrupted for pulse {waiting}"
        # Off the loop: stopping the agent waits up to its grace for the group to go.
        thread = threading.Thread(
            target=self.executor.interrupt, args=(victim,), kwargs={"because": because}, daemon=True
        )
        thread.start()

    def _tell_waiting(self) -> float:
        """Hand critical pulses held back by this worker's running sessions for longer than
        `busy_notice_seconds` to the waiting hooks, once each (the Telegram bridge tells the chat
        it is still busy). Returns the monotonic time it needs to look again."""
        opts = self.options
        now = time.monotonic()
        if not opts.waiting_hooks or not self._running:
            return float("inf")
        if now < self._waiting_scan_at:
            return self._waiting_scan_at
        self._waiting_scan_at = now + WAITING_SCAN_SECONDS
        waiting = queue.waiting_for_sessions_of(self.name)
        self._told_waiting &= {pulse_id for pulse_id, _ in waiting}  # the rest ran or went
        for pulse_id, due_at in waiting:
            waited = (timezone.now() - due_at).total_seconds()
            if pulse_id not in self._told_waiting and waited >= opts.busy_notice_seconds:
                self._told_waiting.add(pulse_id)
                logger.info("pulse_waiting_for_session id=%s waited_s=%.1f", pulse_id, waited)
                self._hooks.submit(run_hooks, opts.waiting_hooks, pulse_id)
        return self._waiting_scan_at

    def _give_up_writing(self, delay: float) -> bool:
        """A result write that would wait `delay` seconds more gives up once the drain's grace would
        be over, or at a second signal (the pulse then runs again when its lease expires)."""
        past_grace = self._drain_deadline is not None and time.monotonic() + delay > self._drain_deadline
        return past_grace or self.signals.forced.is_set()

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
    def _renew(self) -> None:
        """Renew the leases of the runs still going. A run marks itself finishing before its result
        ends the lease, so one that finished while this renewal ran is told apart from a lease that
        another worker took over (its lease expired and was recovered, or claimed again)."""
        # A finishing run holds its lease until its result is written, which may take retries
        # (a database outage): renewed, its lease cannot expire under it and be recovered as lost.
        with self._finishing_lock:
            ids = {pid for pid, future in self._running.items() if not future.done()}
        if not ids:
            return
        held = queue.renew_leases(worker=self.name, pulse_ids=ids, lease_seconds=self.options.lease_seconds)
        for lost in ids - held - self._still_finishing(ids):
            logger.warning("lease_lost id=%s worker=%s", lost, self.name)

    def _still_finishing(self, ids: set[int]) -> set[int]:
        with self._finishing_lock:
            return ids & self._finishing

    def _report_alive(self) -> None:
        queue.report_alive(
            worker=self.name,
            host=self.host,
            pid=self.pid,
            started_at=self.started_at,
            running=len(self._running),
            concurrency=self.options.concurrency,
            critical_reserved=self.options.critical_reserved,
        )

    def _drain(self) -> None:
        """Let running pulses finish within the grace period, renewing their leases; then stop them."""
        if not self._running:
            return
        deadline = self._drain_deadline = time.monotonic() + self.options.grace_seconds
        logger.info("worker_draining running=%s grace_s=%s", len(self._running), self.options.grace_seconds)
        while self._running and time.monotonic() < deadline and not self.signals.forced.is_set():
            try:
                self._renew()
            except DATABASE_DOWN as exc:
                logger.warning("lease_renewal_failed worker=%s error=%s", self.name, one_line(exc))
                connections.close_all()
            # Only a finishing run can end the drain, so local pokes are all it waits for.
            self._waiter.wait(min(max(self.options.lease_seconds / 3, 0.2), 1.0), local_only=True)
            self._stop_requested()
            self._reap_finished()
        if self._running and not self.signals.forced.is_set():
            logger.warning("worker_interrupting running=%s", len(self._running))
            self.executor.interrupt_all()
        while self._running:  # the interrupted runs return their pulses to pending
            self._waiter.wait(1.0, local_only=True)
            self._stop_requested()
            self._reap_finished()

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
