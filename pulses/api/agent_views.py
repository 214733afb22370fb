"""The agent's endpoints: what Reeve's MCP tools do, for agent-scoped tokens (and full ones).

The MCP server (pulses/tools/mcp_server.py) calls these with the run token the worker made for the run, or
with the Desk's named agent token in an interactive session. A run token names the running pulse,
which becomes the parent of what the agent schedules, and whose session `resume_current_session`
continues. Each view validates its body strictly, makes one call into `pulses.tools.agent_tools`, responds.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from pulses import limits
from pulses.api.fields import StrictCharField, StrictChoiceField, StrictIntegerField, StrictSerializer
from pulses.api.schema import BAD_INPUT, CONFLICT, ERROR, NOT_FOUND, endpoint
from pulses.api.views import MAX_ID, TokenView
from pulses.models import Priority
from pulses.tools import agent_tools

STATUS_OF = {
    agent_tools.UnknownPulse: status.HTTP_404_NOT_FOUND,
    agent_tools.PulseNotChangeable: status.HTTP_409_CONFLICT,
    agent_tools.NotificationNotSent: status.HTTP_502_BAD_GATEWAY,
    agent_tools.UnknownRoutineName: status.HTTP_404_NOT_FOUND,
    agent_tools.RoutineNotYours: status.HTTP_403_FORBIDDEN,
}
AGENT_SESSION_POLICIES = ("new", "continue")  # a fixed session id is the owner's to give
DESCRIBED = serializers.DictField(help_text="the pulse as the agent sees it (times in TIME_ZONE)")


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
        return Response({"detail": str(exc)}, status=code)


def _text_list(max_items: int, max_chars: int, help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=max_chars),
        max_length=max_items,
        required=False,
        allow_null=True,
        default=None,
        help_text=help_text,
    )


class AgentScheduleSerializer(StrictSerializer):
    prompt = StrictCharField(max_length=limits.MAX_PROMPT_CHARS)
    when = StrictCharField(max_length=200, required=False, default="now")
    priority = StrictChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    sticky_notes = _text_list(limits.MAX_NOTES, limits.MAX_NOTE_CHARS, "reminders")
    tags = _text_list(limits.MAX_TAGS, limits.MAX_TAG_CHARS, "labels")
    resume_current_session = serializers.BooleanField(
        required=False, default=False, help_text="continue the running pulse's session (run tokens only)"
    )


class AgentListQuerySerializer(serializers.Serializer):
    limit = StrictIntegerField(min_value=1, max_value=agent_tools.MAX_LISTED, default=20)


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
    tags = _text_list(limits.MAX_TAGS, limits.MAX_TAG_CHARS, "labels its pulses carry")
    sticky_notes = _text_list(limits.MAX_NOTES, limits.MAX_NOTE_CHARS, "reminders")
    active_from = StrictCharField(max_length=8, required=False, allow_null=True, help_text="HH:MM")
    active_until = StrictCharField(max_length=8, required=False, allow_null=True, help_text="HH:MM")
    session_policy = StrictChoiceField(choices=AGENT_SESSION_POLICIES, required=False)

    def validate(self, attrs):
        return {key: value for key, value in attrs.items() if value is not None}


class AgentListSerializer(serializers.Serializer):
    now = serializers.CharField()
    time_zone = serializers.CharField()
    pending = serializers.IntegerField()
    pulses = serializers.ListField(child=serializers.DictField())


class NotifiedSerializer(serializers.Serializer):
    sent = serializers.BooleanField()
    messages = serializers.IntegerField()
    priority = serializers.CharField()


class AgentPulsesView(AgentView):
    @endpoint(
        "agent_pulses_upcoming",
        "The agent's tool list_upcoming_pulses: pending pulses, soonest first",
        AgentListSerializer,
        query=AgentListQuerySerializer,
    )
    def get(self, request: Request) -> Response:
        return self.call(
            agent_tools.list_upcoming_pulses, limit=self.query(AgentListQuerySerializer)["limit"]
        )

    @endpoint(
        "agent_pulse_schedule",
        "The agent's tool schedule_pulse: source 'agent', parent = the running pulse",
        DESCRIBED,
        body=AgentScheduleSerializer,
    )
    def post(self, request: Request) -> Response:
        data = self.body(AgentScheduleSerializer)
        return self.call(agent_tools.schedule_pulse, run_pulse_id=request.user.run_pulse_id, **data)


def _pulse_id(pk: int) -> int:
    if pk > MAX_ID:  # no pulse can have it (and the database driver would overflow)
        raise agent_tools.unknown_pulse(pk)
    return pk


class AgentCancelView(AgentView):
    @endpoint(
        "agent_pulse_cancel",
        "The agent's tool cancel_pulse",
        DESCRIBED,
        refusals=NOT_FOUND | CONFLICT | BAD_INPUT,
    )
    def post(self, request: Request, pk: int) -> Response:
        return self.call(agent_tools.cancel_pulse, pulse_id=_pulse_id(pk))


class AgentRescheduleView(AgentView):
    @endpoint(
        "agent_pulse_reschedule",
        "The agent's tool reschedule_pulse",
        DESCRIBED,
        body=AgentRescheduleSerializer,
        refusals=NOT_FOUND | CONFLICT,
    )
    def post(self, request: Request, pk: int) -> Response:
        when = self.body(AgentRescheduleSerializer)["when"]
        return self.call(agent_tools.reschedule_pulse, pulse_id=_pulse_id(pk), when=when)


class NotifyView(AgentView):
    @endpoint(
        "notify",
        "Send the user a Telegram message (the agent's tool send_notification)",
        NotifiedSerializer,
        body=NotifySerializer,
        refusals={502: OpenApiResponse(ERROR, description="Telegram did not take the message")},
    )
    def post(self, request: Request) -> Response:
        data = self.body(NotifySerializer)
        return self.call(agent_tools.send_notification, run_pulse_id=request.user.run_pulse_id, **data)


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
    @endpoint(
        "agent_routines_list",
        "The agent's tool list_routines: every routine by name, with its next fire",
        AgentRoutineListSerializer,
    )
    def get(self, request: Request) -> Response:
        return self.call(agent_tools.list_routines)

    @endpoint(
        "agent_routine_create",
        "The agent's tool create_routine: source 'agent', within the guard rails",
        AgentRoutineDescribedSerializer,
        body=AgentRoutineSerializer,
    )
    def post(self, request: Request) -> Response:
        return self.call(agent_tools.create_routine, **self.body(AgentRoutineSerializer))


class AgentRoutineView(AgentView):
    @endpoint(
        "agent_routine_delete",
        "The agent's tool delete_routine (routines the agent created)",
        AgentRoutineDeletedSerializer,
        refusals={
            **ROUTINE_NOT_FOUND,
            403: OpenApiResponse(ERROR, description="the owner's routine, or a token that may not"),
        },
    )
    def delete(self, request: Request, name: str) -> Response:
        return self.call(agent_tools.delete_routine, name=name)


class AgentRoutinePauseView(AgentView):
    @endpoint(
        "agent_routine_pause",
        "The agent's tool pause_routine",
        AgentRoutineDescribedSerializer,
        refusals=ROUTINE_NOT_FOUND,
    )
    def post(self, request: Request, name: str) -> Response:
        return self.call(agent_tools.pause_routine, name=name)
