"""The original Reeve's database URL (`PULSE_DB_URL`), read as Reeve's own settings.

The original named its database with an SQLAlchemy URL: `sqlite+aiosqlite:///~/.reeve/pulse_queue.db`
(a `~` allowed), or `postgresql+asyncpg://user:pw@host/db`. Reeve keeps SQLite in `PULSE_DB_PATH` and
PostgreSQL in `DATABASE_URL`; this module turns one form into the other, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class OriginalUrlError(ValueError):
    """A value that is neither an SQLite file URL nor a PostgreSQL URL."""


@dataclass(frozen=True)
class OriginalDatabase:
    sqlite_path: Path | None = None  # an SQLite file, or
    database_url: str = ""  # a PostgreSQL URL in the form DATABASE_URL takes

    def describe(self) -> str:
        return str(self.sqlite_path) if self.sqlite_path else without_password(self.database_url)


def without_password(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse(value: str, *, base_dir: Path) -> OriginalDatabase:
    """Read `sqlite[+driver]:///PATH` or `postgres[ql][+driver]://...`; a relative PATH is taken from
    `base_dir` (the original ran from its repository)."""
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    dialect = scheme.split("+", 1)[0].lower()
    if not sep:
        raise OriginalUrlError(f"{value!r} is not a database URL (expected sqlite+aiosqlite:///PATH)")
    if dialect == "sqlite":
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise OriginalUrlError(f"{value!r} does not name an SQLite file (sqlite+aiosqlite:///PATH)")
        path = Path(rest[1:].split("?", 1)[0]).expanduser()
        return OriginalDatabase(sqlite_path=path if path.is_absolute() else base_dir / path)
    if dialect in ("postgres", "postgresql"):
        return OriginalDatabase(database_url=f"postgres://{rest}")
    raise OriginalUrlError(f"{value!r}: only SQLite and PostgreSQL URLs are understood")


def same_postgres(a: str, b: str) -> bool:
    """Whether two PostgreSQL URLs name the same database, whatever their scheme spelling."""
    return urlsplit(a)[1:] == urlsplit(b)[1:]
