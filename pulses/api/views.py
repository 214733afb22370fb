"""The REST API: each view validates with a serializer, makes one call into `pulses.queue`, responds."""

from __future__ import annotations

import platform
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import django
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from pulses import budget, queue, reports, run_tails
from pulses.agent.check import setup_problem
from pulses.api import serializers as s
from pulses.api.authentication import BearerTokenAuthentication
from pulses.api.errors import BoundedJSONParser
from pulses.api.permissions import (
    FullScope,
    FullScopeOrStaff,
    require_agents_pulse,
    require_wake_checks,
    who_asks,
)
from pulses.api.schema import AUTH_ERRORS, BAD_INPUT, BODY_ERRORS, CONFLICT, ERROR, NOT_FOUND, endpoint
from pulses.models import Pulse, alive_within
from pulses.ops.uptime import uptime_seconds

MAX_ID = 2**63 - 1  # larger ids cannot exist (and would overflow the database driver)
VERSIONS = {
    "reeve": tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())["project"]["version"],
    "django": django.get_version(),
    "python": platform.python_version(),
}


class TokenView(APIView):
    """An endpoint that needs a bearer token and reads a bounded JSON body; `body()` and `query()`
    validate the request's input with a serializer (a 400 naming the field otherwise)."""

    authentication_classes = [BearerTokenAuthentication]
    parser_classes = [BoundedJSONParser]

    def body(self, serializer_class: type[Serializer]) -> dict:
        """The request body, validated."""
        return self._valid(serializer_class(data=self.request.data))

    def query(self, serializer_class: type[Serializer]) -> dict:
        """The query parameters, validated (numbers may come as text there)."""
        query = self.request.query_params.dict()
        return self._valid(serializer_class(data=query, context={"from_query": True}))

    @staticmethod
    def _valid(serializer: Serializer) -> dict:
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class ApiView(TokenView):
    """An endpoint for full-scope tokens; an agent-scoped token is refused with 403."""

    permission_classes = [IsAuthenticated, FullScope]


def _pulse_id(pk: int) -> int:
    if pk > MAX_ID:
        raise Pulse.DoesNotExist
    return pk


@csrf_exempt
def not_found(request, *args, **kwargs) -> HttpResponse:
    """Any path under /api/ that is not an endpoint; an endpoint's path with a trailing slash
    (`/api/docs/`) is that endpoint, served in place (no redirect: a POST keeps its body)."""
    if request.path_info.endswith("/") and request.path_info.strip("/") != "api":
        try:
            match = resolve(request.path_info.rstrip("/"))
        except Resolver404:
            match = None
        if match is not None and match.url_name != "not-found":
            return match.func(request, *match.args, **match.kwargs)
    return JsonResponse({"detail": f"no API endpoint at {request.path}; see /api/docs"}, status=404)


LIVENESS_ONLY = (
    "liveness of the web process and its database only; whether pulses run: manage.py health "
    "(reeve-health-check, reeve-status, /metrics reeve_healthy)"
)


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health", responses={200: s.HealthSerializer, 503: s.HealthSerializer}, auth=[]
    )
    def get(self, request: Request) -> Response:
        """Liveness probe of the web process and its database (no token needed). Not whether pulses
        run: that is `manage.py health` / reeve-health-check (a worker, nothing overdue, the listener)."""
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pulses LIMIT 1")
            database, code, state = "ok", status.HTTP_200_OK, "healthy"
        except Exception as exc:  # any failure to reach the database is exactly what this reports
            database, code, state = f"unreachable: {type(exc).__name__}", 503, "unhealthy"
        body = {"status": state, "database": database, "time": timezone.now(), "probe": LIVENESS_ONLY}
        return Response(body, status=code)


TRIGGER_SCHEMA = {
    "request": s.TriggerSerializer,
    "responses": {
        201: OpenApiResponse(s.TriggeredSerializer, description="created"),
        200: OpenApiResponse(s.TriggeredSerializer, description="idempotency key seen: the first pulse"),
        **BAD_INPUT,
        **AUTH_ERRORS,
        **BODY_ERRORS,
    },
}


class TriggerView(ApiView):
    @extend_schema(operation_id="pulse_trigger", **TRIGGER_SCHEMA)
    def post(self, request: Request) -> Response:
        """Create a pulse."""
        data = self.body(s.TriggerSerializer)
        if data.get("check_command"):
            require_wake_checks(request, what="check_command")
        result = queue.schedule(**data)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.TriggeredSerializer(result.pulse).data, status=code)


class ScheduleView(TriggerView):
    @extend_schema(operation_id="pulse_schedule", **TRIGGER_SCHEMA)
    def post(self, request: Request) -> Response:
        """Create a pulse (alias of /api/pulse/trigger for clients of the original Reeve)."""
        return super().post(request)


class PulseListView(ApiView):
    @endpoint("pulses_list", s.PulsePageSerializer, query=s.ListQuerySerializer)
    def get(self, request: Request) -> Response:
        """List pulses, newest first (pending and overdue: soonest first)."""
        query = self.query(s.ListQuerySerializer)
        page = reports.search(
            status=query.get("status"),
            priority=query.get("priority"),
            source=query.get("source"),
            tag=query.get("tag"),
            limit=query["limit"],
            offset=query["offset"],
        )
        return Response(
            {
                "count": page.count,
                "limit": query["limit"],
                "offset": query["offset"],
                "results": s.PulseSerializer(page.pulses, many=True).data,
            }
        )


class PulseDetailView(ApiView):
    @endpoint("pulse_detail", s.PulseDetailSerializer, refusals=NOT_FOUND)
    def get(self, request: Request, pk: int) -> Response:
        """One pulse with its attempts."""
        pulse = Pulse.objects.prefetch_related("attempt_set").get(pk=_pulse_id(pk))
        return Response(s.PulseDetailSerializer(pulse).data)


class PulseTailView(ApiView):
    """The live tail of a pulse's runs: what the agent did (tool calls, text, errors), a line each.
    Poll with `after` set to the last `seq` you have until `finished`. A staff member signed in to the
    admin may read it too (the admin's pulse page and the dashboard poll it)."""

    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [FullScopeOrStaff]

    @endpoint("pulse_tail", s.TailSerializer, query=s.TailQuerySerializer, refusals=NOT_FOUND)
    def get(self, request: Request, pk: int) -> Response:
        """The lines of a pulse's live tail after `after`."""
        after = self.query(s.TailQuerySerializer)["after"]
        return Response(s.TailSerializer(run_tails.page(_pulse_id(pk), after=after)).data)


class CancelView(ApiView):
    @endpoint("pulse_cancel", s.PulseSerializer, refusals=NOT_FOUND | CONFLICT)
    def post(self, request: Request, pk: int) -> Response:
        """Cancel a pending pulse."""
        return Response(s.PulseSerializer(queue.cancel(_pulse_id(pk))).data)


class StopView(TokenView):
    # Agent-scoped tokens too, for the agent's own pulses (require_agents_pulse).
    permission_classes = [IsAuthenticated]

    @endpoint(
        "pulse_stop",
        s.PulseSerializer,
        code=202,
        body=s.StopSerializer,
        refusals=NOT_FOUND
        | CONFLICT
        | {403: OpenApiResponse(ERROR, description="an agent-scoped token, and the user's pulse")},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Stop a running pulse: its agent's process group gets SIGTERM, then SIGKILL 3 s later, and
        it ends cancelled (with `retry`, pending again, no attempt spent). 202 once the request is
        stored: the worker running it acts within about a second."""
        retry = self.body(s.StopSerializer)["retry"]
        pulse_id = _pulse_id(pk)
        require_agents_pulse(request, pulse_id)
        pulse = queue.request_stop(pulse_id, by=who_asks(request), retry=retry)
        return Response(s.PulseSerializer(pulse).data, status=status.HTTP_202_ACCEPTED)


class MoveView(ApiView):
    # Reschedule and requeue: a time from the body, one call into `queue`, the pulse as it is now.
    # (No docstring: the schema describes each endpoint with its view's, here ApiView's.)

    serializer_class: type[Serializer]
    move: Callable[[int, datetime], Pulse]  # the call into `queue`, given the id and the new time

    def post(self, request: Request, pk: int) -> Response:
        scheduled_at = self.body(self.serializer_class)["scheduled_at"]
        return Response(s.PulseSerializer(self.move(_pulse_id(pk), scheduled_at)).data)


def _move(operation_id: str, summary: str):
    """The schema of a MoveView, from its `serializer_class`."""

    def describe(view: type[MoveView]) -> type[MoveView]:
        schema = endpoint(
            operation_id,
            s.PulseSerializer,
            summary=summary,
            body=view.serializer_class,
            refusals=NOT_FOUND | CONFLICT,
        )
        return extend_schema_view(post=schema)(view)

    return describe


@_move("pulse_reschedule", "Move a pending pulse to another time")
class RescheduleView(MoveView):
    serializer_class = s.RescheduleSerializer
    move = staticmethod(queue.reschedule)


@_move("pulse_requeue", "Run a failed, cancelled or completed pulse again (now, or at scheduled_at)")
class RequeueView(MoveView):
    serializer_class = s.RequeueSerializer
    move = staticmethod(queue.requeue)


class UpcomingView(ApiView):
    @endpoint("pulse_upcoming", s.PulseSerializer(many=True), query=s.UpcomingQuerySerializer)
    def get(self, request: Request) -> Response:
        """Pending pulses, soonest first."""
        limit = self.query(s.UpcomingQuerySerializer)["limit"]
        return Response(s.PulseSerializer(reports.listing("pending", limit=limit), many=True).data)


class StatusView(ApiView):
    @endpoint("status", s.StatusSerializer)
    def get(self, request: Request) -> Response:
        """Workers seen recently, queue depth, versions, uptime."""
        recent = reports.recent_workers()
        slots = reports.worker_slots(recent)
        workers = [
            {
                "name": w.name,
                "host": w.host,
                "pid": w.pid,
                "started_at": w.started_at.isoformat(),
                "last_seen": w.last_seen.isoformat(),
                "running": sum(1 for slot in slots[w.name] if slot.pulse),
                "concurrency": w.concurrency,
                "critical_reserved": w.critical_reserved,
                "slots": [_slot(slot) for slot in slots[w.name]],
            }
            for w in recent
        ]
        hold = queue.agent_hold_state()
        paused = queue.queue_pause_state()
        agent_problem = setup_problem() or hold.summary()
        state = "ok" if workers else f"no worker seen in the last {alive_within().seconds} seconds"
        if agent_problem:
            state = f"no pulse runs: {agent_problem}"
        elif paused.paused:
            state = f"no pulse runs: {paused.summary()}"
        return Response(
            {
                "status": state,
                "agent_problem": agent_problem,
                "agent_resumes_at": hold.resumes_at.isoformat() if hold.resumes_at else None,
                "agent_warning": hold.warning,
                "queue_paused": paused.paused,
                "queue_paused_until": paused.until.isoformat() if paused.until else None,
                "queue_pause_reason": paused.reason,
                "workers": workers,
                **_queue_depth(),
                "versions": VERSIONS,
                "uptime_seconds": uptime_seconds(),
            }
        )


def _slot(slot: reports.BusySlot) -> dict:
    pulse = slot.pulse
    if pulse is None:
        return {"kind": slot.kind, "pulse": None}
    started = pulse.executed_at.isoformat() if pulse.executed_at else None
    prompt = " ".join(pulse.prompt.split())[:80]
    return {
        "kind": slot.kind,
        "pulse": {
            "id": pulse.pk,
            "priority": pulse.priority,
            "source": pulse.source,
            "prompt": prompt,
            "started_at": started,
        },
    }


def _pause(state, *, skipped_fires: int | None = None) -> dict:
    body = {
        "paused": state.paused,
        "since": state.since,
        "until": state.until,
        "reason": state.reason,
        "by": state.by,
    }
    if skipped_fires is not None:
        body["skipped_fires"] = skipped_fires
    return s.QueuePauseStateSerializer(body).data


class QueuePauseView(ApiView):
    @endpoint("queue_pause", s.QueuePauseStateSerializer, body=s.QueuePauseSerializer)
    def post(self, request: Request) -> Response:
        """Pause the queue: no pulse is claimed until `until` (or a resume); runs going on finish."""
        data = self.body(s.QueuePauseSerializer)
        state = queue.pause(
            by=f"api token {request.user.name}", until=data.get("until"), reason=data["reason"]
        )
        return Response(_pause(state))


class QueueResumeView(ApiView):
    @endpoint("queue_resume", s.QueuePauseStateSerializer)
    def post(self, request: Request) -> Response:
        """Resume the queue (the routines' catch-up rule applies to what fired while it was paused)."""
        resumed = queue.resume(by=f"api token {request.user.name}")
        return Response(
            _pause(queue.queue_pause_state(), skipped_fires=resumed.skipped_fires if resumed else 0)
        )


class StatsView(ApiView):
    @endpoint("stats", s.StatsSerializer)
    def get(self, request: Request) -> Response:
        """Runs per hour over the last 24 h, success rate, average and p95 duration, queue depth, spend."""
        activity = reports.activity(hours=24)
        return Response(
            {
                "window_hours": activity.window_hours,
                "executed": activity.executed,
                "failed": activity.failed,
                "success_rate": activity.success_rate,
                "failure_rate": activity.failure_rate,
                "average_duration_ms": activity.average_duration_ms,
                "p95_duration_ms": activity.p95_duration_ms,
                "per_hour": [asdict(hour) for hour in activity.per_hour],
                **_queue_depth(),
                "spend": budget.spend().as_dict(),
            }
        )


def _queue_depth() -> dict:
    """The queue's part of /api/status and /api/stats."""
    stats = reports.stats()
    return {
        "queue": stats.by_status,
        "pending_by_priority": stats.pending_by_priority,
        "overdue": stats.overdue,
    }
