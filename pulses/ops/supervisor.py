"""`manage.py run_reeve` (`./reeve start`): the pulse worker, with gunicorn as its companion.

There is no separate supervisor: the worker process starts gunicorn, watches it through a pidfd in the
same `select()` that waits for pulses, and stops it when it stops itself (Ctrl+C, SIGTERM, a closed
terminal's SIGHUP: graceful, and gunicorn keeps serving until the last running pulse has ended, since
the agent's tools call its API; a second signal: at once). If gunicorn exits on its own, the worker
drains and exits with its code. If the worker is killed outright, gunicorn's lifeline
(pulses/ops/lifeline.py) sees it and stops gunicorn, and the worker's reaper stops its agents.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from pulses.ops import instance_lock
from pulses.ops.lifeline import PARENT_ENV
from pulses.web import bind, metrics
from pulses.worker.loop import Worker, WorkerOptions

logger = logging.getLogger(__name__)

GUNICORN_CONF = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"
WEB_STOP_SECONDS = 15  # gunicorn's graceful_timeout (10 s) and a margin


class WebProcess:
    """gunicorn in its own process group (a terminal's Ctrl+C reaches it once, through us)."""

    name = "web"

    def __init__(self, *, lock_fd: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)],
            cwd=settings.BASE_DIR,
            env={**os.environ, PARENT_ENV: str(os.getpid())},
            process_group=0,
            pass_fds=(lock_fd,),  # the installation stays locked until gunicorn is gone too
        )
        self.pid = self._proc.pid
        self._pidfd = os.pidfd_open(self.pid)

    def fileno(self) -> int:
        return self._pidfd

    def poll(self) -> int | None:
        return self._proc.poll()

    def stop(self, *, force: bool) -> None:
        # gunicorn: SIGTERM is a graceful stop, SIGQUIT an immediate one (SIGHUP would reload).
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT if force else signal.SIGTERM)

    def wait(self) -> int:
        try:
            code = self._proc.wait(timeout=WEB_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("web_kill pid=%s reason=stop_timeout", self.pid)
            os.killpg(self.pid, signal.SIGKILL)
            code = self._proc.wait()
        os.close(self._pidfd)
        return code


class MigrationFailed(Exception):
    """`migrate` failed before Reeve started; its own output said why."""


def migrate() -> None:
    """Apply the database's migrations in a process of its own, as `manage.py migrate --noinput` (its
    output on ours): the worker that stays running never loads the migration machinery."""
    sys.stdout.flush()
    code = subprocess.run(  # noqa: S603 - this interpreter and this checkout's manage.py
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "migrate", "--noinput"],
        cwd=settings.BASE_DIR,
        check=False,
    ).returncode
    if code != 0:
        raise MigrationFailed(f"migrate failed (exit {code}): nothing was started")


def run_reeve(
    *,
    web: bool = True,
    on_started: Callable[[], None] | None = None,
    prepare: Callable[[], None] | None = None,
) -> int:
    """Hold the installation, call `prepare` (`./reeve start`: migrate, then bring the Desk up to date),
    start gunicorn (unless `web` is False) and run the worker until stopped; the exit code of whichever
    stopped first for a reason other than being asked to. `on_started` is called once both are under
    way (`./reeve start` prints what it serves then).
    AlreadyRunning if another Reeve holds this installation, PortInUse if another program has the port,
    ValueError for a bad worker setting."""
    options = WorkerOptions.from_settings()  # a bad setting stops us before anything has started
    lock_fd = instance_lock.hold(exclusive=True, role="./reeve start")
    if web:  # once, naming the setting, instead of gunicorn's five "Connection in use" lines
        bind.check_port_free(settings.PULSE_API_HOST, settings.PULSE_API_PORT)
    if prepare is not None:
        # Only now, holding the lock: a second start is refused before it changes anything, its
        # migrations included (they would run under the Reeve that is serving).
        prepare()
    # Before gunicorn starts: it must not erase the metric files this process writes, nor we its.
    metrics.prepare_multiproc_dir()
    companions = [WebProcess(lock_fd=lock_fd)] if web else []
    api = f"http://{settings.PULSE_API_HOST}:{settings.PULSE_API_PORT}"
    instance_lock.record(
        lock_fd,
        {
            "pid": os.getpid(),
            "web_pid": companions[0].pid if web else None,
            "api": api if web else None,
            # Where the agent's tools reach this API: doctor keeps the Desk pointed here while it runs.
            "api_url": settings.REEVE_API_URL if web else None,
        },
    )
    logger.info("reeve_started worker_pid=%s web=%s api=%s", os.getpid(), web, api if web else "-")
    worker = Worker(options, companions=companions, dead_workers=instance_lock.dead_workers())
    return worker.run(on_started=on_started)
