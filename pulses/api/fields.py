"""The API's strict input fields: a number is not a string, a string is not a list, text must be valid
Unicode, a time is read as people write it, and a body naming an unknown field is refused, so every
bad input is a 400 that names the field. Used by every serializer of the API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pulses import limits
from pulses.timeparse import ACCEPTED_FORMS, TimeParseError, parse_when

WHEN_HELP = "when to run: " + "; ".join(ACCEPTED_FORMS)


class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField would turn 12 into "12")."""

    default_error_messages = {
        "invalid": "must be a string.",
        "unicode": "must be valid Unicode text (no lone surrogates).",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("unicode")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer, and only an integer in JSON (not "3", not true)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            self.fail("invalid")
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        if isinstance(data, str) and not self.context.get("from_query"):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false, and only those in JSON (not "true", not 1)."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=str(data)[:50])
        return data


class StrictChoiceField(serializers.ChoiceField):
    default_error_messages = {"invalid_choice": '"{input}" is not one of: {choices}.'}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail(
                "invalid_choice", input=str(data)[:50], choices=", ".join(self.choice_strings_to_values)
            )
        if data not in self.choice_strings_to_values:
            self.fail("invalid_choice", input=data[:50], choices=", ".join(self.choice_strings_to_values))
        return data


@extend_schema_field(OpenApiTypes.STR)
class WhenField(StrictCharField):
    """A time as text ("now", ISO 8601, "in 5 minutes", "tomorrow at 9am"), parsed in TIME_ZONE."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", limits.MAX_WHEN_CHARS)
        kwargs.setdefault("min_length", 1)
        kwargs.setdefault("help_text", WHEN_HELP)
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        text = super().run_validation(data)  # a string within max_length, or the default
        if not isinstance(text, str):
            return text
        try:
            return parse_when(text)
        except TimeParseError as exc:
            raise serializers.ValidationError(str(exc)) from None


class StrictSerializer(serializers.Serializer):
    """A request body that names an unknown field is a 400: a typo ("priorty") must not pass silently."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(str(key)[:50] for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown field; accepted: {', '.join(self.fields)}"] for key in unknown[:10]}
                )
        return super().to_internal_value(data)


class StrictSerializerScheme(OpenApiSerializerExtension):
    target_class = "pulses.api.fields.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


def text_list(*, max_items: int, max_length: int, help_text: str, **options) -> serializers.ListField:
    """An optional list of non-blank strings; `options` (a default, allow_null) go to the ListField."""
    return serializers.ListField(
        child=StrictCharField(max_length=max_length),
        max_length=max_items,
        required=False,
        help_text=help_text,
        **options,
    )


def tag_list(help_text: str, **options) -> serializers.ListField:
    """A pulse's or a routine's tags."""
    return text_list(
        max_items=limits.MAX_TAGS, max_length=limits.MAX_TAG_CHARS, help_text=help_text, **options
    )


def note_list(help_text: str, **options) -> serializers.ListField:
    """A pulse's or a routine's sticky notes."""
    return text_list(
        max_items=limits.MAX_NOTES, max_length=limits.MAX_NOTE_CHARS, help_text=help_text, **options
    )


def page_limit(*, most: int, default: int) -> StrictIntegerField:
    """How many items a listing returns, 1 to `most`."""
    return StrictIntegerField(min_value=1, max_value=most, default=default)


def page_offset() -> StrictIntegerField:
    """How many items a listing skips."""
    return StrictIntegerField(min_value=0, max_value=10**9, default=0)


class ModelNameField(StrictCharField):
    """The agent's model for a run (`pulses.limits.check_model`): a name, never anything shaped like an
    option; empty for the default (AGENT_MODEL)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", limits.MAX_MODEL_CHARS)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("help_text", f"the agent's model for its runs; {limits.MODEL_FORM}")
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        text = super().run_validation(data)
        try:
            return limits.check_model(text)
        except limits.InvalidPulse as exc:
            raise serializers.ValidationError(str(exc)) from None


def timeout_seconds_field(**options) -> StrictIntegerField:
    """A run's own timeout in seconds (`pulses.limits`); null: PULSE_TIMEOUT_SECONDS."""
    return StrictIntegerField(
        min_value=limits.MIN_TIMEOUT_SECONDS,
        max_value=limits.MAX_TIMEOUT_SECONDS,
        allow_null=True,
        help_text=(
            f"seconds before a run is killed, {limits.MIN_TIMEOUT_SECONDS} to {limits.MAX_TIMEOUT_SECONDS}; "
            "null: PULSE_TIMEOUT_SECONDS"
        ),
        **options,
    )


def max_turns_field(**options) -> StrictIntegerField:
    """The agent's turn limit per run (`--max-turns`); null: the agent's own."""
    return StrictIntegerField(
        min_value=limits.MIN_MAX_TURNS,
        max_value=limits.MAX_MAX_TURNS,
        allow_null=True,
        help_text=f"the agent's turn limit per run (--max-turns), up to {limits.MAX_MAX_TURNS}; null: none",
        **options,
    )
