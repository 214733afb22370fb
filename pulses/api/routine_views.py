"""`/api/routines`: list, create, detail, update, delete, and pause / resume / run now.

A routine is addressed by its name or its id. Each view checks the body's types with a strict
serializer, makes one call into `pulses.routines.changes` (which checks what the values mean and
names the field it refuses; nothing is stored then), and responds with the routine.
"""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from pulses.api.fields import (
    ModelNameField,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictSerializer,
    max_turns_field,
    note_list,
    page_limit,
    page_offset,
    tag_list,
    timeout_seconds_field,
)
from pulses.api.permissions import require_wake_checks
from pulses.api.schema import ERROR, endpoint
from pulses.api.serializers import PulseSerializer
from pulses.api.views import ApiView
from pulses.limits import MAX_CHECK_CHARS, MAX_KEY_CHARS
from pulses.models import Priority, Pulse
from pulses.routines import changes
from pulses.routines.lookup import PREVIEW_FIRES, find
from pulses.routines.models import Routine, RoutineSource, SessionPolicy

NOT_FOUND = {404: OpenApiResponse(ERROR, description="no routine with that name or id")}
MAX_LISTED = 500


MAX_PAUSE_AFTER = 1000


class ClockField(StrictCharField):
    """A time of day, HH:MM; empty or null for none."""

    def __init__(self, **kwargs):
        super().__init__(max_length=8, required=False, allow_blank=True, allow_null=True, **kwargs)

    def run_validation(self, data=serializers.empty):
        text = super().run_validation(data)  # a string within max_length, or None
        if not isinstance(text, str) or not text.strip():
            return None
        try:
            return changes.parse_time(text, field=self.field_name)
        except changes.RoutineInvalid as exc:
            raise serializers.ValidationError(exc.message) from None


class RoutineInputSerializer(StrictSerializer):
    """What a routine is made of. Types are checked here; meanings (a cron expression that can fire,
    a zone that exists, a window that is not empty) in `changes.validate`, which names the field."""

    name = StrictCharField(max_length=changes.NAME_CHARS, help_text="unique; how you refer to it")
    schedule = StrictCharField(
        max_length=200,
        help_text="a 5-field cron expression ('0 8 * * 1-5'), @hourly/@daily/@weekly, or 'every 30 minutes'",
    )
    prompt = StrictCharField(max_length=changes.PROMPT_CHARS, help_text="what the agent should do")
    timezone = StrictCharField(
        max_length=64, required=False, allow_blank=True, help_text="an IANA zone; empty follows TIME_ZONE"
    )
    priority = StrictChoiceField(choices=Priority.choices, required=False, help_text="run order")
    tags = tag_list("labels its pulses carry")
    sticky_notes = note_list("reminders appended to the prompt")
    max_retries = StrictIntegerField(min_value=0, max_value=changes.MAX_RETRIES, required=False)
    deliver = StrictChoiceField(
        choices=["", "telegram"],
        required=False,
        help_text="telegram: each run's answer goes to the configured chat",
    )
    session_policy = StrictChoiceField(
        choices=SessionPolicy.choices,
        required=False,
        help_text="new: a fresh session each run; continue: the previous run's; fixed: session_id",
    )
    session_id = StrictCharField(max_length=MAX_KEY_CHARS, required=False, allow_blank=True)
    active_from = ClockField(
        help_text="start of the active window (HH:MM in its zone); fires outside it are skipped"
    )
    active_until = ClockField(help_text="end of the active window (HH:MM); it may wrap midnight")
    check_command = StrictCharField(
        max_length=MAX_CHECK_CHARS,
        required=False,
        allow_blank=True,
        help_text="a wake check run in the Desk first: exit 0 wakes the agent, 1 skips the run",
    )
    pause_after_failures = StrictIntegerField(
        min_value=0, max_value=MAX_PAUSE_AFTER, required=False, help_text="0: never pause"
    )
    model = ModelNameField(required=False)
    timeout_seconds = timeout_seconds_field(required=False)
    max_turns = max_turns_field(required=False)


class RoutineUpdateSerializer(RoutineInputSerializer):
    """Any subset of the fields."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


def _when(value, routine: Routine) -> str | None:
    return value.astimezone(routine.zone).isoformat() if value else None


class RoutineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prompt = serializers.CharField()
    schedule = serializers.CharField()
    schedule_text = serializers.CharField(help_text="the schedule in words")
    timezone = serializers.CharField(help_text="the zone its fire times are computed in")
    priority = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    sticky_notes = serializers.ListField(child=serializers.CharField())
    max_retries = serializers.IntegerField()
    deliver = serializers.CharField(help_text="telegram, or empty")
    session_policy = serializers.CharField()
    session_id = serializers.CharField()
    enabled = serializers.BooleanField()
    paused_reason = serializers.CharField()
    active_from = serializers.CharField(allow_null=True)
    active_until = serializers.CharField(allow_null=True)
    check_command = serializers.CharField()
    pause_after_failures = serializers.IntegerField()
    model = serializers.CharField(help_text="its pulses' model; empty: AGENT_MODEL")
    timeout_seconds = serializers.IntegerField(
        allow_null=True, help_text="its runs' timeout; null: PULSE_TIMEOUT_SECONDS"
    )
    max_turns = serializers.IntegerField(allow_null=True, help_text="its runs' turn limit; null: none")
    source = serializers.ChoiceField(choices=RoutineSource.choices)
    next_fire_at = serializers.DateTimeField(allow_null=True, help_text="in the routine's zone")
    last_fire_at = serializers.DateTimeField(allow_null=True)
    last_pulse = serializers.IntegerField(allow_null=True)
    last_result = serializers.CharField()
    failure_streak = serializers.IntegerField()
    fire_count = serializers.IntegerField()
    missed_count = serializers.IntegerField()
    outside_window_count = serializers.IntegerField()
    check_skip_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, routine: Routine) -> dict:
        return {
            "id": routine.pk,
            "name": routine.name,
            "prompt": routine.prompt,
            "schedule": routine.schedule,
            "schedule_text": routine.parsed_schedule.describe(),
            "timezone": routine.zone_name,
            "priority": routine.priority,
            "tags": list(routine.tags or ()),
            "sticky_notes": list(routine.sticky_notes or ()),
            "max_retries": routine.max_retries,
            "deliver": routine.deliver,
            "session_policy": routine.session_policy,
            "session_id": routine.session_id,
            "enabled": routine.enabled,
            "paused_reason": routine.paused_reason,
            "active_from": routine.active_from.strftime("%H:%M") if routine.active_from else None,
            "active_until": routine.active_until.strftime("%H:%M") if routine.active_until else None,
            "check_command": routine.check_command,
            "pause_after_failures": routine.pause_after_failures,
            "model": routine.model,
            "timeout_seconds": routine.timeout_seconds,
            "max_turns": routine.max_turns,
            "source": routine.source,
            "next_fire_at": _when(routine.next_fire_at, routine),
            "last_fire_at": _when(routine.last_fire_at, routine),
            "last_pulse": routine.last_pulse_id,
            "last_result": routine.last_result,
            "failure_streak": routine.failure_streak,
            "fire_count": routine.fire_count,
            "missed_count": routine.missed_count,
            "outside_window_count": routine.outside_window_count,
            "check_skip_count": routine.check_skip_count,
            "created_at": _when(routine.created_at, routine),
            "updated_at": _when(routine.updated_at, routine),
        }


class RoutineDetailSerializer(RoutineSerializer):
    next_fires = serializers.ListField(
        child=serializers.DateTimeField(), help_text="its next five fire times, in its zone"
    )

    def to_representation(self, routine: Routine) -> dict:
        fires = routine.next_fires(PREVIEW_FIRES, after=timezone.now()) if routine.enabled else []
        return {**super().to_representation(routine), "next_fires": [fire.isoformat() for fire in fires]}


class RoutineListQuerySerializer(serializers.Serializer):
    limit = page_limit(most=MAX_LISTED, default=100)
    offset = page_offset()


class RoutinePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = RoutineSerializer(many=True)


class RoutineListView(ApiView):
    @endpoint("routines_list", RoutinePageSerializer, query=RoutineListQuerySerializer)
    def get(self, request: Request) -> Response:
        """List routines by name, with their next fire and last result."""
        query = self.query(RoutineListQuerySerializer)
        routines = Routine.objects.order_by("name")
        page = routines[query["offset"] : query["offset"] + query["limit"]]
        return Response({"count": routines.count(), "results": RoutineSerializer(page, many=True).data})

    @endpoint("routine_create", RoutineDetailSerializer, body=RoutineInputSerializer, code=201)
    def post(self, request: Request) -> Response:
        """Create a routine (the owner's: not held to the agent's guard rails)."""
        data = self.body(RoutineInputSerializer)
        if data.get("check_command", "").strip():
            require_wake_checks(request, what="a routine's check_command")
        routine = changes.create(source=RoutineSource.OWNER, **data)
        return Response(RoutineDetailSerializer(routine).data, status=status.HTTP_201_CREATED)


class RoutineDetailView(ApiView):
    @endpoint("routine_detail", RoutineDetailSerializer, refusals=NOT_FOUND)
    def get(self, request: Request, key: str) -> Response:
        """One routine with its next five fire times."""
        return Response(RoutineDetailSerializer(find(key)).data)

    @endpoint("routine_update", RoutineDetailSerializer, body=RoutineUpdateSerializer, refusals=NOT_FOUND)
    def patch(self, request: Request, key: str) -> Response:
        """Change some of a routine's fields; its next fire is recomputed."""
        routine = find(key)
        data = self.body(RoutineUpdateSerializer)
        check = data.get("check_command", routine.check_command).strip()
        if check and check != routine.check_command:  # removing a wake check needs no scope
            require_wake_checks(request, what="a routine's check_command")
        return Response(RoutineDetailSerializer(changes.update(routine, data)).data)

    @endpoint("routine_delete", None, code=204, refusals=NOT_FOUND)
    def delete(self, request: Request, key: str) -> Response:
        """Delete a routine (its past pulses stay)."""
        changes.remove(find(key))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoutineActionView(ApiView):
    # Pause, resume, run now: one call into `changes` with the routine, and what it returns.
    # (No docstring: the schema describes each endpoint with its view's, here ApiView's.)

    change: Callable[[Routine], Routine | Pulse]
    answer: type[Serializer] = RoutineSerializer
    code = status.HTTP_200_OK

    def post(self, request: Request, key: str) -> Response:
        return Response(self.answer(self.change(self.routine(request, key))).data, status=self.code)

    def routine(self, request: Request, key: str) -> Routine:
        return find(key)


def _action(operation_id: str, summary: str):
    """The schema of a RoutineActionView, from its `answer` and `code`."""

    def describe(view: type[RoutineActionView]) -> type[RoutineActionView]:
        schema = endpoint(operation_id, view.answer, summary=summary, code=view.code, refusals=NOT_FOUND)
        return extend_schema_view(post=schema)(view)

    return describe


@_action("routine_pause", "Pause a routine: it does not fire until resumed")
class RoutinePauseView(RoutineActionView):
    change = staticmethod(changes.pause)


@_action("routine_resume", "Resume a routine from its next fire after now (nothing missed is caught up)")
class RoutineResumeView(RoutineActionView):
    change = staticmethod(changes.resume)


@_action("routine_run", "Run a routine now: its pulse is created at once (its schedule is unchanged)")
class RoutineRunView(RoutineActionView):
    change = staticmethod(changes.run_now)
    answer = PulseSerializer
    code = status.HTTP_201_CREATED

    def routine(self, request: Request, key: str) -> Routine:
        routine = find(key)
        if routine.check_command:  # run now runs its wake check at once, as this token's request
            require_wake_checks(request, what=f"running routine {routine.name!r}, which has a check_command,")
        return routine
