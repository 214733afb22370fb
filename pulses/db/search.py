"""Searching prompts through the full-text index (release 22's squashed migration creates it), not a
`LIKE '%q%'` scan.

Each word of the query must start a word of the prompt ("hist" finds "history"), in any order and
any case: an FTS5 prefix query on SQLite, a `word:*` tsquery on PostgreSQL. A search keeps the newest
MAX_MATCHES matches, so it costs what the admin shows (at most that many), not the size of the history:

- SQLite: FTS5 hands over rowids newest first and stops at the limit. The list and its count each
  take them as a subquery (`id IN (SELECT rowid … LIMIT n)`), so the ids never travel through
  Python: binding 10,001 of them as parameters cost more than the search itself.
- PostgreSQL: the GIN index yields every match in physical order, and turning a match into its id
  means reading its row; reading all of them (67,000 for "history" in a year) took a second. So the
  newest matches are taken range by range of ids, newest first (`id > low AND id <= high`, the GIN
  bitmap ANDed with the primary key's), each range sized from how often the previous one matched,
  until MAX_MATCHES are found: about as many rows are read as are kept. The ids go back as one array
  parameter (`id = ANY(%s)`).
"""

from __future__ import annotations

import math
import re

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from pulses.db import is_postgres
from pulses.models import PulseQuerySet

MAX_WORDS = 8
_WORD = re.compile(r"\w+")

MAX_MATCHES = 1_001  # the newest this many matches: the admin counts a search up to one fewer
FIRST_RANGE = 20_000  # PostgreSQL: the ids the first range covers; later ones are sized by the matches
SPARE = 1.25  # a range covers a quarter more ids than the last one's rate of matches asks for

_SQLITE = "SELECT rowid FROM pulse_search WHERE pulse_search MATCH %s ORDER BY rowid DESC LIMIT %s"
# The same expression as the index (pulses_prompt_search_idx). For a range of ids the planner ANDs
# the GIN bitmap with the primary key's (bench/bench_history.py prints the plan).
_POSTGRES_RANGE = """
SELECT id FROM pulses
WHERE to_tsvector('simple', prompt) @@ to_tsquery('simple', %s) AND id > %s AND id <= %s
ORDER BY id DESC
"""


def words(text: str) -> list[str]:
    """The words a search looks for (punctuation is not indexed, so it is not searched either)."""
    return _WORD.findall(text.lower())[:MAX_WORDS]


def _sqlite_query(terms: list[str]) -> str:
    return " ".join(f'"{term}"*' for term in terms)  # \w+ holds no quote


def _postgres_query(terms: list[str]) -> str:
    return " & ".join(f"{term}:*" for term in terms)


def _postgres_ids(query: str, limit: int) -> list[int]:
    """The newest `limit` matches of the tsquery, range by range of ids from the newest down."""
    ids: list[int] = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(id) FROM pulses")
        high = cursor.fetchone()[0] or 0
        span = FIRST_RANGE
        while high > 0 and len(ids) < limit:
            low = max(high - span, 0)
            cursor.execute(_POSTGRES_RANGE, [query, low, high])
            found = [row[0] for row in cursor.fetchall()]
            ids += found
            wanted = limit - len(ids)
            # As many ids as the matches still wanted need at the rate just seen; four times the
            # range when it held none (a rare word: the ranges soon reach the oldest pulse).
            span = math.ceil(wanted * span / len(found) * SPARE) if found else span * 4
            high = low
    return ids[:limit]


def matching_ids(text: str, *, limit: int = MAX_MATCHES) -> list[int]:
    """Ids of the newest `limit` pulses whose prompt has every word of `text` (as a word or the
    start of one), newest first."""
    terms = words(text)
    if not terms:
        return []
    if is_postgres():
        return _postgres_ids(_postgres_query(terms), limit)
    with connection.cursor() as cursor:
        cursor.execute(_SQLITE, [_sqlite_query(terms), limit])
        return [row[0] for row in cursor.fetchall()]


def matching(pulses: PulseQuerySet, text: str) -> PulseQuerySet:
    """`pulses` among the newest MAX_MATCHES whose prompt has every word of `text`."""
    terms = words(text)
    if not terms:
        return pulses.none()
    if is_postgres():
        # The matches are found once, here; the list and its count look the ids up by key.
        ids = _postgres_ids(_postgres_query(terms), MAX_MATCHES)
        column = f"{connection.ops.quote_name(pulses.model._meta.db_table)}.{connection.ops.quote_name('id')}"
        matched = RawSQL(f"{column} = ANY(%s)", (ids,), output_field=BooleanField())  # noqa: S611 - bound
        return pulses.filter(matched)
    return pulses.filter(pk__in=RawSQL(_SQLITE, (_sqlite_query(terms), MAX_MATCHES)))  # noqa: S611 - bound
