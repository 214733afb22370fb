"""The claim and the record of a run as single statements, and the per-session lock of a claim.

The transitions themselves (which rows, what they become) are `pulses.models`': this module writes
`claim_changes` and `Pulse.finish_changes` as one SQL statement each, where the ORM would need
several round trips. Each is used where `bench/` showed it pays (docs/performance.md).
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import F, Model, Q
from django.db.models.expressions import CombinedExpression, Value

from pulses.db import is_postgres
from pulses.models import PRIORITY_RANK, Priority, Pulse, PulseAttempt, Status, claim_changes

# The due pulses a claim takes, in run order, skipping those whose session is running. The states
# are literals, not parameters, so the planner matches the partial indexes on them. It walks
# pulses_claim_idx in run order and stops at the limit, however many pulses are due. PostgreSQL
# chooses that plan from its statistics; SQLite, which has none (nothing runs ANALYZE), took
# (status, scheduled_at) and sorted every due pulse, 5.4 ms a claim with 2,000 due against 0.11
# (docs/performance.md), so there the index is named.
_PICK_SQL = """
    SELECT id FROM pulses{indexed}
    WHERE status = '{pending}' AND scheduled_at <= %s{only}
      AND (session_id = '' OR session_id NOT IN (
          SELECT session_id FROM pulses WHERE status = '{processing}' AND session_id <> ''))
    ORDER BY priority_rank, scheduled_at, id
    LIMIT %s"""

_CLAIM_SQL = """
WITH picked AS MATERIALIZED ({pick}{lock}
)
UPDATE pulses SET {assignments}
WHERE status = '{pending}' AND id IN (SELECT id FROM picked)
RETURNING {columns}
"""
# MATERIALIZED: the pick runs once. As a plain `id IN (SELECT … LIMIT n)` PostgreSQL may run the
# subquery again per row and, skipping the rows it locked the first time, claim more than n.


def _pick(*, critical_only: bool) -> str:
    return _PICK_SQL.format(
        indexed="" if is_postgres() else " INDEXED BY pulses_claim_idx",
        pending=Status.PENDING.value,
        processing=Status.PROCESSING.value,
        # The rank, not the name: the claim index starts with it, so a reserved slot's claim reads
        # only the critical end of the index.
        only=f" AND priority_rank = {PRIORITY_RANK[Priority.CRITICAL]}" if critical_only else "",
    )


_RECORD_SQL = """
WITH claimed AS (
    UPDATE pulses SET {assignments} WHERE {still_claimed} RETURNING id
)
INSERT INTO pulse_attempts ({columns}) SELECT {placeholders} FROM claimed
"""


def _column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _assignments(model: type[Model], changes: dict[str, object]) -> tuple[str, list[object]]:
    """`changes` (a transition's, from pulses.models) as a SET list: plain values, or `F(name) ± n`."""
    parts, params = [], []
    for name, value in changes.items():
        column = _column(model, name)
        if isinstance(value, CombinedExpression):
            lhs, rhs = value.lhs, value.rhs
            if not (
                isinstance(lhs, F) and lhs.name == name and isinstance(rhs, Value) and value.connector in "+-"
            ):
                raise ValueError(f"{name}: only F({name!r}) + n or - n can be written in one statement")
            parts.append(f"{column} = {column} {value.connector} %s")
            params.append(rhs.value)
        else:
            parts.append(f"{column} = %s")
            params.append(model._meta.get_field(name).get_db_prep_save(value, connection))
    return ", ".join(parts), params


def _equalities(model: type[Model], condition: Q) -> tuple[str, list[object]]:
    """A conjunction of `field=value` (a transition's guard, such as `Pulse.claimed_by`) as SQL."""
    parts, params = [], []
    if condition.connector != Q.AND or condition.negated:
        raise ValueError("only a plain AND of field=value can be written in one statement")
    for name, value in condition.children:
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        parts.append(f"{connection.ops.quote_name(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    return " AND ".join(parts), params


def claim_statement(
    worker: str, limit: int, now: datetime, until: datetime, *, critical_only: bool = False
) -> tuple[str, list[object]]:
    """The claim's SQL and parameters (`bench/bench_postgres.py` EXPLAINs it): the `limit` due pulses
    in run order whose session is not running (only critical ones with `critical_only`), leased to
    `worker` in one UPDATE … RETURNING; their rows locked FOR UPDATE SKIP LOCKED on PostgreSQL, so
    concurrent workers pass each other by."""
    assignments, assigned = _assignments(Pulse, claim_changes(worker=worker, now=now, until=until))
    sql = _CLAIM_SQL.format(
        pick=_pick(critical_only=critical_only),
        pending=Status.PENDING.value,
        lock=" FOR UPDATE SKIP LOCKED" if is_postgres() else "",
        assignments=assignments,
        columns=", ".join(_column(Pulse, field.name) for field in Pulse._meta.concrete_fields),
    )
    stamp = connection.ops.adapt_datetimefield_value
    return sql, [stamp(now), limit, *assigned]


def first_claimable(now: datetime, *, critical_only: bool = False) -> int | None:
    """The pulse a claim at `now` would take first (with `critical_only`, the first critical one),
    else None; a read, which locks nothing. With the claim's own pick, the look and the claim can
    never disagree, and the critical look reads only the critical end of pulses_claim_idx, however
    many other pulses are due: a busy worker looks at every commit of another worker."""
    with connection.cursor() as cursor:
        cursor.execute(_pick(critical_only=critical_only), [connection.ops.adapt_datetimefield_value(now), 1])
        row = cursor.fetchone()
    return row[0] if row else None


def returning_supported() -> bool:
    """UPDATE … RETURNING: PostgreSQL, and SQLite from 3.35."""
    return connection.features.can_return_columns_from_insert


def record_in_one_statement(
    pulse: Pulse, *, worker: str, changes: dict[str, object], attempt: dict[str, object]
) -> bool:
    """`pulse.finish(worker=…, changes=…)` and its attempt's INSERT as one statement (the INSERT reads
    the UPDATE's RETURNING): one round trip and one transaction. True when the claim still held;
    False when the UPDATE matched nothing, and so nothing was written."""
    assignments, assigned = _assignments(Pulse, changes)
    still_claimed, guard = _equalities(Pulse, pulse.claimed_by(worker))
    columns, values = [], []
    for name, value in attempt.items():
        columns.append(_column(PulseAttempt, name))
        values.append(PulseAttempt._meta.get_field(name).get_db_prep_save(value, connection))
    sql = _RECORD_SQL.format(
        assignments=assignments,
        still_claimed=still_claimed,
        columns=", ".join(columns),
        placeholders=", ".join(["%s"] * len(columns)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*assigned, *guard, *values])
        return cursor.rowcount == 1


def session_free(session_id: str) -> bool:
    """Whether no pulse of `session_id` runs, checked under a lock on the session.

    On PostgreSQL, claims run side by side, so the busy-session filter of a claim may have read a
    snapshot from before another worker's claim of this session committed. A transaction-scoped
    advisory lock on the session serialises the claimers that come this way, and the re-check after
    taking it sees any claim committed meanwhile; a one-statement claim still in flight is caught by
    the unique index. (On SQLite every claim is already serialised by BEGIN IMMEDIATE.)"""
    if not is_postgres():
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [f"reeve-session:{session_id}"])
        if not cursor.fetchone()[0]:
            return False
    return not Pulse.objects.filter(status=Status.PROCESSING, session_id=session_id).exists()
