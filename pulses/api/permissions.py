"""What a token's scope allows (SECURITY.md has the table): `full` every endpoint but wake checks,
`wake-checks` every endpoint and wake checks, `agent` only the agent's tools."""

from __future__ import annotations

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from pulses.models import Pulse

WAKE_CHECKS_REFUSED = (
    "{what} needs a token with the 'wake-checks' scope: a wake check is a shell command run as Reeve's "
    "user in the Desk, so neither PULSE_API_TOKEN nor a 'full' token may set or run one. Make one with "
    "'manage.py create_api_token NAME --scope wake-checks', or use the admin, 'manage.py trigger_pulse "
    "--check' or 'manage.py routine'"
)


class FullScope(BasePermission):
    """Any endpoint but the agent's own: refused (403) to an agent-scoped token."""

    message = (
        "this token has the 'agent' scope: it may use only the agent's tools (/api/agent/pulses, "
        "/api/agent/routines, /api/notify); use PULSE_API_TOKEN or a token made by "
        "'manage.py create_api_token NAME'"
    )

    def has_permission(self, request, view) -> bool:
        return getattr(request.user, "reaches_every_endpoint", False)


class FullScopeOrStaff(FullScope):
    """What a full-scope token may read, which a staff member signed in to the admin may read too
    (a page of the admin or the dashboard asks with its session, never with a token)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if getattr(user, "scope", None) is not None:
            return super().has_permission(request, view)
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class AnyTokenOrStaff(BasePermission):
    """The OpenAPI schema and its docs: a token of any scope, or a staff member signed in to the admin
    (a browser sends no bearer token; the docs page fetches the schema with its session)."""

    message = "send a bearer token (any scope), or sign in to /admin/ as a staff member"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if getattr(user, "scope", None) is not None:
            return True
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def require_wake_checks(request, *, what: str) -> None:
    """403 unless the request's token has the `wake-checks` scope; `what` names what it tried."""
    if not getattr(request.user, "may_use_wake_checks", False):
        raise PermissionDenied(WAKE_CHECKS_REFUSED.format(what=what))


NOT_THE_AGENTS = (
    "pulse #{pulse_id} is the user's, not the agent's: an 'agent'-scoped token (a run's, the Desk's) may "
    "stop only the pulses the agent scheduled and its routines' pulses"
)


def require_agents_pulse(request, pulse_id: int) -> None:
    """An agent-scoped token acts only on the pulses the agent (or its routines) made: 403 otherwise.
    Full-scope tokens act on any. A pulse that does not exist is left to the domain's 404."""
    if getattr(request.user, "reaches_every_endpoint", False):
        return
    pulses = Pulse.objects.filter(pk=pulse_id)
    if pulses.exists() and not pulses.made_by_agent().exists():
        raise PermissionDenied(NOT_THE_AGENTS.format(pulse_id=pulse_id))


def who_asks(request) -> str:
    """Who an API request acts for, as attempts and log lines name it: `agent` for an agent-scoped
    token, else `api token NAME` (`settings` for PULSE_API_TOKEN)."""
    user = request.user
    if not getattr(user, "reaches_every_endpoint", False):
        return "agent"
    return f"api token {user.name}"
