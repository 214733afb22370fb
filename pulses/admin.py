"""The admin: pulses with coloured status and priority, filters, read-only attempts, and actions that
each call `pulses.queue` and report how many pulses they changed.

Existing pulses are read-only here: a form save would write every column and could overwrite what the
worker just did. Changes go through the actions (or the API), which use the queue's guarded transitions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from pulses import answers, history, queue
from pulses.db import search
from pulses.limits import (
    AGENT_OPTION_CHECKS,
    TIME_RANGE,
    InvalidPulse,
    InvalidSessionId,
    check_session_id,
    time_in_range,
)
from pulses.models import Priority, Pulse, PulseAttempt, PulseNotPending, PulseNotRunning
from pulses.web.admin_actions import bulk_actions, report_count, run_each
from pulses.web.admin_list import CappedPaginator, OverdueFilter, PulseChangeList, SourceFilter, TagFilter
from pulses.web.forms import sticky_notes_field, tags_field
from pulses.web.palette import PRIORITY_COLOURS, STATUS_COLOURS

admin.site.site_header = "Reeve administration"
admin.site.site_title = "Reeve admin"
admin.site.site_url = "/dashboard/"  # "View site" leads to the dashboard
# The lists get the page's width (the pulse list's answer column is readable at 1280 px): the sidebar
# repeats the home page's links, a click away.
admin.site.enable_nav_sidebar = False


def _pill(text: str, colour: str):
    return format_html(
        '<span class="reeve-pill" style="background:{};color:#fff;border-radius:8px;padding:1px 8px">'
        "{}</span>",
        colour,
        text,
    )


def shown_time(value: datetime | None) -> str | None:
    """A stored time as the admin shows it, in TIME_ZONE; in UTC when it lies outside the range that
    TIME_ZONE can express (a row stored before pulses.limits bounded times, say year 1)."""
    if value is None:
        return None
    try:
        return formats.localize(timezone.template_localtime(value))
    except (OverflowError, ValueError):
        return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def list_time(value: datetime | None) -> SafeString | str | None:
    """A time in a list's narrow column: the date over the time (`2026-12-08` / `05:17`) in TIME_ZONE,
    shown_time's form where TIME_ZONE cannot express it."""
    if value is None:
        return None
    try:
        local = timezone.localtime(value)
    except (OverflowError, ValueError):
        return shown_time(value)
    return format_html("{}<br>{}", f"{local:%Y-%m-%d}", f"{local:%H:%M}")


class PulseAttemptInline(admin.TabularInline):
    model = PulseAttempt
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "number",
        "started_at",
        "duration_ms",
        "exit_code",
        "succeeded",
        "session_id",
        "cost_usd",
        "result_text",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _apply(modeladmin, request, pulses: QuerySet, operation, verb: str) -> None:
    """Run `operation(pulse_id)` for each selected pulse; report what changed and what was skipped."""
    pulse_ids = pulses.values_list("pk", flat=True)
    done, refusals = run_each(operation, pulse_ids, (PulseNotPending, PulseNotRunning, Pulse.DoesNotExist))
    report_count(modeladmin, request, verb, done, "pulse")
    skipped = [str(exc) or f"pulse {pulse_id} is gone" for pulse_id, exc in refusals]
    if skipped:
        modeladmin.message_user(
            request, f"Skipped {len(skipped)}: " + "; ".join(skipped[:5]), messages.WARNING
        )


ACTIONS = (
    (queue.requeue, "Requeued", "Requeue (run failed, cancelled or completed pulses again now)"),
    (queue.cancel, "Cancelled", "Cancel (pending pulses)"),
    (queue.run_now, "Made due now:", "Run now (make due immediately)"),
    (queue.duplicate, "Duplicated", "Duplicate (a new pending copy, due now)"),
)


def _stop(modeladmin, request, pulses: QuerySet, *, retry: bool) -> None:
    """Ask the workers to stop the selected running pulses, as `admin USERNAME`."""
    by = f"admin {request.user.get_username()}"
    _apply(
        modeladmin,
        request,
        pulses,
        lambda pulse_id: queue.request_stop(pulse_id, by=by, retry=retry),
        "Stopping" if not retry else "Stopping (then back to pending)",
    )


@admin.action(description="Stop (running pulses: the agent is stopped, the pulse ends cancelled)")
def stop_running(modeladmin, request, queryset) -> None:
    _stop(modeladmin, request, queryset, retry=False)


@admin.action(description="Stop and retry (running pulses: stopped, back to pending, no attempt spent)")
def stop_and_retry(modeladmin, request, queryset) -> None:
    _stop(modeladmin, request, queryset, retry=True)


class PulseAddForm(forms.ModelForm):
    """The add form checks what the API checks: a session id the agent accepts, a time in range.
    Tags and sticky notes are typed as lists (comma-separated, one per line), not as JSON."""

    tags = tags_field("Separated by commas, e.g. review, weekly")
    sticky_notes = sticky_notes_field()

    def clean_session_id(self) -> str:
        try:
            return check_session_id(self.cleaned_data.get("session_id"))
        except InvalidSessionId as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_scheduled_at(self):
        when = self.cleaned_data.get("scheduled_at")
        if when is not None and not time_in_range(when):
            raise forms.ValidationError(f"out of range: a time must fall within {TIME_RANGE}")
        return when

    def clean(self):
        data = super().clean()
        for name, check in AGENT_OPTION_CHECKS:  # the agent options, within the API's limits
            if name in data:
                try:
                    data[name] = check(data[name])
                except InvalidPulse as exc:
                    self.add_error(name, str(exc))
        return data


@admin.register(Pulse)
class PulseAdmin(admin.ModelAdmin):
    form = PulseAddForm
    list_display = (
        "id",
        "short_prompt",
        "coloured_status",
        "coloured_priority",
        "scheduled",
        "source",
        "tries",
        "finished",
        "short_answer",
    )
    list_display_links = ("id", "short_prompt")
    list_filter = ("status", "priority", SourceFilter, TagFilter, OverdueFilter)
    search_fields = ("prompt",)  # through the full-text index: see get_search_results
    date_hierarchy = "scheduled_at"  # drawn by index probes: templates/admin/pulses/pulse/change_list.html
    list_per_page = 50
    paginator = CappedPaginator
    show_full_result_count = False  # no second count of the whole table beside the filtered one
    show_facets = admin.ShowFacets.NEVER  # facet counts would read every row
    actions = (*bulk_actions(_apply, ACTIONS), stop_running, stop_and_retry)
    inlines = (PulseAttemptInline,)
    add_fields = (
        "prompt",
        "scheduled_at",
        "priority",
        "source",
        "session_id",
        "sticky_notes",
        "tags",
        "max_retries",
        "idempotency_key",
        "model",
        "timeout_seconds",
        "max_turns",
    )
    execution_fields = (
        "status",
        "created_at",
        "executed_at",
        "finished_at",
        "execution_duration_ms",
        "error_message",
        "answer",
        "live_tail",
        "attempt_count",
        "lease_owner",
        "lease_expires_at",
        "stop_requested_by",
        "parent",
    )

    @admin.display(description="prompt", ordering="prompt")
    def short_prompt(self, pulse: Pulse) -> str:
        return pulse.prompt if len(pulse.prompt) <= 80 else pulse.prompt[:79] + "…"

    @admin.display(description="answer")
    def short_answer(self, pulse: Pulse) -> str:
        """The first line of what the agent answered (read with the page: see get_queryset)."""
        return answers.first_line(getattr(pulse, "answer_text", None) or "", 80) or "-"

    @admin.display(description="answer")
    def answer(self, pulse: Pulse) -> str:
        return answers.answer(pulse.pk) or "-"

    @admin.display(description="live tail")
    def live_tail(self, pulse: Pulse):
        """What the agent did, a line each, updated while it runs (run_tail.js polls the API)."""
        return format_html(
            '<div class="reeve-tail" data-tail-url="{}">'
            '<ol class="reeve-tail-events" style="max-height:24em;overflow-y:auto;margin:0;padding-left:2em;'
            'font-family:monospace;white-space:pre-wrap"></ol><p class="reeve-tail-state help"></p></div>',
            reverse("api:pulse-tail", args=[pulse.pk]),
        )

    class Media:
        js = ("pulses/run_tail.js",)

    def get_queryset(self, request):
        return answers.with_answer(super().get_queryset(request))

    @admin.display(description="status", ordering="status")
    def coloured_status(self, pulse: Pulse):
        return _pill(pulse.status, STATUS_COLOURS.get(pulse.status, "#6b7280"))

    @admin.display(description="priority", ordering="priority_rank")
    def coloured_priority(self, pulse: Pulse):
        return _pill(pulse.priority, PRIORITY_COLOURS.get(pulse.priority, "#6b7280"))

    @admin.display(description="scheduled", ordering="scheduled_at")
    def scheduled(self, pulse: Pulse) -> str | None:
        return list_time(pulse.scheduled_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, pulse: Pulse) -> str | None:
        return list_time(pulse.finished_at)

    @admin.display(description="tries", ordering="attempt_count")
    def tries(self, pulse: Pulse) -> str:
        """Runs so far out of those allowed, as `pulse_queue` shows them."""
        return f"{pulse.attempt_count}/{pulse.max_retries + 1}"

    def get_changelist(self, request, **kwargs):
        return PulseChangeList

    # A stored pulse shows its lists as lists, as the add form takes them, not as JSON.
    listed_fields = {"tags": "tag_list", "sticky_notes": "note_list"}

    @admin.display(description="tags")
    def tag_list(self, pulse: Pulse) -> str:
        return ", ".join(pulse.tags) or "–"

    @admin.display(description="sticky notes")
    def note_list(self, pulse: Pulse):
        return format_html_join("", "<div>{}</div>", ((note,) for note in pulse.sticky_notes)) or "–"

    def _shown_fields(self) -> tuple[str, ...]:
        return tuple(self.listed_fields.get(name, name) for name in self.add_fields) + self.execution_fields

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self._shown_fields()

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self._shown_fields()

    def has_change_permission(self, request, obj=None):
        # Viewing and the actions stay available; saving a whole row over the worker's does not.
        return False if obj is not None else super().has_change_permission(request, obj)

    def get_changeform_initial_data(self, request):
        return {"source": "admin", "scheduled_at": timezone.now(), "priority": Priority.NORMAL}

    def save_model(self, request, obj: Pulse, form, change):
        """A pulse added here is scheduled through the queue like any other (it wakes the worker)."""
        if change:
            return
        data = form.cleaned_data
        created = queue.schedule(
            prompt=data["prompt"],
            scheduled_at=data["scheduled_at"],
            priority=data["priority"],
            source=data["source"] or "admin",
            session_id=data.get("session_id") or "",
            sticky_notes=data.get("sticky_notes") or (),
            tags=data.get("tags") or (),
            max_retries=data["max_retries"],
            idempotency_key=data.get("idempotency_key") or None,
            model=data.get("model") or "",
            timeout_seconds=data.get("timeout_seconds"),
            max_turns=data.get("max_turns"),
        ).pulse
        obj.pk = created.pk
        obj.refresh_from_db()

    def get_urls(self):
        stop = self.admin_site.admin_view(self.stop_view)
        return [path("<int:pulse_id>/stop/", stop, name="pulses_pulse_stop"), *super().get_urls()]

    def stop_view(self, request: HttpRequest, pulse_id: int) -> HttpResponseRedirect:
        """The Stop buttons of a running pulse's page (a POST; `retry` sends it back to pending)."""
        page = reverse("admin:pulses_pulse_change", args=[pulse_id])
        if request.method != "POST" or not self.has_view_permission(request):
            return HttpResponseRedirect(page)
        pulse = get_object_or_404(Pulse, pk=pulse_id)
        _stop(self, request, Pulse.objects.filter(pk=pulse.pk), retry=bool(request.POST.get("retry")))
        return HttpResponseRedirect(page)

    def get_ordering(self, request):
        # Within a period of the date navigation, newest scheduled first: the scheduled_at index
        # then gives the page in order, instead of sorting every pulse of the period by id.
        if any(key.startswith(f"{self.date_hierarchy}__") for key in request.GET):
            return (f"-{self.date_hierarchy}", "-id")
        return super().get_ordering(request)

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        paginator = super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
        if request.GET.get(SEARCH_VAR, "").strip():
            paginator.cap = search.MAX_MATCHES - 1  # a search keeps its newest matches, no more
        return paginator

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return search.matching(queryset, search_term), False

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        history.rebuild()  # the daily counts drop what was deleted

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        history.rebuild()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser


# API tokens and routines have their own admin modules; importing them registers their admins here.
from pulses.api import admin as token_admin  # noqa: E402, F401
from pulses.routines import admin as routine_admin  # noqa: E402, F401
from pulses.web import pause_admin  # noqa: E402, F401
