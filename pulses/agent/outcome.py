"""What one run of the agent came to: the run's state as the executor saw it (its process, its output's
tails, whether Reeve stopped it and why) turned into an `AttemptOutcome`, with
`pulses.agent.readiness`'s rule applied to a failed run. No ORM here."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from pulses.agent import readiness
from pulses.agent.output import Tail
from pulses.agent.readiness import AgentUnavailable
from pulses.agent.stream import StreamReader


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


@dataclass
class AgentRun:
    """One running agent as the executor tracks it; how it was stopped decides its error."""

    proc: subprocess.Popen
    pulse_id: int | None = None
    stdout_tail: Tail = field(default_factory=Tail)
    stderr_tail: Tail = field(default_factory=Tail)
    timed_out: bool = False
    interrupted: bool = False
    interrupted_because: str = ""
    stopped_retrying: bool = False  # Reeve stopped it: stuck in the CLI's own api_retry loop


def outcome_of(
    run: AgentRun,
    reader: StreamReader,
    *,
    started: datetime,
    timeout: float,
    timeout_is_the_pulses: bool = False,
) -> AttemptOutcome:
    """The outcome of a finished run from what its stream said and how it ended; a timeout is named
    as the pulse's own (`timeout_seconds`) or PULSE_TIMEOUT_SECONDS."""
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
        whose = "the pulse's timeout_seconds" if timeout_is_the_pulses else "PULSE_TIMEOUT_SECONDS"
        error = f"timed out after {timeout:g}s ({whose}); the agent's process group was killed"
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
