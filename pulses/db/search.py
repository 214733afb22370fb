"""Searching prompts through the full-text index (migration 0005 creates it), not a `LIKE '%q%'` scan.

Each word of the query must start a word of the prompt ("hist" finds "history"), in any order and
any case: an FTS5 prefix query on SQLite, a `word:*` tsquery on PostgreSQL. Both read the index and
keep the newest MAX_MATCHES matches, so a search costs what it shows, not the size of the history.
"""

from __future__ import annotations

import re

from django.db import connection

from pulses.db import is_postgres
from pulses.models import PulseQuerySet

MAX_WORDS = 8
_WORD = re.compile(r"\w+")

MAX_MATCHES = 10_001  # the newest this many matches: one more than the admin counts (admin.COUNT_CAP)
_SQLITE = "SELECT rowid FROM pulse_search WHERE pulse_search MATCH %s ORDER BY rowid DESC LIMIT %s"
# The same expression as the index (pulses_prompt_search_idx). MATERIALIZED makes the matches come
# from the index first: with the ORDER BY id DESC LIMIT in the same query the planner may instead walk
# the primary key backwards computing each prompt's tsvector (a common word took 2.3 s at a million
# rows that way; bench/bench_history.py prints the plan).
_POSTGRES = """
WITH found AS MATERIALIZED (
    SELECT id FROM pulses WHERE to_tsvector('simple', prompt) @@ to_tsquery('simple', %s)
)
SELECT id FROM found ORDER BY id DESC LIMIT %s
"""


def words(text: str) -> list[str]:
    """The words a search looks for (punctuation is not indexed, so it is not searched either)."""
    return _WORD.findall(text.lower())[:MAX_WORDS]


def matching_ids(text: str, *, limit: int = MAX_MATCHES) -> list[int]:
    """Ids of the newest `limit` pulses whose prompt has every word of `text` (as a word or the
    start of one): one query against the index."""
    terms = words(text)
    if not terms:
        return []
    if is_postgres():
        sql, query = _POSTGRES, " & ".join(f"{term}:*" for term in terms)
    else:
        sql, query = _SQLITE, " ".join(f'"{term}"*' for term in terms)  # \w+ holds no quote
    with connection.cursor() as cursor:
        cursor.execute(sql, [query, limit])
        return [row[0] for row in cursor.fetchall()]


def matching(pulses: PulseQuerySet, text: str) -> PulseQuerySet:
    """`pulses` among the newest MAX_MATCHES whose prompt has every word of `text`. The index is
    read once, here; the list, its count and the date navigation then look the ids up by key."""
    return pulses.filter(pk__in=matching_ids(text))
