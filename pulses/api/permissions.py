"""What a token's scope allows (SECURITY.md has the table): `full` every endpoint but wake checks,
`wake-checks` every endpoint and wake checks, `agent` only the agent's tools."""

from __future__ import annotations

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

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


def require_wake_checks(request, *, what: str) -> None:
    """403 unless the request's token has the `wake-checks` scope; `what` names what it tried."""
    if not getattr(request.user, "may_use_wake_checks", False):
        raise PermissionDenied(WAKE_CHECKS_REFUSED.format(what=what))
