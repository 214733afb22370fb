"""Search keeps the newest matches, whatever way the index hands them over: FTS5 newest first on
SQLite, ranges of ids from the newest down on PostgreSQL (sized by how often the last one matched)."""

from __future__ import annotations

import pytest

from pulses.db import search
from pulses.models import Pulse
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/pulses/pulse/"


def history_of_uneven_density() -> list[int]:
    """Ids of the pulses that mention "history", newest first, among 60 pulses: every other one among
    the oldest, none for a stretch, then one in nine among the newest (so the ranges must grow)."""
    hits = []
    for n in range(60):
        matches = n % 2 == 0 if n < 25 else n >= 40 and n % 9 == 0
        pulse = PulseFactory(prompt=f"Review the history of item {n}" if matches else f"Water plant {n}")
        if matches:
            hits.append(pulse.pk)
    return sorted(hits, reverse=True)


@pytest.mark.parametrize("first_range", [1, 3, 7, 1000])
@pytest.mark.parametrize("limit", [1, 5, 12, 100])
def test_the_newest_matches_are_kept_whatever_the_ranges(monkeypatch, first_range, limit):
    monkeypatch.setattr(search, "FIRST_RANGE", first_range)
    hits = history_of_uneven_density()
    assert search.matching_ids("hist", limit=limit) == hits[:limit]
    monkeypatch.setattr(search, "MAX_MATCHES", limit)
    listed = list(search.matching(Pulse.objects.all(), "hist").order_by("-id").values_list("id", flat=True))
    assert listed == hits[:limit]


def test_a_search_combines_with_a_filter_and_finds_nothing_for_no_word():
    hits = history_of_uneven_density()
    failed = Pulse.objects.get(pk=hits[2])
    failed.status = "failed"
    failed.save(update_fields=["status"])
    assert list(search.matching(Pulse.objects.filter(status="failed"), "history")) == [failed]
    assert list(search.matching(Pulse.objects.all(), "?!")) == []
    assert search.matching_ids("nothing matches this") == []


def test_the_admin_pages_through_the_newest_matches_and_caps_the_count(admin_client, monkeypatch):
    from pulses.admin import CappedPaginator

    hits = history_of_uneven_density()
    monkeypatch.setattr(CappedPaginator, "cap", 4)
    monkeypatch.setattr(search, "MAX_MATCHES", 5)
    monkeypatch.setattr(search, "FIRST_RANGE", 2)
    page = admin_client.get(CHANGELIST + "?q=history")
    assert [p.pk for p in page.context["cl"].result_list] == hits[:5]
    assert "More than 4 pulses match, so the count stops there" in page.content.decode()
