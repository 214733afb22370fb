"""One pulse's run, on a pool thread of the worker: from the claim to its record.

The run token for the agent's tools, the wake check, the agent itself (`pulses.agent.executor`), the
session id stored mid-run, the result written back through `pulses.queue` (retried while the database
is down), the routine's bookkeeping, and the hooks that talk to the network (failure alerts, a paused
routine's alert) on their own thread. The loop around it (claims, leases, signals) is
`pulses.worker.loop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.utils import timezone

from pulses import queue, run_tails
from pulses.agent import sandbox as agent_sandbox
from pulses.agent import wake_check
from pulses.agent.env import API_URL_VARIABLE, RUN_TOKEN_VARIABLE
from pulses.agent.executor import AgentRequest, AttemptOutcome, Executor
from pulses.agent.process_groups import Reaper
from pulses.agent_hold import HOLD_ID
from pulses.api.tokens import run_token
from pulses.backoff import Backoff
from pulses.models import Pulse, Status
from pulses.routines import changes as routine_changes
from pulses.routines.models import RunResult
from pulses.web import metrics

logger = logging.getLogger(__name__)

# What a database restart, failover or network cut raises; the worker waits those out.
DATABASE_DOWN = (OperationalError, InterfaceError)
T = TypeVar("T")
SESSION_RECORD_DELAY = 0.3  # seconds a run lasts before its session id is stored mid-run


class Runner:
    """Runs claimed pulses for the worker `worker`, one call of `execute` per pulse."""

    def __init__(
        self,
        *,
        worker: str,
        executor: Executor,
        hooks: ThreadPoolExecutor,
        failure_hooks: Sequence[Callable[[int], None]] = (),
        pause_hooks: Sequence[Callable[[int], None]] = (),
        held_hooks: Sequence[Callable[[int], None]] = (),
        resumed_hooks: Sequence[Callable[[int], None]] = (),
        mark_finishing: Callable[[int], None],
        give_up: Callable[[float], bool],
        hold_seen: Callable[[], bool] = lambda: False,
        on_hold: Callable[[], None] = lambda: None,
    ) -> None:
        self.worker = worker
        self.executor = executor
        self._hooks = hooks
        self._failure_hooks = list(failure_hooks)
        self._pause_hooks = list(pause_hooks)
        # The agent cannot run now / runs again: the person is told (telegram_bridge.alerts).
        self._held_hooks = list(held_hooks)
        self._resumed_hooks = list(resumed_hooks)
        # Whether the dispatcher last saw the queue held (then a run that reaches the model ends the
        # hold), and how a run that found the agent unable to run tells it to look again.
        self._hold_seen = hold_seen
        self._on_hold = on_hold
        # Called before the write that ends the lease, so the loop's renewal tells a run that ends
        # on purpose from a lease another worker took over.
        self._mark_finishing = mark_finishing
        # Whether a result write that would wait `delay` seconds more should give up (a stopping
        # worker's grace is over, or a second signal came).
        self._give_up = give_up
        self.completed = 0

    def execute(self, pulse: Pulse) -> None:
        """Run one claimed pulse to its record (on a pool thread); nothing escapes but a forced stop."""
        session_timer: threading.Timer | None = None

        def on_session(session_id: str) -> None:
            # The agent's tools may ask for the running session (MCP schedule_pulse with
            # resume_current_session), so it is stored while the run goes on; but most of a short
            # run's cost would be that extra write, so it waits until the run has lasted a moment.
            nonlocal session_timer
            if session_id != pulse.session_id:  # a resume announces the session it already has
                session_timer = threading.Timer(
                    SESSION_RECORD_DELAY, self._record_session, args=(pulse.pk, session_id)
                )
                session_timer.daemon = True
                session_timer.start()

        # What the agent does, written in batches while it runs (pulses/run_tails.py).
        keep = run_tails.tail_limit()
        tail = run_tails.TailWriter(pulse.pk, pulse.attempt_count, keep=keep) if keep else None
        try:
            # The agent's tools reach Reeve through the API with a token of this run alone.
            access = {
                RUN_TOKEN_VARIABLE: run_token(pulse, worker=self.worker),
                API_URL_VARIABLE: settings.REEVE_API_URL,
            }
            outcome, prompt = self._wake_check(pulse)
            agent_ran = outcome is None
            if outcome is None:
                outcome = self.executor.run(
                    request(pulse, env=access, prompt=prompt),
                    on_session=on_session,
                    on_event=tail.add if tail else None,
                )
            if tail:
                tail.close()  # before the result: whoever sees the pulse finished sees its whole tail
            self._mark_finishing(pulse.pk)  # before the write that ends the lease (see the loop's _renew)
            if session_timer:
                session_timer.cancel()  # the attempt's record below stores the session anyway
            if outcome.interrupted:  # a drain, a preemption or a stop asked (pulses.stops)
                self._report(queue.end_interrupted, pulse, outcome)
                return
            if outcome.unavailable is not None:
                self._hold(pulse, outcome)
                return
            status = self._report(queue.record_attempt, pulse, outcome)
            metrics.record_attempt(
                priority=pulse.priority, success=outcome.success, seconds=outcome.duration_ms / 1000
            )
            metrics.record_cost(source=pulse.source, cost_usd=outcome.cost_usd)
            self.completed += 1
            if pulse.routine_id and status in (Status.COMPLETED, Status.FAILED):
                self._record_routine_run(pulse, status, outcome)
            if status == Status.FAILED and self._failure_hooks:
                # Alerts talk to the network: on their own thread, so a slow or unreachable
                # Telegram never holds a pulse slot.
                self._hooks.submit(run_hooks, self._failure_hooks, pulse.pk)
            # The agent reached its model (it ran and exited, however the pulse fared).
            if agent_ran and outcome.exit_code is not None:
                self._agent_ran(outcome)
        except DATABASE_DOWN:
            logger.error(
                "pulse_result_lost id=%s worker=%s reason=database_unavailable "
                "(the pulse runs again once its lease expires)",
                pulse.pk,
                self.worker,
            )
        except Exception as exc:  # the worker boundary: whatever broke is written onto the attempt
            logger.exception("pulse_crashed id=%s worker=%s", pulse.pk, self.worker)
            self._record_crash(pulse, exc)
        finally:
            if tail:
                tail.close()  # a run that raised: the timer stops, what waits is written (or dropped)
            close_old_connections()

    def _record_crash(self, pulse: Pulse, exc: Exception) -> None:
        """A run whose handling raised (its record refused by the database, a bug) is that pulse's
        failed attempt: it counts against its retries, so a pulse that always breaks the record ends
        failed (with the alert any failed pulse gets) instead of coming back forever; the worker goes
        on with the next pulse. The error is written as its repr, which any database can store."""
        self._mark_finishing(pulse.pk)
        now = timezone.now()
        outcome = AttemptOutcome(
            success=False, started_at=now, finished_at=now, error=f"worker error: {exc!r}"
        )
        try:
            status = self._report(queue.record_attempt, pulse, outcome)
        except Exception:  # the lease then expires, and its recovery counts the attempt
            logger.exception("pulse_crash_not_recorded id=%s worker=%s", pulse.pk, self.worker)
            return
        self.completed += 1
        if pulse.routine_id and status in (Status.COMPLETED, Status.FAILED):
            try:
                self._record_routine_run(pulse, status, outcome)
            except Exception:
                logger.exception("routine_run_not_recorded id=%s worker=%s", pulse.pk, self.worker)
        if status == Status.FAILED and self._failure_hooks:
            self._hooks.submit(run_hooks, self._failure_hooks, pulse.pk)

    def _hold(self, pulse: Pulse, outcome: AttemptOutcome) -> None:
        """The agent cannot run now: the pulse goes back to pending with no attempt spent, the queue
        holds, and the person is told once, when this run started the hold."""
        _released, started = self._report(queue.hold_for_agent, pulse, outcome)
        self._on_hold()
        if started and self._held_hooks:
            self._hooks.submit(run_hooks, self._held_hooks, HOLD_ID)

    def _agent_ran(self, outcome: AttemptOutcome) -> None:
        """A run reached the model: a usage warning it carried is noted; a hold it outlived ends.
        Its result is stored already: a database outage here only delays that (the next run)."""
        try:
            if outcome.warning:
                queue.warn_agent_usage(outcome.warning)
            ended = self._hold_seen() and queue.agent_ready(
                by=self.worker, ran_from=outcome.started_at, notify=False
            )
        except DATABASE_DOWN as exc:
            logger.warning("agent_hold_not_updated worker=%s error=%s", self.worker, one_line(exc))
            return
        if ended:
            self._on_hold()
            if self._resumed_hooks:
                self._hooks.submit(run_hooks, self._resumed_hooks, HOLD_ID)

    def _wake_check(self, pulse: Pulse) -> tuple[AttemptOutcome | None, str]:
        """Run the pulse's wake check, if it has one: (None, the prompt to run) when the agent
        should start, else the outcome to record without it (skipped, or failed)."""
        if not pulse.check_command:
            return None, pulse.prompt
        started = timezone.now()
        # The worker's reaper kills the check's group too if the worker dies while it runs.
        check = wake_check.run(pulse.check_command, reaper=getattr(self.executor, "reaper", None))
        finished = timezone.now()
        logger.info("wake_check_done id=%s exit=%s", pulse.pk, check.exit_code)
        if check.wakes:
            return None, wake_check.prompt_with_output(pulse.prompt, check.output)
        if check.skips:
            text = f"wake check: nothing to do\n{check.output}".strip()
            outcome = AttemptOutcome(
                success=True,
                started_at=started,
                finished_at=finished,
                exit_code=1,
                result_text=text,
                skipped=True,
            )
            return outcome, pulse.prompt
        failed = AttemptOutcome(
            success=False,
            started_at=started,
            finished_at=finished,
            exit_code=check.exit_code,
            error=check.failure(),
            stdout_tail=check.output,
        )
        return failed, pulse.prompt

    def record_lost_routine_runs(self, recovered: list[int]) -> None:
        """Runs recovered from a worker that died: a routine's run lost for good counts as failed."""
        if not recovered:
            return
        for pulse in Pulse.objects.filter(pk__in=recovered, status=Status.FAILED, routine__isnull=False):
            ended = pulse.finished_at or timezone.now()
            outcome = AttemptOutcome(success=False, started_at=ended, finished_at=ended)
            self._record_routine_run(pulse, Status.FAILED, outcome)

    def _record_routine_run(self, pulse: Pulse, status: str, outcome: AttemptOutcome) -> None:
        """A routine's run ended: its failure streak moves, and a routine it pauses is alerted."""
        result = RunResult.SKIPPED if outcome.skipped else status
        if outcome.skipped:
            metrics.record_routine_skip(reason="check")
        if routine_changes.record_run(pulse, result, session_id=outcome.session_id) and self._pause_hooks:
            self._hooks.submit(run_hooks, self._pause_hooks, pulse.routine_id)

    def _report(self, write: Callable[..., T], pulse: Pulse, outcome: AttemptOutcome) -> T:
        """Store a finished run. While the database is unreachable (a restart, a failover) keep
        trying, so the result of a run is not thrown away: the write only lands if this claim still
        holds. A stopping worker gives up when its drain's grace ends, or at a second signal."""
        backoff = Backoff(initial=0.5, cap=10.0)
        while True:
            try:
                return write(pulse, worker=self.worker, outcome=outcome)
            except DATABASE_DOWN as exc:
                connections.close_all()  # this thread's connection: the next try opens a new one
                delay = backoff.next_delay()
                if self._give_up(delay):
                    raise
                logger.warning(
                    "pulse_record_retry id=%s retry_in_s=%s error=%s", pulse.pk, delay, one_line(exc)
                )
                time.sleep(delay)

    def _record_session(self, pulse_id: int, session_id: str) -> None:
        try:
            queue.record_session(pulse_id, worker=self.worker, session_id=session_id)
        except DATABASE_DOWN as exc:  # the attempt's record stores the session when the run ends
            logger.warning("pulse_session_not_stored id=%s error=%s", pulse_id, one_line(exc))
        finally:
            connections.close_all()  # this timer thread is done with its connection


def run_hooks(hooks: Sequence[Callable[[int], None]], object_id: int) -> None:
    """Call each hook with the id, on the hooks' own thread; a hook that fails is logged, the rest run."""
    try:
        for hook in hooks:
            try:
                hook(object_id)
            except Exception:
                logger.exception("hook_error id=%s hook=%s", object_id, hook)
    finally:
        close_old_connections()


def request(pulse: Pulse, *, env: dict[str, str] | None = None, prompt: str | None = None) -> AgentRequest:
    """What the executor needs of a pulse (its prompt, after a wake check, may differ), with its agent
    options (its own timeout replaces PULSE_TIMEOUT_SECONDS: the lease renewals keep a long run
    claimed however long it lasts)."""
    return AgentRequest(
        prompt=pulse.prompt if prompt is None else prompt,
        session_id=pulse.session_id,
        sticky_notes=tuple(pulse.sticky_notes or ()),
        pulse_id=pulse.pk,
        env=env or {},
        model=pulse.model,
        timeout=pulse.timeout_seconds,
        max_turns=pulse.max_turns,
    )


def default_executor(reaper: Reaper | None) -> Executor:
    """The agent CLI the settings name, run in the Desk (in the sandbox AGENT_SANDBOX gives)."""
    if settings.AGENT_SANDBOX != agent_sandbox.OFF:
        found = agent_sandbox.containment(settings.AGENT_SANDBOX)
        log = logger.info if found.active == agent_sandbox.BWRAP else logger.warning
        log(
            "agent_containment mode=%s active=%s %s",
            found.mode,
            found.active,
            found.problem or found.note or "",
        )
    return Executor(
        command=settings.HAPI_COMMAND,
        desk=settings.REEVE_DESK_PATH,
        timeout=settings.PULSE_TIMEOUT_SECONDS,
        reaper=reaper,
        passthrough=settings.AGENT_ENV_PASSTHROUGH,
        agent=settings.HAPI_AGENT,
        max_api_retries=settings.AGENT_MAX_API_RETRIES,
        sandbox=settings.AGENT_SANDBOX,
        model=settings.AGENT_MODEL,
    )


def one_line(error: Exception) -> str:
    """An error on one line of at most 300 characters, for a log line."""
    return " ".join(str(error).split())[:300]
