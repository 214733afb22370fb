"""One Reeve per installation: an flock on a file beside the database (REEVE_LOCK_FILE).

`./reeve start` holds it exclusively, and hands it to its web process, so it is free only once every
process of that Reeve is gone. A worker started on its own (`run_pulse_worker`, the systemd unit)
holds it shared: several workers on purpose still run side by side, but not beside a `./reeve
start`. The kernel drops the lock when the last holder exits, even by SIGKILL: nothing goes stale.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from django.conf import settings


class AlreadyRunning(Exception):
    """Another Reeve holds the installation's lock; the message names it and how to stop it."""


def hold(*, exclusive: bool, role: str) -> int:
    """Take the lock (without waiting) and return its fd, kept open for the process's lifetime;
    AlreadyRunning if another process holds it."""
    path = Path(settings.REEVE_LOCK_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(_running_message(path, wanted=role)) from None
    if exclusive:
        record(fd, {"pid": os.getpid(), "role": role})
    return fd


def record(fd: int, details: dict) -> None:
    """Write what a second start should name (PIDs, the API's address) into the held lock file."""
    data = json.dumps(details).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _running_message(path: Path, *, wanted: str) -> str:
    try:
        details = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        details = {}
    pids = sorted(set(_holders(path)) | {p for p in (details.get("pid"), details.get("web_pid")) if p})
    lines = [f"{wanted}: Reeve is already running for this installation (lock {path}):"]
    for pid in pids:
        what = _command_line(pid)
        if pid == details.get("web_pid") and details.get("api"):
            what += f" (API {details['api']})"
        lines.append(f"  pid {pid}: {what}")
    main = details.get("pid") or (pids[0] if pids else None)
    lines.append(
        "Stop it first: Ctrl+C in its terminal"
        + (f", or `kill {main}` (running pulses drain first)" if main else "")
        + ", or `sudo systemctl stop reeve-daemon` if it runs as a service; then start again."
    )
    return "\n".join(lines)


def _holders(path: Path) -> list[int]:
    """PIDs holding an flock on `path`, from /proc/locks (Linux); [] where it cannot be read."""
    try:
        stat = path.stat()
        rows = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    pids = []
    for row in rows:
        fields = row.split()
        if "FLOCK" in fields and wanted in fields:
            pids.append(int(fields[fields.index(wanted) - 1]))
    return pids


def _command_line(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "(exited)"
    words = [Path(argv[0]).name, *argv[1:]] if argv and argv[0] else argv
    return " ".join(w for w in words if w)[:120]
