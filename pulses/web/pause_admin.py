"""The admin's pause switch: the one `QueuePause` row as a form. Saving it pauses or resumes the queue
through `pulses.queue` (who did it: `admin USERNAME`); the list goes straight to the row."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from pulses import queue
from pulses.queue_pause import PAUSE_ID, QueuePause
from pulses.timeparse import TimeParseError, parse_when


class QueuePauseForm(forms.ModelForm):
    until_text = forms.CharField(
        label="until",
        required=False,
        help_text="when it resumes by itself: 'in 2 hours', '07:00', 'tomorrow 9am', ISO; empty: by hand",
    )

    class Meta:
        model = QueuePause
        fields = ("paused", "reason")

    def clean_until_text(self):
        text = self.cleaned_data["until_text"].strip()
        if not text:
            return None
        try:
            return parse_when(text)
        except TimeParseError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    form = QueuePauseForm
    fields = ("paused", "until_text", "reason", "since", "until", "paused_by", "ended_at", "ended_by")
    readonly_fields = ("since", "until", "paused_by", "ended_at", "ended_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        return HttpResponseRedirect(reverse("admin:pulses_queuepause_change", args=[PAUSE_ID]))

    def get_object(self, request: HttpRequest, object_id: str, from_field=None):
        # The row is made by the first pause; until then the switch shows it off.
        return QueuePause.objects.filter(pk=PAUSE_ID).first() or QueuePause(pk=PAUSE_ID)

    def save_model(self, request: HttpRequest, obj: QueuePause, form, change: bool) -> None:
        by = f"admin {request.user.get_username()}"
        if form.cleaned_data["paused"]:
            try:
                state = queue.pause(by=by, until=form.cleaned_data["until_text"], reason=obj.reason)
            except queue.InvalidPause as exc:
                self.message_user(request, f"Not paused: {exc}", messages.ERROR)
                return
            self.message_user(request, f"Paused: {state.summary()}.")
        elif queue.resume(by=by) is not None:
            self.message_user(request, "Resumed: pulses are claimed again.")

    def response_change(self, request: HttpRequest, obj: QueuePause):
        return HttpResponseRedirect(reverse("admin:pulses_queuepause_change", args=[PAUSE_ID]))

    def log_change(self, request, obj, message):
        # The switch's own log line (queue_paused / queue_resumed) says who; no LogEntry for an
        # unsaved row.
        return None
