"""`Authorization: Bearer <token>` for the REST API (DRF authentication class)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from pulses.api import tokens

HOW_TO = (
    "send 'Authorization: Bearer <token>' with PULSE_API_TOKEN from .env "
    "or a token made by 'manage.py create_api_token NAME'"
)


class BearerTokenAuthentication(BaseAuthentication):
    """None for requests without a bearer token (not our scheme); 401 for a wrong one."""

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(f"malformed Authorization header: {HOW_TO}")
        try:
            token = parts[1].decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(f"invalid token: {HOW_TO}") from None
        client = tokens.identify(token)
        if client is None:
            # The message never repeats the token: error bodies end up in logs.
            raise exceptions.AuthenticationFailed(f"invalid or revoked token: {HOW_TO}")
        return (client, None)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="reeve"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "pulses.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": HOW_TO}
