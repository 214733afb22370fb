"""One Reeve per installation: an flock on a file beside the database (REEVE_LOCK_FILE).

`./reeve start` holds it exclusively, and hands it to its web process, so it is free only once every
process of that Reeve is gone. A worker started on its own (`run_pulse_worker`, the systemd unit)
holds it shared: several workers on purpose still run side by side, but not beside a `./reeve
start`. The kernel drops the lock when the last holder exits, even by SIGKILL: nothing goes stale.

The lock also proves death. The process that takes it alone (exclusively, or a worker that finds no
other holder) knows that every earlier holder is gone; the file names the worker that held it last
(host:pid, the name its claims carry), so its claims can be recovered at once (`dead_workers()`,
`queue.recover_dead_workers`) instead of after their leases. Only that worker's own claims: other
workers, on this host or others, sharing a PostgreSQL queue are never touched. A worker joining others
that are alive (shared) records nothing and recovers nothing: their leases cover it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from django.conf import settings


class AlreadyRunning(Exception):
    """Another Reeve holds the installation's lock; the message names it and how to stop it."""


def hold(*, exclusive: bool, role: str) -> int:
    """Take the lock (without waiting) and return its fd, kept open for the process's lifetime;
    AlreadyRunning if another process holds it. Taken alone, it also learns which worker held it
    last (`dead_workers()`) and names this process in its place."""
    global _dead
    path = Path(settings.REEVE_LOCK_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # A shared holder tries it alone first: no other holder means every earlier one is gone.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except BlockingIOError:
        alone = False
        if exclusive or not _share(fd):
            os.close(fd)
            raise AlreadyRunning(_running_message(path, wanted=role)) from None
    if alone:
        _dead = _last_worker(fd)
        record(fd, {"pid": os.getpid(), "role": role})
        if not exclusive:
            # Other workers may join now. Linux converts a lock by dropping it first: a `./reeve start`
            # that took it in between is running now, and this worker steps back as it would have.
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise AlreadyRunning(_running_message(path, wanted=role)) from None
    return fd


_dead: list[str] = []
# A worker starting beside us holds the lock alone for a moment (to read and write the file): a shared
# taker retries for this long before it takes an exclusive holder for a running `./reeve start`.
SHARE_RETRY_SECONDS = 2.0


def _share(fd: int) -> bool:
    deadline = time.monotonic() + SHARE_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def dead_workers() -> list[str]:
    """The worker (host:pid) that held the lock before this process took it alone: proven gone, so
    its claims are recovered at once. [] when this process joined live workers, or the file was new."""
    return list(_dead)


def _last_worker(fd: int) -> list[str]:
    try:
        details = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return []
    if not isinstance(details, dict):
        return []
    name = details.get("worker")
    if not name and isinstance(details.get("pid"), int):  # written before the file named its worker
        name = f"{socket.gethostname()}:{details['pid']}"
    # Even this very name (a PID reused): its claims are recovered before this worker claims anything.
    return [name] if isinstance(name, str) and name else []


def record(fd: int, details: dict) -> None:
    """Write what a second start should name (PIDs, the API's address) into the held lock file, and
    the worker's name (host:pid, as its claims carry it) for the start after its death."""
    if isinstance(details.get("pid"), int):
        details = {**details, "worker": f"{socket.gethostname()}:{details['pid']}"}
    data = json.dumps(details).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _running_message(path: Path, *, wanted: str) -> str:
    try:
        details = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        details = {}
    recorded = {p for p in (details.get("pid"), details.get("web_pid")) if isinstance(p, int)}
    # The file names the last process that took the lock alone: a worker that others joined may be gone.
    pids = sorted(set(_holders(path)) | {p for p in recorded if Path(f"/proc/{p}").exists()})
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


def running_api_url() -> str | None:
    """The API address (REEVE_API_URL) of the `./reeve start` running for this installation, as it
    recorded it in the lock file; None when none runs (or it serves no API). Read without taking
    the lock: a start beginning meanwhile is never turned away by the look."""
    path = Path(settings.REEVE_LOCK_FILE)
    try:
        details = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    url = details.get("api_url") if isinstance(details, dict) else None
    if not isinstance(url, str) or not url:
        return None
    holders = _holders(path)
    return url if details.get("pid") in holders or details.get("web_pid") in holders else None


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
