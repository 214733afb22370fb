"""One check-and-insert at a time: a cap counted, then the row it allows added, as one step.

Two requests that each count 59 of a cap of 60 and each insert one make 61: the count and the insert
must not interleave. `serialized(name)` runs its block in one transaction, alone among every
process that runs a block of the same name:

- PostgreSQL: a transaction-level advisory lock on the name, taken first. It is held until the
  commit, and in READ COMMITTED each statement after it reads a fresh snapshot, so the count sees
  every row the previous holder inserted. (A row lock would need a row to exist; this needs none.)
- SQLite: the write gate (`write_gate`), which every write of Reeve already takes; it orders the
  block against every other writer, of any process, for as long as the block runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from pulses.db import is_postgres
from pulses.db.write_gate import write_gate


@contextmanager
def serialized(name: str) -> Iterator[None]:
    """Run the block in one transaction, alone among the blocks of the same `name` (every process)."""
    with write_gate(), transaction.atomic():
        if is_postgres():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"reeve-serial:{name}"])
        yield
