"""`manage.py run_reeve`: gunicorn and the worker side by side, stopped together."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from pulses import metrics

logger = logging.getLogger(__name__)

GUNICORN_CONF = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"


def _commands(*, web: bool) -> dict[str, list[str]]:
    commands = {"worker": [sys.executable, "manage.py", "run_pulse_worker"]}
    if web:
        commands["web"] = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)]
    return commands


def run_together(*, web: bool = True) -> int:
    """Start the processes, forward SIGINT/SIGTERM, and return the first non-zero exit code.

    Each child has its own process group, so a Ctrl+C reaches it once (forwarded by us), not twice:
    a second signal would make the worker stop at once instead of draining.
    """
    # Before either child starts: neither may erase the other's metric files once they run.
    metrics.prepare_multiproc_dir()
    procs = {
        name: subprocess.Popen(argv, cwd=settings.BASE_DIR, process_group=0)
        for name, argv in _commands(web=web).items()
    }
    logger.info(
        "reeve_started processes=%s api=http://%s:%s",
        ",".join(procs),
        settings.PULSE_API_HOST,
        settings.PULSE_API_PORT,
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while all(proc.poll() is None for proc in procs.values()):
        time.sleep(0.2)
    if not stopping:
        gone = [name for name, proc in procs.items() if proc.poll() is not None]
        logger.error("reeve_process_exited names=%s stopping_the_rest", ",".join(gone))
        stop(signal.SIGTERM, None)
    codes = {name: proc.wait() for name, proc in procs.items()}
    return next((code for code in codes.values() if code not in (0, -signal.SIGINT, -signal.SIGTERM)), 0)
