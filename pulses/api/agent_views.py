"""The agent's endpoints: what Reeve's MCP tools do, for agent-scoped tokens (and full ones).

The MCP server (pulses/tools/mcp_server.py) calls these with the run token the worker made for the run, or
with the Desk's named agent token in an interactive session. A run token names the running pulse,
which becomes the parent of what the agent schedules, and whose session `resume_current_session`
continues. Each view validates its body strictly, makes one call into `pulses.tools.agent_tools`, responds.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from pulses import limits
from pulses.api.fields import (
    ModelNameField,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    max_turns_field,
    note_list,
    page_limit,
    tag_list,
    timeout_seconds_field,
)
from pulses.api.schema import BAD_INPUT, CONFLICT, ERROR, NOT_FOUND, endpoint
from pulses.api.views import MAX_ID, TokenView
from pulses.models import Priority
from pulses.tools import agent_tools, routine_tools

STATUS_OF = {
    agent_tools.UnknownPulse: status.HTTP_404_NOT_FOUND,
    agent_tools.PulseNotChangeable: status.HTTP_409_CONFLICT,
    agent_tools.NotificationRateLimited: status.HTTP_429_TOO_MANY_REQUESTS,
    agent_tools.PulseNotYours: status.HTTP_403_FORBIDDEN,
    routine_tools.UnknownRoutineName: status.HTTP_404_NOT_FOUND,
    routine_tools.RoutineNotYours: status.HTTP_403_FORBIDDEN,
}
AGENT_SESSION_POLICIES = ("new", "continue")  # a fixed session id is the owner's to give
NOT_YOURS = {403: OpenApiResponse(ERROR, description="the user's pulse: the agent changes only its own")}
# A free-form object: a bare DictField is no response drf-spectacular can describe (W001 in `check`).
DESCRIBED = OpenApiResponse(
    OpenApiTypes.OBJECT, description="the pulse as the agent sees it (times in TIME_ZONE)"
)


class AgentView(TokenView):
    """Open to agent-scoped tokens as well as full ones; refusals are 4xx with the tool's message."""

    permission_classes = [IsAuthenticated]

    def call(self, fn, /, **kwargs) -> Response:
        try:
            return Response(fn(**kwargs))
        except agent_tools.AgentToolError as exc:
            return self.refuse(exc)

    def handle_exception(self, exc):
        if isinstance(exc, agent_tools.AgentToolError):
            return self.refuse(exc)
        return super().handle_exception(exc)

    @staticmethod
    def refuse(exc: agent_tools.AgentToolError) -> Response:
        code = next((c for kind, c in STATUS_OF.items() if isinstance(exc, kind)), 400)
        response = Response({"detail": str(exc)}, status=code)
        if isinstance(exc, agent_tools.NotificationRateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response


class AgentScheduleSerializer(StrictSerializer):
    prompt = StrictCharField(max_length=limits.MAX_PROMPT_CHARS)
    when = StrictCharField(max_length=200, required=False, default="now")
    priority = StrictChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    sticky_notes = note_list("reminders", allow_null=True, default=None)
    tags = tag_list("labels", allow_null=True, default=None)
    resume_current_session = serializers.BooleanField(
        required=False, default=False, help_text="continue the running pulse's session (run tokens only)"
    )
    model = ModelNameField(required=False, default="")
    timeout_seconds = timeout_seconds_field(required=False, default=None)
    max_turns = max_turns_field(required=False, default=None)


class AgentListQuerySerializer(serializers.Serializer):
    limit = page_limit(most=agent_tools.MAX_LISTED, default=20)


class AgentRescheduleSerializer(StrictSerializer):
    when = StrictCharField(max_length=200)


class NotifySerializer(StrictSerializer):
    message = StrictCharField(max_length=agent_tools.MAX_NOTIFICATION_CHARS)
    priority = StrictChoiceField(choices=agent_tools.NOTIFICATION_PRIORITIES, default="normal")


class AgentRoutineSerializer(StrictSerializer):
    name = StrictCharField(max_length=100)
    schedule = StrictCharField(max_length=200)
    prompt = StrictCharField(max_length=limits.MAX_PROMPT_CHARS)
    timezone = StrictCharField(max_length=64, required=False, allow_blank=True)
    priority = StrictChoiceField(choices=Priority.choices, required=False)
    tags = tag_list("labels its pulses carry", allow_null=True, default=None)
    sticky_notes = note_list("reminders", allow_null=True, default=None)
    active_from = StrictCharField(max_length=8, required=False, allow_null=True, help_text="HH:MM")
    active_until = StrictCharField(max_length=8, required=False, allow_null=True, help_text="HH:MM")
    session_policy = StrictChoiceField(choices=AGENT_SESSION_POLICIES, required=False)
    model = ModelNameField(required=False)
    timeout_seconds = timeout_seconds_field(required=False)
    max_turns = max_turns_field(required=False)

    def validate(self, attrs):
        return {key: value for key, value in attrs.items() if value is not None}


class AgentListSerializer(serializers.Serializer):
    now = serializers.CharField()
    time_zone = serializers.CharField()
    pending = serializers.IntegerField()
    pulses = serializers.ListField(child=serializers.DictField())


class NotifiedSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    id = serializers.IntegerField(help_text="the notification's id; the Telegram listener sends it")
    messages = serializers.IntegerField(help_text="how many Telegram messages it will be, per chat")
    priority = serializers.CharField()
    note = serializers.CharField(
        required=False, help_text="present when queued notifications wait: no listener seems to send them"
    )


class AgentPulsesView(AgentView):
    @endpoint("agent_pulses_upcoming", AgentListSerializer, query=AgentListQuerySerializer)
    def get(self, request: Request) -> Response:
        """The agent's tool list_upcoming_pulses: its pending pulses (and its routines'), soonest first."""
        return self.call(
            agent_tools.list_upcoming_pulses, limit=self.query(AgentListQuerySerializer)["limit"]
        )

    @endpoint("agent_pulse_schedule", DESCRIBED, body=AgentScheduleSerializer)
    def post(self, request: Request) -> Response:
        """The agent's tool schedule_pulse: source 'agent', parent = the running pulse."""
        data = self.body(AgentScheduleSerializer)
        return self.call(agent_tools.schedule_pulse, run_pulse_id=request.user.run_pulse_id, **data)


def _pulse_id(pk: int) -> int:
    if pk > MAX_ID:  # no pulse can have it (and the database driver would overflow)
        raise agent_tools.unknown_pulse(pk)
    return pk


class AgentCancelView(AgentView):
    @endpoint("agent_pulse_cancel", DESCRIBED, refusals=NOT_FOUND | CONFLICT | BAD_INPUT | NOT_YOURS)
    def post(self, request: Request, pk: int) -> Response:
        """The agent's tool cancel_pulse (pulses the agent or its routines made)."""
        return self.call(agent_tools.cancel_pulse, pulse_id=_pulse_id(pk))


class AgentRescheduleView(AgentView):
    @endpoint(
        "agent_pulse_reschedule",
        DESCRIBED,
        body=AgentRescheduleSerializer,
        refusals=NOT_FOUND | CONFLICT | NOT_YOURS,
    )
    def post(self, request: Request, pk: int) -> Response:
        """The agent's tool reschedule_pulse (pulses the agent or its routines made)."""
        when = self.body(AgentRescheduleSerializer)["when"]
        return self.call(agent_tools.reschedule_pulse, pulse_id=_pulse_id(pk), when=when)


class NotifyView(AgentView):
    @endpoint(
        "notify",
        NotifiedSerializer,
        code=202,
        body=NotifySerializer,
        refusals={
            429: OpenApiResponse(
                ERROR,
                description="this token's allowance (NOTIFY_BURST, NOTIFY_PER_HOUR) is used; see Retry-After",
            )
        },
    )
    def post(self, request: Request) -> Response:
        """Queue a Telegram message for the user (the agent's tool send_notification); the listener
        sends it. Answers at once, 202 with the notification's id."""
        data = self.body(NotifySerializer)
        response = self.call(
            agent_tools.send_notification,
            run_pulse_id=request.user.run_pulse_id,
            client_name=request.user.name,
            **data,
        )
        if response.status_code == status.HTTP_200_OK:
            response.status_code = status.HTTP_202_ACCEPTED
        return response


class AgentRoutineDescribedSerializer(serializers.Serializer):
    name = serializers.CharField()
    schedule = serializers.CharField()
    schedule_text = serializers.CharField()
    timezone = serializers.CharField()
    prompt = serializers.CharField()
    priority = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    paused_reason = serializers.CharField()
    active_window = serializers.CharField(allow_null=True)
    session_policy = serializers.CharField()
    model = serializers.CharField()
    timeout_seconds = serializers.IntegerField(allow_null=True)
    max_turns = serializers.IntegerField(allow_null=True)
    created_by = serializers.CharField()
    next_fire_at = serializers.CharField(allow_null=True)
    last_fire_at = serializers.CharField(allow_null=True)
    last_result = serializers.CharField(allow_null=True)


class AgentRoutineDeletedSerializer(AgentRoutineDescribedSerializer):
    deleted = serializers.BooleanField()


class AgentRoutineListSerializer(serializers.Serializer):
    now = serializers.CharField()
    time_zone = serializers.CharField()
    count = serializers.IntegerField()
    routines = AgentRoutineDescribedSerializer(many=True)


ROUTINE_NOT_FOUND = {404: OpenApiResponse(ERROR, description="no routine with that name")}


class AgentRoutinesView(AgentView):
    @endpoint("agent_routines_list", AgentRoutineListSerializer)
    def get(self, request: Request) -> Response:
        """The agent's tool list_routines: every routine by name, with its next fire."""
        return self.call(routine_tools.list_routines)

    @endpoint("agent_routine_create", AgentRoutineDescribedSerializer, body=AgentRoutineSerializer)
    def post(self, request: Request) -> Response:
        """The agent's tool create_routine: source 'agent', within the guard rails."""
        return self.call(routine_tools.create_routine, **self.body(AgentRoutineSerializer))


class AgentRoutineView(AgentView):
    @endpoint(
        "agent_routine_delete",
        AgentRoutineDeletedSerializer,
        refusals={
            **ROUTINE_NOT_FOUND,
            403: OpenApiResponse(ERROR, description="the owner's routine, or a token that may not"),
        },
    )
    def delete(self, request: Request, name: str) -> Response:
        """The agent's tool delete_routine (routines the agent created)."""
        return self.call(routine_tools.delete_routine, name=name)


class AgentRoutinePauseView(AgentView):
    @endpoint("agent_routine_pause", AgentRoutineDescribedSerializer, refusals=ROUTINE_NOT_FOUND)
    def post(self, request: Request, name: str) -> Response:
        """The agent's tool pause_routine."""
        return self.call(routine_tools.pause_routine, name=name)
