"""Searching prompts through the full-text index (migration 0004 creates it), not a `LIKE '%q%'` scan.

Each word of the query must start a word of the prompt ("hist" finds "history"), in any order and
any case: an FTS5 prefix query on SQLite, a `word:*` tsquery on PostgreSQL. Both read the index, so
a search costs what it finds, not the size of the history.
"""

from __future__ import annotations

import re

from django.db import connection
from django.db.models.expressions import RawSQL

from pulses.models import PulseQuerySet

MAX_WORDS = 8
_WORD = re.compile(r"\w+")

_SQLITE = "SELECT rowid FROM pulse_search WHERE pulse_search MATCH %s"
# The same expression as the index (pulses_prompt_search_idx), so the planner uses it.
_POSTGRES = "SELECT id FROM pulses WHERE to_tsvector('simple', prompt) @@ to_tsquery('simple', %s)"


def words(text: str) -> list[str]:
    """The words a search looks for (punctuation is not indexed, so it is not searched either)."""
    return _WORD.findall(text.lower())[:MAX_WORDS]


def matching(pulses: PulseQuerySet, text: str) -> PulseQuerySet:
    """`pulses` whose prompt has every word of `text` (as a word or the start of one)."""
    terms = words(text)
    if not terms:
        return pulses.none()
    if connection.vendor == "postgresql":
        query = " & ".join(f"{term}:*" for term in terms)
        return pulses.filter(pk__in=RawSQL(_POSTGRES, [query]))  # noqa: S611 - constant SQL, bound parameter
    query = " ".join(f'"{term}"*' for term in terms)  # \w+ holds no quote: nothing to escape
    return pulses.filter(pk__in=RawSQL(_SQLITE, [query]))  # noqa: S611 - constant SQL, bound parameter
