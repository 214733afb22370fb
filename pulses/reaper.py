"""Kills a dead worker's agents: a tiny watchdog process, one per worker, with no Django in it.

The worker writes `+PGID` when it starts an agent (in its own process group) and `-PGID` when the
agent is done. If the worker dies, even by SIGKILL, the kernel closes the pipe: on EOF this process
kills every process group still registered, so a recovered pulse can never run twice at once.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    # Only the worker decides when agents stop; a Ctrl+C or SIGTERM meant for it must not kill us first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line[:1] in "+-" and line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


if __name__ == "__main__":
    main()
