"""The admin's date navigation for pulses, drawn from index probes instead of a scan of the history.

Django's own `date_hierarchy` tag lists the years, months or days that have pulses with
`SELECT DISTINCT` over a date function, which reads every row. Here each candidate year, month or
day is one `EXISTS` over a range of the `scheduled_at` index: a year of history costs at most 31
probes per page, whatever its size, and the years hop from one that has pulses to the next (one probe
per year shown, so a pulse scheduled for 9000 costs no 7,000 probes). Only moments within the years
Reeve accepts (pulses.limits) are offered: a row stored before those bounds existed (year 1, 1970,
9999) stays in the list but gets no link, whose filter could not even be converted to local time. The
probes look at all pulses, not only those the filters or the
search let through (under a filter, such a probe could walk every row the filter matches), so with a
filter on, a period offered may hold none that match. The links and the filtering are Django's own.
"""

from __future__ import annotations

import datetime

from django import template
from django.contrib.admin.views.main import ChangeList
from django.utils import formats, timezone
from django.utils.text import capfirst

from pulses.limits import MAX_YEAR, MIN_YEAR

register = template.Library()


def _start(year: int, month: int = 1, day: int = 1) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime(year, month, day))  # noqa: DTZ001 - made aware here


def _day_start(day: datetime.date) -> datetime.datetime:
    return _start(day.year, day.month, day.day)


def _next_month(moment: datetime.datetime) -> datetime.datetime:
    return _start(moment.year + moment.month // 12, moment.month % 12 + 1)


def _between(cl: ChangeList, since: datetime.datetime, until: datetime.datetime):
    field = cl.date_hierarchy
    return cl.root_queryset.filter(**{f"{field}__gte": since, f"{field}__lt": until})


def _has_pulses(cl: ChangeList, since: datetime.datetime, until: datetime.datetime) -> bool:
    return _between(cl, since, until).exists()


def _years(cl: ChangeList) -> list[int]:
    """The years that have pulses, oldest first, within MIN_YEAR..MAX_YEAR: from the first moment
    on, one ORDER BY … LIMIT 1 probe per year found (SQLite answers MIN() and MAX() together with a
    full scan)."""
    field = cl.date_hierarchy
    years: list[int] = []
    since = _start(MIN_YEAR)
    while moment := _between(cl, since, _start(MAX_YEAR + 1)).order_by(field).values_list(field).first():
        years.append(timezone.localtime(moment[0]).year)
        since = _start(years[-1] + 1)
    return years


@register.inclusion_tag("admin/date_hierarchy.html")
def indexed_date_hierarchy(cl: ChangeList) -> dict:
    """The same context as Django's `date_hierarchy` tag, for the same template."""
    field = cl.date_hierarchy
    year, month, day = (cl.params.get(f"{field}__{part}") for part in ("year", "month", "day"))

    def link(filters: dict) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    if not (year or month or day):
        years = _years(cl)
        if not years:
            return {"show": False}
        if len(years) > 1:
            return {
                "show": True,
                "back": None,
                "choices": [{"link": link({f"{field}__year": y}), "title": str(y)} for y in years],
            }
        year = years[0]
        moments = _between(cl, _start(year), _start(year + 1)).values_list(field, flat=True)
        first, last = moments.order_by(field).first(), moments.order_by(f"-{field}").first()
        if timezone.localtime(first).month == timezone.localtime(last).month:
            month = timezone.localtime(first).month
    year = int(year)
    if month and day:
        chosen = datetime.date(year, int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({f"{field}__year": year, f"{field}__month": month}),
                "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if month:
        days = []
        candidate = datetime.date(year, int(month), 1)
        while candidate.month == int(month):
            following = candidate + datetime.timedelta(days=1)
            if _has_pulses(cl, _start(year, int(month), candidate.day), _day_start(following)):
                days.append(candidate)
            candidate = following
        return {
            "show": True,
            "back": {"link": link({f"{field}__year": year}), "title": str(year)},
            "choices": [
                {
                    "link": link({f"{field}__year": year, f"{field}__month": month, f"{field}__day": d.day}),
                    "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    months = [m for m in range(1, 13) if _has_pulses(cl, _start(year, m), _next_month(_start(year, m)))]
    return {
        "show": True,
        "back": {"link": link({}), "title": "All dates"},
        "choices": [
            {
                "link": link({f"{field}__year": year, f"{field}__month": m}),
                "title": capfirst(formats.date_format(datetime.date(year, m, 1), "YEAR_MONTH_FORMAT")),
            }
            for m in months
        ],
    }
