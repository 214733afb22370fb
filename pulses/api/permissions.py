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


class AnyTokenOrStaff(BasePermission):
    """The OpenAPI schema and its docs: a token of any scope, or a staff member signed in to the admin
    (a browser sends no bearer token; the docs page fetches the schema with its session)."""

    message = "send a bearer token (any scope), or sign in to /admin/ as a staff member"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if getattr(user, "scope", None) is not None:
            return True
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
