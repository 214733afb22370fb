"""Runs the agent CLI for one pulse and says what came of it. No ORM here.

The agent runs without a shell, in the Desk, in a process group of its own, so a timeout or a
shutdown can kill it with everything it started. It also dies with its worker: the worker's reaper
process (pulses/agent/reaper.sh) kills every registered group when the worker's end of its pipe closes
(both in pulses/agent/process_groups.py).

A run the agent's CLI keeps retrying against its model's API (`system`/`api_retry` events: a refused
key, an overloaded API) is stopped by Reeve past `max_api_retries`, and at once on a 401/403: Claude
Code would otherwise retry for minutes while the slot waits. What a failed run means (the pulse's
failure, or the agent unable to run now) is `pulses.agent.readiness`'s one rule, applied to the
finished run in pulses/agent/outcome.py.

The prompt crosses to the agent as an argument after `--` and a resumed session as `--resume=ID`, so
neither can ever be read as an option (the command line: pulses/agent/command.py); the agent's
environment is built from an allowlist (pulses/agent/env.py), so none of Reeve's secrets reach it. With
AGENT_SANDBOX it runs inside bubblewrap (pulses/agent/sandbox.py), which hides Reeve's files and
processes from it.

A run ends when the agent exits: what it left in its group is killed, and its pipes are read for
DRAIN_SECONDS more at most (pulses/agent/output.py), so a child it detached (`setsid`) that holds
them cannot keep the pulse running (under the sandbox that child dies with the agent's PID namespace
anyway).

The group is made with `process_group=0` rather than a new session or a preexec_fn, which keeps
CPython on its vfork() path: spawning costs ~0.2 ms instead of ~6-9 ms for a full fork of the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.utils import timezone

from pulses.agent import readiness
from pulses.agent import sandbox as agent_sandbox
from pulses.agent.command import (
    ALLOW_REEVE_TOOLS,
    DEFAULT_AGENT,
    agent_command,
    agent_options,
    build_prompt,
    model_problem,
    runs_claude,
    setup_problem,
)
from pulses.agent.env import PULSE_ID_VARIABLE, agent_environment, service_environment
from pulses.agent.events import RunEvent
from pulses.agent.outcome import AgentRun, AttemptOutcome, outcome_of
from pulses.agent.output import read_outputs
from pulses.agent.process_groups import KILL_GRACE_SECONDS, Reaper, kill_groups, signal_group
from pulses.agent.stream import AgentSignals, StreamReader

# The entry point the worker, the commands and doctor import; the parts live beside it.
__all__ = ["AgentRequest", "AttemptOutcome", "Executor"]

logger = logging.getLogger(__name__)

RESUME_REJECTED = "no conversation found"
DEFAULT_MAX_API_RETRIES = 3


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    session_id: str = ""
    sticky_notes: tuple[str, ...] = ()
    pulse_id: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # what the worker adds for this run only
    # The pulse's agent options (pulses.limits checked them): "" / None take the executor's defaults.
    model: str = ""
    timeout: float | None = None
    max_turns: int | None = None


class Executor:
    """Runs `HAPI_COMMAND --print --output-format stream-json --verbose [--allowedTools=mcp__reeve]
    [--model=M] [--max-turns=N] [--resume=ID] -- PROMPT` (the allow list only for Claude Code,
    directly or through Hapi; through Hapi the model is ANTHROPIC_MODEL: `command.agent_options`).

    `timeout` and `model` are the defaults (PULSE_TIMEOUT_SECONDS, AGENT_MODEL: "" leaves the agent's
    own); a request's own `timeout` and `model` replace them for its run."""

    def __init__(
        self,
        *,
        command: str,
        desk: Path,
        timeout: float,
        reaper: Reaper | None = None,
        env: Mapping[str, str] | None = None,
        passthrough: Iterable[str] = (),
        agent: str = DEFAULT_AGENT,
        max_api_retries: int = DEFAULT_MAX_API_RETRIES,
        sandbox: str = agent_sandbox.OFF,
        model: str = "",
    ) -> None:
        self.command = command
        self.max_api_retries = max_api_retries  # 0: only a 401/403 retry stops the run
        self.desk = Path(desk)
        self.timeout = timeout
        self.reaper = reaper
        self.env = dict(env or {})
        self.passthrough = tuple(passthrough)
        self.agent = agent
        self.sandbox = sandbox  # AGENT_SANDBOX: auto, bwrap or off (pulses/agent/sandbox.py)
        self.model = model  # AGENT_MODEL
        self._running: dict[int, AgentRun] = {}
        self._lock = threading.Lock()

    def argv(self, request: AgentRequest, *, resume: bool = True) -> list[str]:
        """The agent's argv, after the sandbox's prefix when there is one. Whoever writes a pulse sets
        what the agent is asked, never how it runs: the session is one `--resume=ID` word and the
        prompt comes after `--`, so neither can be read as an option (a prompt
        "--dangerously-skip-permissions" is only a prompt)."""
        argv = [*agent_command(self.command, agent=self.agent)]
        options, _env = self._options(request)
        argv += ["--print", "--output-format", "stream-json", "--verbose"]
        if runs_claude(argv):
            argv.append(ALLOW_REEVE_TOOLS)
        argv += options
        if resume and request.session_id:
            argv.append(f"--resume={request.session_id}")
        # Built at each run: the SQLite -wal and -shm files it masks exist only while the database is open.
        contained = (
            agent_sandbox.sandbox_prefix(self.sandbox, argv) if self.sandbox != agent_sandbox.OFF else []
        )
        return [*contained, *argv, "--", build_prompt(request.prompt, request.sticky_notes)]

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """The agent's environment: the allowlist of pulses/agent/env.py over ours, plus the run's."""
        _words, options = self._options(request)
        extra = {**self.env, **options, **request.env}
        if self.sandbox != agent_sandbox.OFF:
            extra = {**agent_sandbox.sandbox_environment(self.sandbox), **extra}
        if request.pulse_id is not None:
            extra[PULSE_ID_VARIABLE] = str(request.pulse_id)
        return agent_environment(service_environment(), passthrough=self.passthrough, extra=extra)

    def timeout_of(self, request: AgentRequest) -> float:
        """How long `request`'s run may last: its own timeout, else the executor's."""
        return self.timeout if request.timeout is None else request.timeout

    def _options(self, request: AgentRequest) -> tuple[list[str], dict[str, str]]:
        """The run's agent options: words before `--`, and variables (`command.agent_options`)."""
        return agent_options(
            agent_command(self.command, agent=self.agent),
            model=request.model or self.model,
            max_turns=request.max_turns,
        )

    def run(
        self,
        request: AgentRequest,
        *,
        on_session: Callable[[str], None] | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> AttemptOutcome:
        """Run the agent once; a resume the agent rejects is retried at once as a new session.
        `on_event` gets each line of the run's live tail as the agent prints it, on the thread
        that reads its output: it must return at once (queue it; never a database write there)."""
        outcome = self._run_once(request, resume=True, on_session=on_session, on_event=on_event)
        if (
            request.session_id
            and not outcome.success
            and not outcome.interrupted
            and (RESUME_REJECTED in outcome.error.lower())
        ):
            logger.warning(
                "agent_resume_rejected pulse=%s session=%s retrying_as_new_session",
                request.pulse_id,
                request.session_id,
            )
            outcome = self._run_once(request, resume=False, on_session=on_session, on_event=on_event)
        return outcome

    def interrupt_all(self, *, grace: float = KILL_GRACE_SECONDS) -> None:
        """Stop every running agent (shutdown): SIGTERM to each group, SIGKILL after `grace`."""
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            run.interrupted = True
        kill_groups([run.proc for run in runs], grace=grace)

    def setup_problem(self) -> str:
        """What keeps every run from starting ("" when nothing does); see `setup_problem`. An AGENT_MODEL
        that is no model name is one too (`model_problem`)."""
        return (
            model_problem(self.model)
            or setup_problem(self.command, agent=self.agent, desk=self.desk)
            or agent_sandbox.setup_problem(self.sandbox, agent_command(self.command, agent=self.agent))
        )

    def interrupt(self, pulse_id: int, *, because: str, grace: float = KILL_GRACE_SECONDS) -> bool:
        """Stop the agent running `pulse_id` as a drain would (SIGTERM to its group, SIGKILL after
        `grace`); its outcome is `interrupted`, its error `because`. False when it is not running.
        Blocks up to `grace`: call it off the worker's loop."""
        with self._lock:
            runs = [run for run in self._running.values() if run.pulse_id == pulse_id]
        for run in runs:
            run.interrupted, run.interrupted_because = True, because
        kill_groups([run.proc for run in runs], grace=grace)
        return bool(runs)

    def _config_error(self, started: datetime) -> AttemptOutcome | None:
        problem = self.setup_problem()
        if not problem:
            return None
        return AttemptOutcome(success=False, started_at=started, finished_at=timezone.now(), error=problem)

    def _run_once(
        self,
        request: AgentRequest,
        *,
        resume: bool,
        on_session: Callable[[str], None] | None,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> AttemptOutcome:
        started = timezone.now()
        if failure := self._config_error(started):
            return failure
        proc = subprocess.Popen(
            self.argv(request, resume=resume),
            cwd=self.desk,
            env=self.environment(request),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
        if self.reaper:
            self.reaper.watch(proc.pid)
        run = AgentRun(proc, pulse_id=request.pulse_id)
        with self._lock:
            self._running[proc.pid] = run
        timeout = self.timeout_of(request)
        logger.info(
            "agent_started pulse=%s pid=%s resume=%s model=%s timeout_s=%g max_turns=%s",
            request.pulse_id,
            proc.pid,
            bool(resume and request.session_id),
            request.model or self.model or "-",
            timeout,
            request.max_turns or "-",
        )
        # The stream is read on this thread, so `on_session` runs here too (with this thread's
        # database connection); a watchdog thread waits for the agent, enforces the timeout and
        # closes `exited` when the agent is gone: the run ends then, whoever still holds its pipes.
        exited, exited_signal = os.pipe()
        watchdog = threading.Thread(
            target=self._watch, args=(run, request.pulse_id, exited_signal, timeout), daemon=True
        )
        watchdog.start()
        reader = StreamReader(
            on_session=on_session, on_retry=lambda signals: self._retried(run, signals), on_event=on_event
        )
        try:
            read_outputs(
                proc, reader, stdout_tail=run.stdout_tail, stderr_tail=run.stderr_tail, exited=exited
            )
        except BaseException:
            signal_group(proc.pid, signal.SIGKILL)  # nobody reads its output any more
            raise
        finally:
            watchdog.join()
            os.close(exited)
        with self._lock:
            self._running.pop(proc.pid, None)
        if self.reaper:
            self.reaper.forget(proc.pid)
        own = request.timeout is not None
        return outcome_of(run, reader, started=started, timeout=timeout, timeout_is_the_pulses=own)

    def _retried(self, run: AgentRun, signals: AgentSignals) -> None:
        """The CLI announced one more retry of its model's API: past the bound (or a refused key,
        which no retry mends) its group is stopped, off the thread that reads the stream."""
        if run.stopped_retrying:
            return
        refused = signals.retry_status in readiness.AUTH_STATUSES
        if not refused and not (self.max_api_retries and signals.api_retries >= self.max_api_retries):
            return
        run.stopped_retrying = True
        logger.warning(
            "agent_stuck_retrying pulse=%s pid=%s retries=%s status=%s: stopping its process group",
            run.pulse_id,
            run.proc.pid,
            signals.api_retries,
            signals.retry_status,
        )
        threading.Thread(target=kill_groups, args=([run.proc],), daemon=True).start()

    def _watch(self, run: AgentRun, pulse_id: int | None, exited_signal: int, timeout: float) -> None:
        """Wait for the agent; on timeout kill its group. Then kill whatever it left in the group,
        which also closes the pipes a background child might hold open, and close `exited_signal`."""
        proc = run.proc
        try:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                run.timed_out = True
                logger.error("agent_timeout pulse=%s pid=%s after_s=%s", pulse_id, proc.pid, timeout)
                kill_groups([proc])
                proc.wait()
            signal_group(proc.pid, signal.SIGKILL)
        finally:
            os.close(exited_signal)
