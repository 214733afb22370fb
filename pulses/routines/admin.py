"""Routines in the admin: the list (schedule in words, zone, next fire, last result, enabled), the
pause / resume / run now actions, and a form that checks the schedule and previews the next five
fire times in the routine's zone as you type (routine_preview.js asks `preview/`, staff only).

Saving goes through `pulses.routines.changes`, as every other surface does, so the admin stores
nothing the API or the command would refuse, and its next fire is computed the same way.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from pulses.routines import changes
from pulses.routines import schedule as schedules
from pulses.routines.lookup import PREVIEW_FIRES
from pulses.routines.models import Routine, RoutineSource, RunResult
from pulses.web.admin_actions import bulk_actions, report_count, run_each
from pulses.web.forms import sticky_notes_field, tags_field
from pulses.web.palette import STATUS_COLOURS

RESULT_COLOURS = {
    RunResult.COMPLETED: STATUS_COLOURS.get("completed", "#16a34a"),
    RunResult.FAILED: STATUS_COLOURS.get("failed", "#dc2626"),
    RunResult.SKIPPED: "#6b7280",
}
FIRE_FORMAT = "%a %Y-%m-%d %H:%M %Z"


def fire_times(schedule: str, zone_name: str) -> dict:
    """The preview: the schedule in words and its next five fire times, or the error naming the field."""
    zone_name = zone_name.strip() or settings.TIME_ZONE
    try:
        fires = changes.preview(schedule, zone_name, count=PREVIEW_FIRES)
    except changes.RoutineInvalid as exc:
        return {"error": {"field": exc.field, "message": exc.message}}
    words = schedules.parse(schedule).describe()
    return {
        "text": words,
        "zone": str(fires[0].tzinfo),
        "fires": [fire.strftime(FIRE_FORMAT) for fire in fires],
    }


class RoutineForm(forms.ModelForm):
    """Checked by `changes.validate`, which names the field it refuses; nothing is stored until then.
    Tags and sticky notes are typed as the pulse form's are (comma-separated, one per line)."""

    tags = tags_field("Separated by commas; each of its pulses carries them")
    sticky_notes = sticky_notes_field()

    class Meta:
        model = Routine
        fields = changes.EDITABLE
        widgets = {
            "prompt": forms.Textarea(attrs={"rows": 4}),
            "check_command": forms.TextInput(attrs={"size": 80}),
            "schedule": forms.TextInput(attrs={"size": 40, "placeholder": "0 8 * * 1-5"}),
            "timezone": forms.TextInput(attrs={"placeholder": "Europe/Berlin"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["schedule"].widget.attrs["data-preview-url"] = reverse("admin:pulses_routine_preview")

    def clean(self):
        data = super().clean()
        self.routine_values = {name: data[name] for name in changes.EDITABLE if name in data}
        for name in ("tags", "sticky_notes"):
            self.routine_values[name] = self.routine_values.get(name) or []
        candidate = Routine(kind=self.instance.kind, **self.routine_values)
        try:
            changes.validate(candidate)
        except changes.RoutineInvalid as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


def _report(modeladmin, request, routines, operation, verb: str) -> None:
    done, refusals = run_each(operation, routines, (changes.RoutineInvalid,))
    for routine, exc in refusals:
        modeladmin.message_user(request, f"{routine.name}: {exc}", messages.WARNING)
    report_count(modeladmin, request, verb, done, "routine")


ACTIONS = (
    (changes.pause, "Paused", "Pause (stop firing until resumed)"),
    (changes.resume, "Resumed", "Resume (fire again from the next fire time)"),
    (changes.run_now, "Ran", "Run now (a pulse at once; the schedule is unchanged)"),
)


@admin.register(Routine)
class RoutineAdmin(admin.ModelAdmin):
    form = RoutineForm
    list_display = ("name", "schedule_in_words", "zone", "next_fire", "last_run", "enabled")
    list_filter = ("enabled", "source", "last_result")
    search_fields = ("name", "prompt")
    actions = bulk_actions(_report, ACTIONS)
    readonly_fields = (
        "next_fires",
        "enabled",
        "source",
        "paused_reason",
        "last_fire_at",
        "last_pulse",
        "counts",
    )
    fieldsets = (
        (None, {"fields": ("name", "prompt", ("schedule", "timezone"), "next_fires", "enabled")}),
        ("Pulses it makes", {"fields": ("priority", "tags", "sticky_notes", "max_retries", "deliver")}),
        ("Session", {"fields": ("session_policy", "session_id")}),
        ("The agent", {"fields": ("model", "timeout_seconds", "max_turns")}),
        (
            "When it may run",
            {"fields": (("active_from", "active_until"), "catch_up_window", "check_command")},
        ),
        ("Failures", {"fields": ("pause_after_failures", "paused_reason")}),
        ("History", {"fields": ("source", "last_fire_at", "last_pulse", "counts")}),
    )

    class Media:
        js = ("pulses/routine_preview.js",)

    @admin.display(description="schedule", ordering="schedule")
    def schedule_in_words(self, routine: Routine):
        return format_html(
            '{}<br><code class="reeve-cron" style="color:#6b7280">{}</code>',
            routine.parsed_schedule.describe(),
            routine.schedule,
        )

    @admin.display(description="zone", ordering="timezone")
    def zone(self, routine: Routine) -> str:
        return routine.zone_name

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire(self, routine: Routine) -> str:
        if not routine.enabled:
            return "paused"
        if routine.next_fire_at is None:
            return "–"
        return routine.next_fire_at.astimezone(routine.zone).strftime(FIRE_FORMAT)

    @admin.display(description="last result", ordering="last_result")
    def last_run(self, routine: Routine):
        if not routine.last_result:
            return "never run"
        when = (
            routine.last_fire_at.astimezone(routine.zone).strftime("%m-%d %H:%M")
            if routine.last_fire_at
            else ""
        )
        return format_html(
            '<span class="reeve-pill" style="background:{};color:#fff;border-radius:8px;padding:1px 8px">'
            "{}</span> {}",
            RESULT_COLOURS.get(routine.last_result, "#6b7280"),
            routine.last_result,
            when,
        )

    @admin.display(description="next five fires")
    def next_fires(self, routine: Routine):
        preview = fire_times(routine.schedule, routine.zone_name) if routine.pk else {}
        fires = preview.get("fires", [])
        items = format_html_join("", "<li>{}</li>", ((fire,) for fire in fires))
        return format_html(
            '<div id="routine-preview" data-zone="{}"><p class="reeve-schedule-text">{}</p><ol>{}</ol></div>',
            routine.zone_name if routine.pk else "",
            preview.get("text", "type a schedule to see its next fire times"),
            items,
        )

    @admin.display(description="counts")
    def counts(self, routine: Routine) -> str:
        r = routine
        return (
            f"{r.fire_count} fired, {r.missed_count} missed, {r.outside_window_count} outside the window, "
            f"{r.check_skip_count} skipped by the check; {r.failure_streak} failed in a row"
        )

    def get_urls(self):
        preview = path(
            "preview/", self.admin_site.admin_view(self.preview_view), name="pulses_routine_preview"
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The form's live preview: GET schedule and timezone."""
        return JsonResponse(fire_times(request.GET.get("schedule", ""), request.GET.get("timezone", "")))

    def save_model(self, request, obj: Routine, form, change):
        """Through `changes`, from the stored row (the form has already written onto `obj`, so a
        changed schedule would not be seen as a change)."""
        values = form.routine_values
        if change:
            saved = changes.update(Routine.objects.get(pk=obj.pk), values)
        else:
            saved = changes.create(source=RoutineSource.OWNER, **values)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj: Routine) -> None:
        changes.remove(obj)

    def delete_queryset(self, request, queryset) -> None:
        for routine in queryset:
            changes.remove(routine)
