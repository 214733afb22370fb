"""Reeve's files are its user's alone: the database (sessions, password hashes, every prompt and answer),
its WAL, the write gate, the secret key, `.env`, logs, backups and metrics are 0600 in 0700 folders.

New files get those modes from the umask every Reeve process sets (`use_private_umask`, the units'
`UMask=0077`, `./reeve start`); `tighten()` fixes an installation made before, on every start, and
`exposed()` is what `doctor` reports. Only Reeve's own, known paths are touched, never a whole tree:
a data directory misconfigured as the home directory must not make the user's files private.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from django.conf import settings

from pulses.db import is_postgres

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal", ".write-gate")


def use_private_umask() -> None:
    """Every file this process (and the agent it starts) creates from now on is private."""
    os.umask(PRIVATE_UMASK)


def _sqlite_path() -> Path | None:
    db = settings.DATABASES["default"]
    return None if is_postgres() else Path(db["NAME"])


def _reeves(folder: Path) -> bool:
    """A folder Reeve may make private: inside the data directory or named for Reeve (the default
    layout, `/srv/reeve`, `/var/log/reeve`), never `/`, the home directory, `/var/log` or `/tmp`."""
    try:
        resolved = folder.expanduser().resolve()
        home = Path(settings.REEVE_HOME).expanduser().resolve()
    except OSError:
        return False
    if resolved in (Path("/"), Path.home().resolve()) or len(resolved.parts) <= 2:
        return False
    return resolved == home or home in resolved.parents or "reeve" in resolved.name.lower()


def private_paths() -> tuple[list[Path], list[Path]]:
    """(folders, files) that hold Reeve's data, as this installation resolves them; existing ones only."""
    home = Path(settings.REEVE_HOME)
    metrics = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    folders = {home, home / "backups", home / "logs", metrics}
    files = {home / "secret_key", *(home / "backups").glob("pulse_queue_*"), *metrics.glob("*.db")}
    files.add(Path(settings.BASE_DIR) / ".env")  # the tokens; its folder is the checkout, left alone
    if db := _sqlite_path():
        folders.add(db.parent)
        files |= {db.with_name(db.name + suffix) for suffix in SQLITE_SIDE_FILES}
        files |= set(db.parent.glob(f"{db.name}.before-restore-*"))
    if settings.LOG_FILE:
        log = Path(settings.LOG_FILE)
        folders.add(log.parent)
        files |= set(log.parent.glob(f"{log.name}*"))
        if _reeves(log.parent):  # the cron jobs' logs beside it (heartbeat.log, backup.log, …)
            files |= set(log.parent.glob("*.log*"))
    return (
        sorted(f for f in folders if f.is_dir() and not f.is_symlink() and _reeves(f)),
        sorted(f for f in files if f.is_file() and not f.is_symlink()),
    )


def exposed() -> list[tuple[Path, int]]:
    """Reeve's folders and files that another local user may read, with their modes."""
    folders, files = private_paths()
    found = []
    for path in [*folders, *files]:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found


def tighten() -> list[Path]:
    """Make Reeve's existing folders 0700 and files 0600; returns what changed. A path this user does
    not own is left alone (and logged)."""
    changed = []
    for path, mode in exposed():
        try:
            path.chmod(DIR_MODE if path.is_dir() else mode & FILE_MODE)
        except OSError as exc:
            logger.warning("private_file_not_tightened path=%s mode=%o error=%s", path, mode, exc)
            continue
        changed.append(path)
    if changed:
        shown = ",".join(map(str, changed[:20]))
        logger.info("private_files_tightened count=%s paths=%s", len(changed), shown)
    return changed
