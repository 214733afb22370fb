"""A process that must not outlive its parent: the web process of `./reeve start`, the Telegram
listener, the MCP server. No Django here (gunicorn's master imports it from its config).

`stop_with_parent()` opens a pidfd on the parent and a daemon thread sleeps on it; when the parent
exits, however it died (kill -9, the OOM killer), the kernel makes the pidfd readable and the thread
sends this process SIGTERM, which each of them already handles as a graceful stop. A pidfd rather
than PR_SET_PDEATHSIG: the latter fires when the *thread* that forked us exits, and a parent such as
uv or Node may start children from a short-lived thread.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading

logger = logging.getLogger(__name__)

PARENT_ENV = "REEVE_PARENT_PID"  # set by a parent that wants to be sure it is the one watched


def stop_with_parent(name: str) -> None:
    """SIGTERM this process when its parent exits (at once if it is gone already). Linux 5.3+;
    elsewhere a no-op."""
    expected = int(os.environ.pop(PARENT_ENV, "0") or 0)
    parent = os.getppid()
    if expected and parent != expected:  # the parent died before we got here: we were re-parented
        logger.warning("parent_gone process=%s parent=%s", name, expected)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        return
    thread = threading.Thread(target=_watch, args=(pidfd, parent, name), name="lifeline", daemon=True)
    thread.start()


def _watch(pidfd: int, parent: int, name: str) -> None:
    select.select([pidfd], [], [])
    logger.warning("parent_gone process=%s parent=%s stopping=true", name, parent)
    os.kill(os.getpid(), signal.SIGTERM)
