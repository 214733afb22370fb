"""The agent's process groups: signalling a group, stopping it (SIGTERM, then SIGKILL after a grace),
and the worker's reaper process (pulses/agent/reaper.sh), which kills every group registered with it (the
agents' and the wake checks') when the worker dies, since its end of the reaper's pipe then closes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 3.0
REAPER_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C"}


class Reaper:
    """The worker's watchdog process (pulses/agent/reaper.sh): it kills registered groups if we die."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["/bin/sh", str(Path(__file__).with_name("reaper.sh"))],
            stdin=subprocess.PIPE,
            start_new_session=True,
            text=True,
            # Nothing of the worker's environment: it needs none, and /proc/PID/environ would show it
            # to any process of this user (the agent, when it runs uncontained).
            env=REAPER_ENVIRONMENT,
        )
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                logger.error("reaper_gone pid=%s", self._proc.pid)

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        with self._lock:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the process group `pgid`; False when it is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_groups(procs: list[subprocess.Popen], *, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after `grace` seconds."""
    alive = [p for p in procs if signal_group(p.pid, signal.SIGTERM)]
    for proc in alive:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        signal_group(proc.pid, signal.SIGKILL)
