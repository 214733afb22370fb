"""What differs between SQLite and PostgreSQL, in one package: the one-statement claim and record
(`claims`), the idle workers' wake-ups (`wakeup`), SQLite's write gate (`write_gate`) and full-text
search (`search`). Everything else in Reeve is written once for both, through the ORM (`compiled`
keeps the SQL of the reads a worker makes at every pass of its loop).

Code that must know which database it talks to asks `is_postgres()`, and nothing else: Reeve runs on
SQLite or PostgreSQL, so "not PostgreSQL" is SQLite.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections


def is_postgres(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when the database `using` is PostgreSQL, False for SQLite (no connection is opened)."""
    return connections[using].vendor == "postgresql"
