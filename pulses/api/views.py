"""The REST API: each view validates with a serializer, makes one call into `pulses.queue`, responds."""

from __future__ import annotations

import platform
import time
import tomllib
from dataclasses import asdict
from pathlib import Path

import django
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pulses import queue, reports
from pulses.agent.check import setup_problem
from pulses.api import serializers as s
from pulses.api.authentication import BearerTokenAuthentication
from pulses.api.errors import BoundedJSONParser
from pulses.api.permissions import FullScope
from pulses.models import ALIVE_WITHIN, Pulse

STARTED = time.monotonic()
MAX_ID = 2**63 - 1  # larger ids cannot exist (and would overflow the database driver)
VERSIONS = {
    "reeve": tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())["project"]["version"],
    "django": django.get_version(),
    "python": platform.python_version(),
}

ERROR = s.ErrorSerializer
AUTH_ERRORS = {
    401: OpenApiResponse(ERROR, description="missing, wrong or revoked token"),
    403: OpenApiResponse(ERROR, description="the token's scope does not allow this endpoint"),
}
BAD_INPUT = {400: OpenApiResponse(ERROR, description="invalid input; `detail` says what to fix")}
NOT_FOUND = {404: OpenApiResponse(ERROR, description="no pulse with that id")}
CONFLICT = {409: OpenApiResponse(ERROR, description="the pulse is not in a state that allows this")}
BODY_ERRORS = {
    413: OpenApiResponse(ERROR, description="the body is too large"),
    415: OpenApiResponse(ERROR, description="the body is not JSON"),
}


class ApiView(APIView):
    """An endpoint for full-scope tokens; an agent-scoped token is refused with 403."""

    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated, FullScope]
    parser_classes = [BoundedJSONParser]


def _pulse_id(pk: int) -> int:
    if pk > MAX_ID:
        raise Pulse.DoesNotExist
    return pk


def _valid(serializer_class, data, **context) -> dict:
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


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


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Liveness and database check (no token needed)",
        responses={200: s.HealthSerializer, 503: s.HealthSerializer},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pulses LIMIT 1")
            database, code, state = "ok", status.HTTP_200_OK, "healthy"
        except Exception as exc:  # any failure to reach the database is exactly what this reports
            database, code, state = f"unreachable: {type(exc).__name__}", 503, "unhealthy"
        return Response({"status": state, "database": database, "time": timezone.now()}, status=code)


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
    @extend_schema(summary="Create a pulse", operation_id="pulse_trigger", **TRIGGER_SCHEMA)
    def post(self, request: Request) -> Response:
        data = _valid(s.TriggerSerializer, request.data)
        result = queue.schedule(**data)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.TriggeredSerializer(result.pulse).data, status=code)


class ScheduleView(TriggerView):
    @extend_schema(
        summary="Create a pulse (alias of /api/pulse/trigger for clients of the original Reeve)",
        operation_id="pulse_schedule",
        **TRIGGER_SCHEMA,
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class PulseListView(ApiView):
    @extend_schema(
        operation_id="pulses_list",
        summary="List pulses, newest first (pending and overdue: soonest first)",
        parameters=[s.ListQuerySerializer],
        responses={200: s.PulsePageSerializer, **BAD_INPUT, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _valid(s.ListQuerySerializer, request.query_params.dict(), from_query=True)
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
    @extend_schema(
        operation_id="pulse_detail",
        summary="One pulse with its attempts",
        responses={200: s.PulseDetailSerializer, **AUTH_ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, pk: int) -> Response:
        pulse = Pulse.objects.prefetch_related("attempt_set").get(pk=_pulse_id(pk))
        return Response(s.PulseDetailSerializer(pulse).data)


class CancelView(ApiView):
    @extend_schema(
        operation_id="pulse_cancel",
        summary="Cancel a pending pulse",
        request=None,
        responses={200: s.PulseSerializer, **AUTH_ERRORS, **NOT_FOUND, **CONFLICT},
    )
    def post(self, request: Request, pk: int) -> Response:
        return Response(s.PulseSerializer(queue.cancel(_pulse_id(pk))).data)


class RescheduleView(ApiView):
    @extend_schema(
        operation_id="pulse_reschedule",
        summary="Move a pending pulse to another time",
        request=s.RescheduleSerializer,
        responses={
            200: s.PulseSerializer,
            **BAD_INPUT,
            **AUTH_ERRORS,
            **NOT_FOUND,
            **CONFLICT,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.RescheduleSerializer, request.data)
        return Response(s.PulseSerializer(queue.reschedule(_pulse_id(pk), data["scheduled_at"])).data)


class RequeueView(ApiView):
    @extend_schema(
        operation_id="pulse_requeue",
        summary="Run a failed, cancelled or completed pulse again (now, or at scheduled_at)",
        request=s.RequeueSerializer,
        responses={
            200: s.PulseSerializer,
            **BAD_INPUT,
            **AUTH_ERRORS,
            **NOT_FOUND,
            **CONFLICT,
            **BODY_ERRORS,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.RequeueSerializer, request.data)
        return Response(s.PulseSerializer(queue.requeue(_pulse_id(pk), data["scheduled_at"])).data)


class UpcomingView(ApiView):
    @extend_schema(
        operation_id="pulse_upcoming",
        summary="Pending pulses, soonest first",
        parameters=[s.UpcomingQuerySerializer],
        responses={200: s.PulseSerializer(many=True), **BAD_INPUT, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _valid(s.UpcomingQuerySerializer, request.query_params.dict(), from_query=True)
        return Response(s.PulseSerializer(reports.listing("pending", limit=query["limit"]), many=True).data)


class StatusView(ApiView):
    @extend_schema(
        operation_id="status",
        summary="Workers seen recently, queue depth, versions, uptime",
        responses={200: s.StatusSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        stats = reports.stats()
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
        agent_problem = setup_problem()
        state = "ok" if workers else f"no worker seen in the last {ALIVE_WITHIN.seconds // 60} minutes"
        if agent_problem:
            state = f"no pulse runs: {agent_problem}"
        return Response(
            {
                "status": state,
                "agent_problem": agent_problem,
                "workers": workers,
                "queue": stats.by_status,
                "pending_by_priority": stats.pending_by_priority,
                "overdue": stats.overdue,
                "versions": VERSIONS,
                "uptime_seconds": round(time.monotonic() - STARTED, 3),
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


class StatsView(ApiView):
    @extend_schema(
        operation_id="stats",
        summary="Runs per hour over the last 24 h, success rate, average and p95 duration, queue depth",
        responses={200: s.StatsSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        activity = reports.activity(hours=24)
        stats = reports.stats()
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
                "queue": stats.by_status,
                "pending_by_priority": stats.pending_by_priority,
                "overdue": stats.overdue,
            }
        )
