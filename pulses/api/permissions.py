"""What a token's scope allows: `full` every endpoint, `agent` only the agent's tools."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from pulses.models import TokenScope


class FullScope(BasePermission):
    """Any endpoint but the agent's own: refused (403) to an agent-scoped token."""

    message = (
        "this token has the 'agent' scope: it may use only the agent's tools (/api/agent/pulses, "
        "/api/agent/routines, /api/notify); use PULSE_API_TOKEN or a token made by "
        "'manage.py create_api_token NAME'"
    )

    def has_permission(self, request, view) -> bool:
        return getattr(request.user, "scope", None) == TokenScope.FULL
