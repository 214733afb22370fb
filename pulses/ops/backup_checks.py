"""What makes a backup Reeve's own, checked before anything of it runs or replaces the database.

A backup is accepted only when it holds the tables, with exactly the columns, that Reeve's migrations
define at the point the backup records (its `django_migrations` rows): an older backup is checked
against the schema of its own time, a stub with empty tables named like Reeve's is refused. A plain
PostgreSQL dump is also read line by line before psql sees it: a psql meta-command (`\\!`, `\\copy`,
`\\i` …) outside COPY data is refused, and psql itself runs the dump under `\\restrict`, so a line this
reader misjudged is still refused by psql rather than run.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# The dump's own `\restrict KEY` / `\unrestrict KEY` (pg_dump 17.6, 16.10, 15.14, 14.19, 13.22 on).
RESTRICT_LINE = re.compile(r"^\\(un)?restrict [A-Za-z0-9]+\s*$")
CREATE_TABLE = re.compile(r'^CREATE (?:UNLOGGED )?TABLE (?:"?[\w]+"?\.)?"?(\w+)"? \($')
QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
COPY_START = re.compile(r"^COPY \S+ \(.*\) FROM stdin;$")
# psql releases that know `\restrict` (the fix for CVE-2025-8714): (major, first minor).
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}


class NotReeveBackup(Exception):
    """The file is not a backup made by backup_db (or is one with something added)."""


@dataclass
class DumpReading:
    """What a plain pg_dump holds: its tables' columns, the migrations it records, and the line
    numbers of its own `\\restrict`/`\\unrestrict` lines (replaced by Reeve's own key on restore)."""

    tables: dict[str, set[str]] = field(default_factory=dict)
    migrations: set[tuple[str, str]] = field(default_factory=set)
    restrict_lines: set[int] = field(default_factory=set)


def read_dump(lines: Iterable[bytes]) -> DumpReading:
    """Read a plain pg_dump; raises NotReeveBackup at the first psql meta-command outside COPY data."""
    reading = DumpReading()
    table: str | None = None
    depth = 0
    copying: str | None = None  # the table whose COPY data is being read
    for number, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if copying is not None:
            if line == "\\.":
                copying = None
            elif copying == "django_migrations" and len(fields := line.split("\t")) >= 3:
                reading.migrations.add((fields[1], fields[2]))
            continue
        if line.startswith("\\"):
            if RESTRICT_LINE.match(line):
                reading.restrict_lines.add(number)
                continue
            raise NotReeveBackup(
                f"line {number} is a psql command ({line[:20]!r}): a backup made by backup_db never holds "
                "one; nothing was run"
            )
        if table is not None:
            if depth == 0 and line.startswith(")"):
                table = None
            elif depth == 0 and (stripped := line.strip()) and not stripped.startswith("CONSTRAINT "):
                reading.tables[table].add(stripped.split()[0].strip('"'))
            # A generated column's expression spans lines: only a line at depth 0 starts a column.
            unquoted = QUOTED.sub("", line)
            depth += unquoted.count("(") - unquoted.count(")")
        elif match := CREATE_TABLE.match(line):
            table, depth = match.group(1), 0
            reading.tables[table] = set()
        elif COPY_START.match(line):
            copying = line.split()[1].rsplit(".", 1)[-1].strip('"')
    return reading


def restricted(lines: Iterable[bytes], *, skip: set[int]) -> Iterator[bytes]:
    """The dump as psql receives it: Reeve's own `\\restrict` first (psql then refuses every other
    meta-command), the dump's own restrict lines left out."""
    yield f"\\restrict {secrets.token_hex(24)}\n".encode()
    for number, raw in enumerate(lines, start=1):
        if number not in skip:
            yield raw


def psql_restricts(version_text: str) -> bool:
    """Whether `psql --version` names a release that knows `\\restrict`."""
    match = re.search(r"(\d+)\.(\d+)", version_text)
    if not match:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    return major >= 18 or minor >= RESTRICT_SINCE.get(major, 10**6)


def sqlite_tables(conn: sqlite3.Connection) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """The tables of a SQLite file with their columns, and the migrations it records."""
    names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    tables = {
        # table_xinfo lists generated columns too (hidden 2 and 3); 1 marks a virtual table's own.
        name: {
            column
            for column, hidden in conn.execute("SELECT name, hidden FROM pragma_table_xinfo(?)", (name,))
            if hidden != 1
        }
        for name in names
    }
    migrations: set[tuple[str, str]] = set()
    if {"app", "name"} <= tables.get("django_migrations", set()):
        migrations = {(app, name) for app, name in conn.execute("SELECT app, name FROM django_migrations")}
    return tables, migrations


def expected_tables(migrations: set[tuple[str, str]]) -> dict[str, set[str]]:
    """The tables and columns Reeve's migrations define once `migrations` (a backup's record) are
    applied. Raises NotReeveBackup for a record this Reeve cannot place (a newer Reeve's backup)."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    graph = loader.graph
    replaced = {key for migration in loader.replacements.values() for key in migration.replaces}
    unknown = sorted(
        f"{app}.{name}"
        for app, name in migrations
        if app in loader.migrated_apps and (app, name) not in graph.nodes and (app, name) not in replaced
    )
    if unknown:
        raise NotReeveBackup(
            f"it records migrations this Reeve does not know ({', '.join(unknown[:3])}): it was made by a "
            "newer Reeve; upgrade Reeve first"
        )
    nodes = {key for key in migrations if key in graph.nodes}
    for key, squash in loader.replacements.items():
        if key in graph.nodes and all(old in migrations for old in squash.replaces):
            nodes.add(key)
    state = loader.project_state(nodes=sorted(nodes), at_end=True)
    tables: dict[str, set[str]] = {"django_migrations": {"id", "app", "name", "applied"}}
    for model in state.apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.managed and not meta.proxy:
            tables[meta.db_table] = {f.column for f in meta.local_concrete_fields}
    return tables


def check_schema(*, tables: dict[str, set[str]], migrations: set[tuple[str, str]]) -> None:
    """Refuse unless every table the recorded migrations define is there with exactly its columns."""
    if ("pulses", "0001_initial") not in migrations:
        raise NotReeveBackup("no record of Reeve's migrations")
    for table, columns in sorted(expected_tables(migrations).items()):
        if table not in tables:
            raise NotReeveBackup(f"no {table} table")
        if tables[table] != columns:
            missing, extra = sorted(columns - tables[table]), sorted(tables[table] - columns)
            raise NotReeveBackup(
                f"table {table} does not have Reeve's columns (missing: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(extra) or 'none'})"
            )
