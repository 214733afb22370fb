"""Runs the agent CLI for one pulse and says what came of it. No ORM here.

The agent runs without a shell, in the Desk, in a process group of its own, so a timeout or a
shutdown can kill it with everything it started. It also dies with its worker: the worker's reaper
process (pulses/agent/reaper.sh) kills every registered group when the worker's end of its pipe closes
(both in pulses/agent/process_groups.py).

A run the agent's CLI keeps retrying against its model's API (`system`/`api_retry` events: a refused
key, an overloaded API) is stopped by Reeve past `max_api_retries`, and at once on a 401/403: Claude
Code would otherwise retry for minutes while the slot waits. What a failed run means (the pulse's
failure, or the agent unable to run now) is `pulses.agent.readiness`'s one rule, applied here.

The prompt crosses to the agent as an argument after `--` and a resumed session as `--resume=ID`, so
neither can ever be read as an option; the agent's environment is built from an allowlist
(pulses/agent/env.py), so none of Reeve's secrets reach it. With AGENT_SANDBOX it runs inside
bubblewrap (pulses/agent/sandbox.py), which hides Reeve's files and processes from it.

A run ends when the agent exits: what it left in its group is killed, and its pipes are read for
DRAIN_SECONDS more at most, so a child it detached (`setsid`) that holds them cannot keep the pulse
running (under the sandbox that child dies with the agent's PID namespace anyway).

The group is made with `process_group=0` rather than a new session or a preexec_fn, which keeps
CPython on its vfork() path: spawning costs ~0.2 ms instead of ~6-9 ms for a full fork of the worker.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.utils import timezone

from pulses.agent import readiness
from pulses.agent import sandbox as agent_sandbox
from pulses.agent.env import PULSE_ID_VARIABLE, agent_environment, service_environment
from pulses.agent.process_groups import KILL_GRACE_SECONDS, Reaper, kill_groups, signal_group
from pulses.agent.readiness import AgentUnavailable
from pulses.agent.stream import AgentSignals, StreamReader

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 4 * 1024 * 1024  # a longer stream-json line is dropped, keeping memory bounded
# Once the agent has exited, how long its pipes are still read: what it wrote last is in them, but a
# process it detached from its group (`setsid sleep infinity &`) may hold them open for ever.
DRAIN_SECONDS = 2.0
READ_BYTES = 65536
TAIL_BYTES = 16 * 1024
RESUME_REJECTED = "no conversation found"
HAPI = "hapi"
DEFAULT_AGENT = "claude"
DEMO = "demo"  # HAPI_COMMAND=demo: the demo agent, to see the whole loop before installing a real one
DEMO_AGENT = Path(__file__).resolve().with_name("demo_agent.py")
CLAUDE = "claude"
# Reeve's own MCP server's tools, allowed on Claude Code's command line for each run. Claude Code ignores
# a project's `permissions.allow` in a folder nobody has trusted interactively (every headless Desk), and
# Reeve never marks the Desk trusted: then nothing the agent writes into the Desk's settings can widen
# its own permissions in a later run. The server's name is pulses.tools.desk_config.SERVER_NAME.
ALLOW_REEVE_TOOLS = "--allowedTools=mcp__reeve"
DEFAULT_MAX_API_RETRIES = 3


@dataclass
class AttemptOutcome:
    """What one run of the agent came to; the executor fills it, the queue stores it."""

    success: bool
    started_at: datetime
    finished_at: datetime
    exit_code: int | None = None
    session_id: str = ""
    result_text: str = ""
    error: str = ""
    cost_usd: float | None = None
    num_turns: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    timed_out: bool = False
    interrupted: bool = False
    skipped: bool = False  # the wake check found nothing to do: no agent ran
    # The agent cannot run now (not logged in, no credential, a usage limit…): pulses.agent.readiness.
    unavailable: AgentUnavailable | None = None
    warning: str = ""  # a usage warning the run carried (rate_limit_event allowed_warning)

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    session_id: str = ""
    sticky_notes: tuple[str, ...] = ()
    pulse_id: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # what the worker adds for this run only


def agent_command(command: str, *, agent: str = DEFAULT_AGENT) -> list[str]:
    """HAPI_COMMAND as argv; a bare `hapi` (or `hapi` followed by options) runs `hapi AGENT`, and
    `demo` runs Reeve's demo agent (pulses/agent/demo_agent.py) with this Python.

    Today's Hapi needs the agent's name first (`hapi claude --print ...`); a command that already
    names one, or that runs Claude Code (or anything else) directly, is used as it is."""
    argv = shlex.split(command)
    if argv == [DEMO]:
        return [sys.executable, "-S", str(DEMO_AGENT)]
    if argv and Path(argv[0]).name == HAPI and (len(argv) == 1 or argv[1].startswith("-")):
        argv.insert(1, agent)
    return argv


def runs_claude(argv: list[str]) -> bool:
    """Whether `argv` (from `agent_command`) starts Claude Code, directly or through Hapi."""
    if not argv:
        return False
    name = Path(argv[0]).name
    return name == CLAUDE or (name == HAPI and len(argv) > 1 and argv[1] == CLAUDE)


def setup_problem(command: str, *, agent: str = DEFAULT_AGENT, desk: Path) -> str:
    """What keeps any pulse from running, "" when nothing does: the agent command missing or not
    executable, or the Desk missing. A setup error, not a pulse's failure: the worker claims nothing
    while there is one, so no pulse spends its retries on it."""
    try:
        argv0 = agent_command(command, agent=agent)[:1]
    except ValueError as exc:
        return f"HAPI_COMMAND cannot be parsed ({exc}): fix its quoting"
    if not argv0 or shutil.which(argv0[0]) is None:
        return (
            f"agent command {command!r} not found or not executable: install it, or set HAPI_COMMAND "
            "to its path (see README, Your agent: claude, hapi, or the demo agent)"
        )
    if not desk.is_dir():
        return f"Desk directory {desk} does not exist: create it or set REEVE_DESK_PATH"
    return ""


def build_prompt(prompt: str, sticky_notes: tuple[str, ...] | list[str]) -> str:
    """The prompt with its sticky notes appended as a reminder list."""
    if not sticky_notes:
        return prompt
    notes = "\n".join(f"  - {note}" for note in sticky_notes)
    return f"{prompt}\n\n📌 Reminders:\n{notes}"


class Tail:
    """The last `limit` bytes written to it."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit

    def write(self, data: bytes) -> None:
        self._chunks.append(data[-self._limit :])
        self._size += len(self._chunks[-1])
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        return b"".join(self._chunks)[-self._limit :].decode("utf-8", "replace")


@dataclass
class _Run:
    proc: subprocess.Popen
    pulse_id: int | None = None
    stdout_tail: Tail = field(default_factory=Tail)
    stderr_tail: Tail = field(default_factory=Tail)
    timed_out: bool = False
    interrupted: bool = False
    interrupted_because: str = ""
    stopped_retrying: bool = False  # Reeve stopped it: stuck in the CLI's own api_retry loop


class Executor:
    """Runs `HAPI_COMMAND --print --output-format stream-json --verbose [--allowedTools=mcp__reeve]
    [--resume=ID] -- PROMPT` (the allow list only for Claude Code, directly or through Hapi)."""

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
        self._running: dict[int, _Run] = {}
        self._lock = threading.Lock()

    def argv(self, request: AgentRequest, *, resume: bool = True) -> list[str]:
        """The agent's argv, after the sandbox's prefix when there is one. Whoever writes a pulse sets
        what the agent is asked, never how it runs: the session is one `--resume=ID` word and the
        prompt comes after `--`, so neither can be read as an option (a prompt
        "--dangerously-skip-permissions" is only a prompt)."""
        argv = [*agent_command(self.command, agent=self.agent)]
        argv += ["--print", "--output-format", "stream-json", "--verbose"]
        if runs_claude(argv):
            argv.append(ALLOW_REEVE_TOOLS)
        if resume and request.session_id:
            argv.append(f"--resume={request.session_id}")
        # Built at each run: the SQLite -wal and -shm files it masks exist only while the database is open.
        contained = agent_sandbox.sandbox_prefix(self.sandbox) if self.sandbox != agent_sandbox.OFF else []
        return [*contained, *argv, "--", build_prompt(request.prompt, request.sticky_notes)]

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """The agent's environment: the allowlist of pulses/agent/env.py over ours, plus the run's."""
        extra = {**self.env, **request.env}
        if self.sandbox != agent_sandbox.OFF:
            extra = {**agent_sandbox.sandbox_environment(self.sandbox), **extra}
        if request.pulse_id is not None:
            extra[PULSE_ID_VARIABLE] = str(request.pulse_id)
        return agent_environment(service_environment(), passthrough=self.passthrough, extra=extra)

    def run(
        self, request: AgentRequest, *, on_session: Callable[[str], None] | None = None
    ) -> AttemptOutcome:
        """Run the agent once; a resume the agent rejects is retried at once as a new session."""
        outcome = self._run_once(request, resume=True, on_session=on_session)
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
            outcome = self._run_once(request, resume=False, on_session=on_session)
        return outcome

    def interrupt_all(self, *, grace: float = KILL_GRACE_SECONDS) -> None:
        """Stop every running agent (shutdown): SIGTERM to each group, SIGKILL after `grace`."""
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            run.interrupted = True
        kill_groups([run.proc for run in runs], grace=grace)

    def setup_problem(self) -> str:
        """What keeps every run from starting ("" when nothing does); see `setup_problem`."""
        return setup_problem(self.command, agent=self.agent, desk=self.desk) or (
            agent_sandbox.containment(self.sandbox).problem if self.sandbox != agent_sandbox.OFF else ""
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
        self, request: AgentRequest, *, resume: bool, on_session: Callable[[str], None] | None
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
        run = _Run(proc, pulse_id=request.pulse_id)
        with self._lock:
            self._running[proc.pid] = run
        logger.info(
            "agent_started pulse=%s pid=%s resume=%s",
            request.pulse_id,
            proc.pid,
            bool(resume and request.session_id),
        )
        # The stream is read on this thread, so `on_session` runs here too (with this thread's
        # database connection); a watchdog thread waits for the agent, enforces the timeout and
        # closes `exited` when the agent is gone: the run ends then, whoever still holds its pipes.
        exited, exited_signal = os.pipe()
        watchdog = threading.Thread(
            target=self._watch, args=(run, request.pulse_id, exited_signal), daemon=True
        )
        watchdog.start()
        reader = StreamReader(on_session=on_session, on_retry=lambda signals: self._retried(run, signals))
        try:
            _read_outputs(run, reader, exited=exited)
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
        return _outcome(run, reader, started=started, timeout=self.timeout)

    def _retried(self, run: _Run, signals: AgentSignals) -> None:
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

    def _watch(self, run: _Run, pulse_id: int | None, exited_signal: int) -> None:
        """Wait for the agent; on timeout kill its group. Then kill whatever it left in the group,
        which also closes the pipes a background child might hold open, and close `exited_signal`."""
        proc = run.proc
        try:
            try:
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                run.timed_out = True
                logger.error("agent_timeout pulse=%s pid=%s after_s=%s", pulse_id, proc.pid, self.timeout)
                kill_groups([proc])
                proc.wait()
            signal_group(proc.pid, signal.SIGKILL)
        finally:
            os.close(exited_signal)


def _outcome(run: _Run, reader: StreamReader, *, started: datetime, timeout: float) -> AttemptOutcome:
    summary = reader.summary
    code = run.proc.returncode
    stderr = run.stderr_tail.text()
    # A run that ends without a result event did not do what was asked (Hapi printing its help, say).
    success = (
        code == 0
        and summary.result_seen
        and not summary.is_error
        and not run.timed_out
        and not run.interrupted
        and not run.stopped_retrying
    )
    error = ""
    signals = summary.signals
    if run.interrupted:
        error = run.interrupted_because or "interrupted: the worker shut down and stopped the agent"
    elif run.timed_out:
        error = f"timed out after {timeout:g}s (PULSE_TIMEOUT_SECONDS); the agent's process group was killed"
    elif run.stopped_retrying:
        status = f", last status {signals.retry_status}" if signals.retry_status else ""
        error = (
            "stopped by Reeve: the agent's CLI was retrying its model's API "
            f"({readiness.retries(signals.api_retries)}{status}; AGENT_MAX_API_RETRIES); the agent's process "
            "group was killed"
        )
    elif not success:
        error = (
            "; ".join(summary.errors)
            or (summary.result_text if summary.is_error else "")
            or stderr.strip()[-2000:]
            or summary.result_text
            or (
                f"agent exited with code {code} and printed no error"
                if code
                else "the agent exited without a result event: is HAPI_COMMAND an agent CLI that prints "
                "stream-json (`./reeve agent_probe` shows what it printed)?"
            )
        )
        if code not in (0, None) and f"exit code {code}" not in error:
            error = f"{error} (exit code {code})"
    unavailable = None
    if not success and not run.interrupted and not run.timed_out:
        unavailable = readiness.classify(
            signals=signals,
            result_text=summary.result_text,
            error=error,
            stderr=stderr,
            stopped_retrying=run.stopped_retrying,
            now=timezone.now(),
        )
    return AttemptOutcome(
        success=success,
        started_at=started,
        finished_at=timezone.now(),
        exit_code=code,
        session_id=summary.session_id,
        result_text=summary.result_text,
        error=error,
        cost_usd=summary.cost_usd,
        num_turns=summary.num_turns,
        stdout_tail=run.stdout_tail.text(),
        stderr_tail=stderr,
        timed_out=run.timed_out,
        interrupted=run.interrupted,
        unavailable=unavailable,
        warning=readiness.warning(signals),
    )


class _Lines:
    """The agent's stdout cut into whole lines for the stream reader; a line past MAX_LINE_BYTES is
    skipped, never buffered whole, and every byte goes to the tail."""

    def __init__(self, reader: StreamReader, tail: Tail) -> None:
        self._reader = reader
        self._tail = tail
        self._partial = bytearray()
        self._oversized = False  # inside a line already past the limit: skip to its end

    def feed(self, data: bytes) -> None:
        self._tail.write(data)
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line(data[start : end + 1])
            start = end + 1
        if start < len(data) and not self._oversized:
            self._partial += data[start:]
            if len(self._partial) > MAX_LINE_BYTES:
                self._partial.clear()
                self._oversized = True

    def _line(self, piece: bytes) -> None:
        if self._oversized:
            self._oversized = False
            return
        if self._partial:
            piece = bytes(self._partial) + piece
            self._partial.clear()
        if len(piece) <= MAX_LINE_BYTES:
            self._reader.feed(piece.decode("utf-8", "replace"))

    def close(self) -> None:
        """The stream's last line, when it had no newline."""
        if self._partial and not self._oversized:
            self._reader.feed(bytes(self._partial).decode("utf-8", "replace"))
        self._partial.clear()


def _read_outputs(run: _Run, reader: StreamReader, *, exited: int) -> None:
    """Read the agent's stdout (lines to `reader`) and stderr (a tail) until both end, or, once
    `exited` reports the agent gone, DRAIN_SECONDS more at most; then close them."""
    proc = run.proc
    lines = _Lines(reader, run.stdout_tail)
    sinks = {proc.stdout.fileno(): lines.feed, proc.stderr.fileno(): run.stderr_tail.write}
    poller = select.poll()
    for fd in (*sinks, exited):
        poller.register(fd, select.POLLIN)
    deadline: float | None = None
    while sinks:
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning("agent_pipes_held pid=%s after_exit_s=%s", proc.pid, DRAIN_SECONDS)
                break
            wait_ms = int(left * 1000) + 1
        for fd, _ in poller.poll(wait_ms):
            if fd == exited:
                poller.unregister(exited)
                deadline = time.monotonic() + DRAIN_SECONDS
            elif data := os.read(fd, READ_BYTES):
                sinks[fd](data)
            else:
                poller.unregister(fd)
                del sinks[fd]
    lines.close()
    proc.stdout.close()
    proc.stderr.close()
