"""How long this process has run: from its start, as the kernel records it, not from the moment a
module happened to be imported (a gunicorn worker imports the API's views at its first request)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _age_at_import() -> float:
    """Seconds since this process started (Linux: /proc/self/stat's start time against the system's
    uptime); 0.0 where /proc cannot tell."""
    try:
        stat = Path("/proc/self/stat").read_text()
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
        # The fields after the command's name (which may hold spaces and parentheses): the 22nd field,
        # the start time in clock ticks after boot, is the 20th of them.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return max(since_boot - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


_STARTED = time.monotonic() - _age_at_import()


def uptime_seconds() -> float:
    """Seconds since this process started, to the millisecond."""
    return round(time.monotonic() - _STARTED, 3)
