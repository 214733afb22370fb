"""Every API error is JSON with a `detail` that says what to fix; domain errors get their status here."""

from __future__ import annotations

import json
import logging

from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from pulses.api.authentication import HOW_TO
from pulses.limits import InvalidPulse
from pulses.models import PulseNotPending, PulseNotRunning
from pulses.queue_pause import InvalidPause
from pulses.routines.changes import RoutineInvalid
from pulses.routines.lookup import UnknownRoutine
from pulses.timeparse import TimeParseError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MAX_BODY_BYTES = 2 * 1024 * 1024  # room for the longest valid body even when every character is \u-escaped


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB"
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    """JSON bodies up to MAX_BODY_BYTES; anything unreadable is a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return {}
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise exceptions.ParseError("the request body is not UTF-8 text") from None
        except RecursionError:
            raise exceptions.ParseError("the JSON body is nested too deeply") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"the request body is not valid JSON: {exc}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _flatten(errors) -> str:
    if isinstance(errors, dict):
        parts = []
        for field, value in errors.items():
            text = _flatten(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(errors, list):
        return " ".join(_flatten(item) for item in errors)
    return str(errors)


def exception_handler(exc, context):
    """DRF's handler, plus: unknown pulse 404, illegal transition 409, unreadable time or a pulse
    outside its limits 400, and 503
    while the database cannot be reached (a restart or failover: the client should try again)."""
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("api_database_unavailable path=%s error=%s", context["request"].path, exc)
        return Response(
            {"detail": "the database is unavailable right now (restarting?); try again in a few seconds"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, RequestDataTooBig):  # past DATA_UPLOAD_MAX_MEMORY_SIZE, before our parser runs
        exc = PayloadTooLarge()
    elif isinstance(exc, UnknownRoutine):
        exc = exceptions.NotFound(f"no routine named {str(exc.key)[:100]!r} (nor with that id)")
    elif isinstance(exc, RoutineInvalid):
        exc = exceptions.ValidationError({exc.field: [exc.message]})
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound("no pulse with that id")
    elif isinstance(exc, PulseNotPending | PulseNotRunning):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, TimeParseError):
        exc = exceptions.ValidationError({"scheduled_at": [str(exc)]})
    elif isinstance(exc, InvalidPause):  # an end that has passed
        exc = exceptions.ValidationError({"until": [str(exc)]})
    elif isinstance(exc, InvalidPulse):  # what the serializer let through, queue.schedule did not
        exc = exceptions.ValidationError({"non_field_errors": [str(exc)]})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.NotAuthenticated):
        response.data = {"detail": f"authentication required: {HOW_TO}"}
    elif isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"detail": f"invalid input: {_flatten(errors)}", "errors": errors}
    elif not isinstance(response.data, dict) or "detail" not in response.data:
        response.data = {"detail": _flatten(response.data)}
    return response
