"""What a Reeve process makes on disk before it starts: its folders and the secret key file.

Reading the settings creates nothing (a command that only reads them, a test, a tool, leaves the disk
as it was); `prepare()` is called by the entry points that run Reeve: manage.py (every command) and
the web process (reeve_site/wsgi.py). LOG_FILE's folder is made when the file is first opened
(`reeve_site.log.LogFileHandler`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_secret_key(path: Path) -> str:
    """The key kept in `path`, or "" when there is none yet (`prepare` makes it)."""
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return ""


def _make_secret_key(path: Path) -> str:
    """Generate the key once: written to a temporary file and linked into place, so two processes
    starting together (the web and the worker units) end up with the same key, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(secrets.token_urlsafe(50))
    scratch.chmod(0o600)
    try:
        os.link(scratch, path)
    except FileExistsError:  # another process made it first: theirs is the key
        pass
    finally:
        scratch.unlink(missing_ok=True)
    return read_secret_key(path)


def prepare() -> None:
    """Make the database's folder (SQLite), the metrics folder, the static folder (when the
    checkout is writable) and, unless SECRET_KEY is set, the secret key file."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from pulses.db import is_postgres  # the database's kind, asked one way (read after the settings)

    folders = [Path(settings.PROMETHEUS_MULTIPROC_DIR)]
    if not is_postgres():
        folders.append(Path(settings.DATABASES["default"]["NAME"]).parent)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        Path(settings.STATIC_ROOT).mkdir(exist_ok=True)  # whitenoise warns on every start without it
    except OSError:  # a read-only checkout (systemd's ProtectSystem): the warning is harmless
        pass
    try:
        settings.SECRET_KEY  # noqa: B018 (Django raises on reading an empty one)
    except ImproperlyConfigured:
        key_file = Path(settings.SECRET_KEY_FILE)
        if key_file.exists() and not key_file.is_file():
            # Hidden by the agent's sandbox (/dev/null in its place, pulses/agent/sandbox.py): this is
            # Reeve's MCP server started by the agent, which signs nothing; a key of its own, in memory.
            settings.SECRET_KEY = secrets.token_urlsafe(50)
        else:
            settings.SECRET_KEY = _make_secret_key(key_file)
