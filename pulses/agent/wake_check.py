"""Wake checks: a pulse's `check_command`, run in the Desk before the agent.

Exit 0 wakes the agent with the check's output appended to the prompt; exit 1 means "nothing to do":
no agent process starts and the run is recorded as skipped; any other exit (or the timeout) is a
failed attempt carrying the check's output. The check runs with the agent's allowlisted environment
(none of Reeve's secrets, from `.env` or the service's environment),
in a process group of its own so a timeout kills everything it started, registered with the worker's
reaper (pulses/agent/process_groups.py) like an agent's, so a worker killed outright takes it along.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from pulses.agent.env import agent_environment, service_environment
from pulses.agent.process_groups import Reaper

OUTPUT_CHARS = 8000
NOTHING_TO_DO = 1


@dataclass(frozen=True)
class CheckResult:
    exit_code: int | None  # None: it timed out (or could not start)
    output: str
    error: str = ""

    @property
    def wakes(self) -> bool:
        return self.exit_code == 0

    @property
    def skips(self) -> bool:
        return self.exit_code == NOTHING_TO_DO

    def failure(self) -> str:
        """The failed attempt's error text."""
        if self.error:
            return f"wake check failed: {self.error}"
        return f"wake check exited {self.exit_code}: {self.output.strip() or '(no output)'}"


def run(
    command: str, *, desk: Path | None = None, timeout: float | None = None, reaper: Reaper | None = None
) -> CheckResult:
    """Run `command` with the shell in the Desk, bounded by `timeout` seconds; its process group
    registered with `reaper` (the worker's) while it runs."""
    timeout = settings.PULSE_CHECK_TIMEOUT_SECONDS if timeout is None else timeout
    cwd = Path(desk or settings.REEVE_DESK_PATH)
    env = agent_environment(service_environment(), passthrough=settings.AGENT_ENV_PASSTHROUGH)
    try:
        process = subprocess.Popen(  # noqa: S602 - the owner's own check, run like a cron line
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # A process group of its own, so a timeout kills all it started; unlike a new session
            # this keeps CPython on vfork instead of forking the whole worker.
            process_group=0,
        )
    except OSError as exc:
        return CheckResult(None, "", error=f"could not start it in {cwd}: {exc}")
    if reaper:
        reaper.watch(process.pid)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, _ = process.communicate()
        return CheckResult(None, _tail(out), error=f"timed out after {timeout:g} s: {_tail(out).strip()}")
    finally:
        if reaper:
            reaper.forget(process.pid)
    return CheckResult(process.returncode, _tail(out))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace")
    return text if len(text) <= OUTPUT_CHARS else "…" + text[-OUTPUT_CHARS:]


def prompt_with_output(prompt: str, output: str) -> str:
    """The prompt the agent gets after a check that woke it: the check's stdout appended."""
    output = output.strip()
    if not output:
        return prompt
    return f"{prompt}\n\nWake check output:\n{output}"
