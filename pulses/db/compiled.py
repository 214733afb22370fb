"""Reads the worker's loop makes at every pass, compiled to SQL once.

A busy worker passes its loop at every commit anywhere (its reserved slots wait for a critical
pulse), and through the ORM each read costs ~0.4 ms of Python building and compiling the query
before the database sees it; the query itself takes ~10 µs. With four busy workers on one SQLite
file, that was a fifth of their CPU time (docs/performance.md, "the worker's loop").

The query is still written once, as a QuerySet (its rules stay in the models); this only keeps
its SQL, and converts the values as the ORM would (time zones, SQLite's text timestamps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import QuerySet


class FirstValue:
    """The first value of `make()`, a `values_list(name, flat=True)` QuerySet whose parameters never
    change (no `now()` in it), else None."""

    def __init__(self, make: Callable[[], QuerySet]) -> None:
        self._make = make
        # Per database vendor: the SQL, its parameters and the selected column. Nothing that holds a
        # connection: every thread reads through its own, and one kept here would stay open.
        self._compiled: dict[str, tuple[str, tuple, Any]] = {}

    def __call__(self) -> Any:
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            compiler = self._make()[:1].query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            [(column, _, _)] = compiler.select
            compiled = self._compiled[connection.vendor] = (sql, tuple(params), column)
        sql, params, column = compiled
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        value = row[0]
        # As the ORM converts a value read: the backend's converters, then the field's.
        for convert in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
            value = convert(value, column, connection)
        return value
