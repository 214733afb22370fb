"""How an endpoint is described in the OpenAPI schema, from the few facts that differ between endpoints.

An endpoint's summary is its method's docstring; its description, its view's docstring. The rules
every endpoint shares are written once, in `endpoint`: each needs a token (401 and 403), one that
reads a body or a query string answers 400 to bad input, and one that reads a body also 413 and 415.
The refusals only some endpoints give (404, 409, 502) are named where they occur."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_doc
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers

from pulses.api.serializers import ErrorSerializer

ERROR = ErrorSerializer
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


class EndpointSchema(AutoSchema):
    """drf-spectacular's schema (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS), but the summary is the first
    line of the method's docstring (its full stop left out) and the description always the view's."""

    def get_summary(self) -> str | None:
        doc = get_doc(getattr(self.view, self.method.lower(), None))
        return doc.splitlines()[0].removesuffix(".") if doc else None

    def get_description(self) -> str:
        return get_doc(self.view.__class__)


def endpoint(
    operation_id: str,
    answer: type[serializers.Serializer] | serializers.Field | OpenApiResponse | None,
    *,
    summary: str | None = None,
    body: type[serializers.Serializer] | None = None,
    query: type[serializers.Serializer] | None = None,
    refusals: dict | None = None,
    code: int = 200,
):
    """`extend_schema` for an endpoint that answers `answer` with `code`, reads `body` (a request
    body) or `query` (query parameters) if given, and may refuse with `refusals` besides the rules
    above; `summary` is for a method whose docstring does not say it (one inherited by several)."""
    responses = {code: answer}
    if body is not None or query is not None:
        responses |= BAD_INPUT
    responses |= AUTH_ERRORS | (refusals or {})
    if body is not None:
        responses |= BODY_ERRORS
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        request=body,
        parameters=None if query is None else [query],
        responses=responses,
    )
