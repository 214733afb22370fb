"""The admin's pulse list at any size of the history: filter choices read from a few index probes, a
count that stops at COUNT_CAP, and a date navigation that refuses years Reeve cannot hold (used by
`pulses.admin.PulseAdmin`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

from pulses import reports
from pulses.limits import MAX_YEAR, MIN_YEAR, TIME_RANGE
from pulses.models import PulseQuerySet

TAG_CHOICES_SCAN = 2000  # the tag filter offers the tags of the most recent pulses
SOURCE_CHOICES = 50  # the source filter offers at most this many sources
COUNT_CAP = 10_000  # the list counts matching pulses up to this many, then says "more than"


class ValueFilter(admin.SimpleListFilter):
    """Offers the values `offered()` reads, each shown as itself, and keeps the pulses
    `matching(queryset, value)` the one chosen."""

    offered: Callable[[], list[str]]
    matching: Callable[[QuerySet, str], QuerySet]

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.offered()]

    def queryset(self, request, queryset):
        return self.matching(queryset, self.value()) if self.value() else queryset


class TagFilter(ValueFilter):
    title = "tag"
    parameter_name = "tag"
    offered = staticmethod(partial(reports.recent_tags, scan=TAG_CHOICES_SCAN))
    matching = staticmethod(PulseQuerySet.with_tag)


class SourceFilter(ValueFilter):
    title = "source"
    parameter_name = "source__exact"
    offered = staticmethod(partial(reports.sources, limit=SOURCE_CHOICES))
    matching = staticmethod(lambda queryset, source: queryset.filter(source=source))


class CappedPaginator(Paginator):
    """Counts the matching pulses only up to COUNT_CAP: past that, a count would read the whole
    history to print one number. The page says so (`note`, in the change list template)."""

    cap = COUNT_CAP

    @cached_property
    def _found(self) -> int:
        # Only the keys: the answer column's subquery (answers.with_answer) is for the page's rows.
        return self.object_list.order_by().values("pk")[: self.cap + 1].count()

    @property
    def count(self) -> int:
        return min(self._found, self.cap)

    @property
    def capped(self) -> bool:
        return self._found > self.cap

    @cached_property
    def note(self) -> str:
        if not self.capped:
            return ""
        total = sum(reports.stats().by_status.values())
        return (
            f"More than {self.cap:,} pulses match, so the count stops there and the pages reach the newest "
            f"{self.cap:,} (the database holds about {total:,} pulses in all, from the daily counts). "
            "Narrow the list with the filters, the search or the dates."
        )


class PulseChangeList(ChangeList):
    """Refuses a date-navigation year outside the years Reeve accepts (pulses.limits), the way the
    admin refuses any bad filter (back to the list with an error note): Django would turn year 9999
    into a range ending in year 10000, and year 1 into a moment before year 1 in UTC, and fail."""

    def get_filters(self, request):
        for value in self.filter_params.get(f"{self.date_hierarchy}__year", ()):
            if not (value.isdigit() and MIN_YEAR <= int(value) <= MAX_YEAR):
                raise IncorrectLookupParameters(f"the year must be within {TIME_RANGE}")
        return super().get_filters(request)


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "overdue (pending, time has come)"), ("no", "not overdue")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.due()
        if self.value() == "no":
            return queryset.not_due()
        return queryset
