"""The worker's runs in flight: pulses claimed into its free slots, started on the pool, their leases
renewed, and reaped once done.

The loop (`pulses.worker.loop`) decides when to look at the queue; this module decides how many
pulses it may take (`pulses.worker.slots`), claims them through `pulses.queue` and hands each to a
pool thread (`pulses.worker.run`). A missing agent command or Desk stops the claims, so a setup
mistake never spends a pulse's retries; so does the queue-wide hold while the agent cannot run
(`pulses.agent_hold`): then one pulse is claimed as the probe at each re-check, and nothing else. The
queue's pause switch (`pulses.queue_pause`) stops every claim, the probe's too; it is read before each
claim (one compiled primary-key probe), so a pause holds from the next claim on, in every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from django.utils import timezone

from pulses import queue
from pulses.agent.executor import Executor
from pulses.budget import Gate, Hold
from pulses.models import Pulse
from pulses.worker.options import WorkerOptions
from pulses.worker.run import request
from pulses.worker.slots import CRITICAL, Free, free_slots

logger = logging.getLogger(__name__)

# While the agent command and the Desk are there, they are looked for again this often; so is the
# agent hold while there is none (another worker may start one; this worker's own held run looks at once).
SETUP_RECHECK_SECONDS = 5.0


class Dispatcher:
    """Claims pulses for the worker `worker` and keeps track of their runs until they end."""

    def __init__(
        self,
        *,
        worker: str,
        options: WorkerOptions,
        executor: Executor,
        on_done: Callable[[], None],
        on_cap_reached: Callable[[int], None] | None = None,
    ) -> None:
        self.worker = worker
        self.options = options
        self.executor = executor
        self._on_done = on_done  # called on the run's thread once its future is done
        self.running: dict[int, Future] = {}
        self.priorities: dict[int, str] = {}  # of the running pulses: which slots they hold
        self.preempted: set[int] = set()  # running pulses asked to make room for a critical one
        # Running pulses whose earlier run was preempted (`Pulse.preempted`): never preempted again.
        self.preempted_before: set[int] = set()
        # Runs whose agent has ended and whose result is being written: their leases end on purpose.
        self._finishing: set[int] = set()
        self._finishing_lock = threading.Lock()
        self._seen_dry_run: set[int] = set()
        self.setup_problem = ""  # what keeps every pulse from running (no agent command, no Desk)
        self._setup_checked_until = 0.0
        # The spend caps (pulses.budget): read again after a run ends, not at every claim.
        self.budget = Gate(worker=worker, on_reached=on_cap_reached)
        self._held = False  # the agent hold, as last read
        self._recheck_at: datetime | None = None  # the held queue's next probe, as last read
        self._hold_checked_until = 0.0
        self._paused = False  # the pause switch, as last read
        self._paused_until: datetime | None = None  # when the pause ends by itself (None: by hand)

    def free(self) -> Free:
        opts = self.options
        return free_slots(
            self.priorities.values(), ordinary=opts.concurrency, reserved=opts.critical_reserved
        )

    def claim_and_start(self, pool: ThreadPoolExecutor, run: Callable[[Pulse], None]) -> int:
        """Claim as many due pulses as there are free slots and start `run` for each on `pool`;
        how many started."""
        if self.options.dry_run:
            return self._dry_run()
        if self._cannot_run_agents():
            return 0
        if self._look_at_pause():
            return 0
        if self._look_at_hold():
            return self._probe(pool, run)
        hold = self.budget.hold()
        if hold is Hold.ALL:
            return 0
        claimed = 0
        while True:
            free = self.free()
            if free.ordinary and hold is Hold.NONE:
                limit, critical_only = free.ordinary, False
            elif (free.ordinary or free.reserved) and queue.critical_waiting_for_a_slot() is not None:
                # A read first: on SQLite a claim is a write transaction, and a busy worker comes
                # here at every commit while its reserved slots wait for a critical pulse (or, over
                # a spend cap, every slot does).
                limit, critical_only = free.ordinary + free.reserved, True
            else:
                return claimed
            pulses = self._claim(pool, run, limit=limit, critical_only=critical_only)
            claimed += len(pulses)
            # Claimed in run order, so a batch that ends with a non-critical pulse, or is short,
            # left no critical pulse behind. A full batch of critical ones took the reserved slots
            # first and may have left ordinary slots open for more: claim again.
            if critical_only or len(pulses) < limit or pulses[-1].priority != CRITICAL:
                return claimed

    def _claim(
        self, pool: ThreadPoolExecutor, run: Callable[[Pulse], None], *, limit: int, critical_only: bool
    ) -> list[Pulse]:
        pulses = queue.claim(
            worker=self.worker,
            limit=limit,
            lease_seconds=self.options.lease_seconds,
            critical_only=critical_only,
        )
        for pulse in pulses:
            future = pool.submit(run, pulse)
            # Poke only once the future is done, or the woken loop could still see it running.
            future.add_done_callback(lambda _future: self._on_done())
            self.running[pulse.pk] = future
            self.priorities[pulse.pk] = pulse.priority
            if pulse.preempted:
                self.preempted_before.add(pulse.pk)
        return pulses

    def _probe(self, pool: ThreadPoolExecutor, run: Callable[[Pulse], None]) -> int:
        """While the queue is held: at its re-check, one due pulse (whichever worker takes the
        re-check) tries the agent again; nothing else is claimed."""
        now = timezone.now()
        if self._recheck_at and self._recheck_at > now:
            return 0
        free = self.free()
        due_at = queue.next_due_at()
        if not (free.ordinary or free.reserved) or due_at is None or due_at > now:
            return 0
        if not queue.take_agent_probe(now):
            self._hold_checked_until = 0.0
            return 0
        self._recheck_at = None
        return len(self._claim(pool, run, limit=1, critical_only=not free.ordinary))

    def pause_seen(self) -> bool:
        """Whether the queue was paused when this worker last looked."""
        return self._paused

    def until_pause_ends(self, now: datetime) -> float:
        """Seconds until a pause with an end resumes by itself (inf otherwise): bounds the loop's
        wait, so claims start at that time, not at the next safety poll."""
        if not self._paused or self._paused_until is None:
            return float("inf")
        return max((self._paused_until - now).total_seconds(), 0.001)

    def _look_at_pause(self) -> bool:
        """Whether claims are paused (read before each claim; a pause whose end has come is resumed
        there, its routines' catch-up rule applied before any claim)."""
        paused, until = queue.claims_paused()
        if paused != self._paused:
            if paused:
                logger.warning(
                    "worker_queue_paused worker=%s until=%s; no pulse is claimed until it resumes",
                    self.worker,
                    until.isoformat() if until else "-",
                )
            else:
                logger.warning("worker_queue_resumed worker=%s: claiming pulses again", self.worker)
        self._paused, self._paused_until = paused, until
        return paused

    def hold_seen(self) -> bool:
        """Whether the queue was held when this worker last looked."""
        return self._held

    def look_at_hold(self) -> None:
        """Read the hold again before the next claim (a run here was held, or ended the hold)."""
        self._hold_checked_until = 0.0

    def until_hold_recheck(self, now: datetime) -> float:
        """Seconds until the held queue's next probe (inf without a hold): bounds the loop's wait."""
        if not self._held or self._recheck_at is None:
            return float("inf")
        return max((self._recheck_at - now).total_seconds(), 0.05)

    def _look_at_hold(self) -> bool:
        """Whether the queue is held (the agent cannot run now). Read before each claim while held,
        so a hold ended elsewhere (agent_probe, doctor, another worker's probe) is seen at the next
        wake-up; every few seconds while not."""
        mono = time.monotonic()
        if not self._held and mono < self._hold_checked_until:
            return False
        self._hold_checked_until = mono + SETUP_RECHECK_SECONDS
        recheck_at = queue.agent_hold_recheck_at()
        held = recheck_at is not None
        if held != self._held:
            if held:
                logger.warning(
                    "worker_agent_held worker=%s recheck_at=%s; no pulse is claimed until then",
                    self.worker,
                    recheck_at.isoformat(),
                )
            else:
                logger.warning("worker_agent_hold_ended worker=%s: claiming pulses again", self.worker)
        self._held, self._recheck_at = held, recheck_at
        return held

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
                    self.worker,
                    problem,
                )
            else:
                logger.warning("worker_agent_ready worker=%s: claiming pulses again", self.worker)
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

    def due_now(self) -> bool:
        """Whether a pulse is due that this worker could run now (never in a dry run)."""
        if self.options.dry_run:
            return False
        return self._due_within_budget()

    def _due_within_budget(self) -> bool:
        """Whether a due pulse is one the spend caps let this worker claim."""
        hold = self.budget.hold()
        if hold is Hold.NONE:
            return Pulse.objects.due().exists()
        return hold is Hold.CRITICAL_ONLY and queue.critical_waiting_for_a_slot() is not None

    def reap_finished(self) -> None:
        for pulse_id in [pid for pid, fut in self.running.items() if fut.done()]:
            self.budget.spent()
            self.running.pop(pulse_id)
            self.priorities.pop(pulse_id, None)
            self.preempted.discard(pulse_id)
            self.preempted_before.discard(pulse_id)
            with self._finishing_lock:
                self._finishing.discard(pulse_id)

    def mark_finishing(self, pulse_id: int) -> None:
        with self._finishing_lock:
            self._finishing.add(pulse_id)

    def renew_leases(self) -> None:
        """Renew the leases of the runs still going. A run marks itself finishing before its result
        ends the lease, so one that finished while this renewal ran is told apart from a lease that
        another worker took over (its lease expired and was recovered, or claimed again)."""
        # A finishing run holds its lease until its result is written, which may take retries
        # (a database outage): renewed, its lease cannot expire under it and be recovered as lost.
        with self._finishing_lock:
            ids = {pid for pid, future in self.running.items() if not future.done()}
        if not ids:
            return
        held = queue.renew_leases(worker=self.worker, pulse_ids=ids, lease_seconds=self.options.lease_seconds)
        for lost in ids - held - self._still_finishing(ids):
            logger.warning("lease_lost id=%s worker=%s", lost, self.worker)

    def _still_finishing(self, ids: set[int]) -> set[int]:
        with self._finishing_lock:
            return ids & self._finishing
