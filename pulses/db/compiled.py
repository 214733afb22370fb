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
        self._compiled: tuple[str, str, tuple, Any, dict] | None = None

    def __call__(self) -> Any:
        if self._compiled is None or self._compiled[0] != connection.vendor:
            compiler = self._make()[:1].query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            converters = compiler.get_converters([column for column, _, _ in compiler.select])
            self._compiled = (connection.vendor, sql, tuple(params), compiler, converters)
        _vendor, sql, params, compiler, converters = self._compiled
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if converters:
            [row] = compiler.apply_converters([row], converters)
        return row[0]
