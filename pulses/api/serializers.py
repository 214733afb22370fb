"""What the API accepts and returns. Input fields are strict (`pulses.api.fields`): a number is not a
string, a string is not a list, and text must be valid Unicode, so every bad input is a 400 that names
the field."""

from __future__ import annotations

from rest_framework import serializers

from pulses import answers, limits
from pulses.api.fields import (
    ModelNameField,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictSerializer,
    WhenField,
    max_turns_field,
    note_list,
    page_limit,
    page_offset,
    tag_list,
    timeout_seconds_field,
)
from pulses.limits import SESSION_ID_FORM, InvalidSessionId, check_session_id, local_time
from pulses.models import Priority, Pulse, PulseAttempt, RunTailEvent, Status
from pulses.timeparse import parse_when

MAX_PAGE = 500
LIST_VIEWS = (*Status.values, "overdue")


class TriggerSerializer(StrictSerializer):
    prompt = StrictCharField(max_length=limits.MAX_PROMPT_CHARS, help_text="what the agent should do")
    scheduled_at = WhenField(required=False, default="now")
    priority = StrictChoiceField(choices=Priority.choices, default=Priority.NORMAL, help_text="run order")
    source = StrictCharField(
        max_length=limits.MAX_SOURCE_CHARS, required=False, default="api", help_text="who scheduled it"
    )
    session_id = StrictCharField(
        max_length=limits.MAX_KEY_CHARS,
        required=False,
        default="",
        allow_blank=True,
        help_text=f"agent session to resume; {SESSION_ID_FORM}",
    )
    sticky_notes = note_list("reminders appended to the prompt", default=list)
    tags = tag_list("labels for filtering", default=list)
    max_retries = StrictIntegerField(
        min_value=0, max_value=limits.MAX_RETRIES, default=3, help_text="retries after the first attempt"
    )
    idempotency_key = StrictCharField(
        max_length=limits.MAX_KEY_CHARS,
        required=False,
        allow_null=True,
        default=None,
        help_text="sending the same key again returns the first pulse (200) instead of a new one",
    )
    deliver = StrictChoiceField(
        choices=[("telegram", "telegram")],
        required=False,
        allow_null=True,
        default=None,
        help_text="'telegram': the agent's answer goes to the configured Telegram chat when the pulse ends",
    )
    check_command = StrictCharField(
        max_length=limits.MAX_CHECK_CHARS,
        required=False,
        default="",
        allow_blank=True,
        help_text="a wake check run in the Desk first: exit 0 wakes the agent (with its output), 1 skips",
    )
    model = ModelNameField(required=False, default="")
    timeout_seconds = timeout_seconds_field(required=False, default=None)
    max_turns = max_turns_field(required=False, default=None)

    def validate_deliver(self, value):
        return value or ""

    def validate_scheduled_at(self, value):
        # The field's default is the text "now"; make it a time here too.
        return parse_when(value) if isinstance(value, str) else value

    def validate_session_id(self, value):
        try:
            return check_session_id(value)
        except InvalidSessionId as exc:
            raise serializers.ValidationError(str(exc)) from None


class RescheduleSerializer(StrictSerializer):
    scheduled_at = WhenField()


class StopSerializer(StrictSerializer):
    retry = StrictBooleanField(
        required=False,
        default=False,
        help_text="true: back to pending once stopped, no attempt spent; false (default): cancelled",
    )


class RequeueSerializer(StrictSerializer):
    scheduled_at = WhenField(required=False, default="now")

    def validate_scheduled_at(self, value):
        return parse_when(value) if isinstance(value, str) else value


class ListQuerySerializer(serializers.Serializer):
    status = StrictChoiceField(choices=LIST_VIEWS, required=False, help_text="a status, or 'overdue'")
    priority = StrictChoiceField(choices=Priority.choices, required=False)
    source = StrictCharField(max_length=limits.MAX_SOURCE_CHARS, required=False)
    tag = StrictCharField(max_length=limits.MAX_TAG_CHARS, required=False)
    limit = page_limit(most=MAX_PAGE, default=50)
    offset = page_offset()


class UpcomingQuerySerializer(serializers.Serializer):
    limit = page_limit(most=MAX_PAGE, default=20)


class TailQuerySerializer(serializers.Serializer):
    after = StrictIntegerField(
        min_value=0, max_value=2**63 - 1, default=0, help_text="the last `seq` you have (0: from the start)"
    )


class TailEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunTailEvent
        fields = ("seq", "attempt", "kind", "summary", "at")


class TailSerializer(serializers.Serializer):
    """A page of a pulse's live tail (pulses.run_tails.TailPage)."""

    pulse = serializers.IntegerField(source="pulse_id")
    status = serializers.ChoiceField(choices=Status.choices)
    finished = serializers.BooleanField(help_text="the pulse has ended: no line will follow")
    attempts = serializers.IntegerField(source="attempt_count")
    events = TailEventSerializer(many=True, help_text="oldest first, at most 500 at a time")
    next_after = serializers.IntegerField(help_text="the `after` to ask with next")
    answer = serializers.CharField(help_text="once finished: the agent's answer (else empty)")
    error = serializers.CharField(help_text="once finished: why it failed or was cancelled (else empty)")


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = PulseAttempt
        fields = (
            "number",
            "worker",
            "started_at",
            "finished_at",
            "duration_ms",
            "exit_code",
            "succeeded",
            "session_id",
            "result_text",
            "cost_usd",
            "num_turns",
            "error",
            "stdout_tail",
            "stderr_tail",
        )
        read_only_fields = fields


class PulseSerializer(serializers.ModelSerializer):
    is_overdue = serializers.BooleanField(read_only=True)
    # JSONField would be documented as "any"; the API promises lists of strings.
    sticky_notes = serializers.ListField(child=serializers.CharField(), read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    # The API keeps the name `attempts` for the pulse's run count (SPEC); the model says `attempt_count`.
    attempts = serializers.IntegerField(source="attempt_count", read_only=True)

    class Meta:
        model = Pulse
        fields = (
            "id",
            "prompt",
            "scheduled_at",
            "priority",
            "status",
            "is_overdue",
            "session_id",
            "sticky_notes",
            "tags",
            "source",
            "parent",
            "created_at",
            "executed_at",
            "finished_at",
            "execution_duration_ms",
            "error_message",
            "attempts",
            "max_retries",
            "idempotency_key",
            "routine",
            "fire_at",
            "check_command",
            "skipped",
            "model",
            "timeout_seconds",
            "max_turns",
        )
        read_only_fields = fields

    def to_representation(self, pulse: Pulse) -> dict:
        # Written out by hand: building a ModelSerializer's fields costs more than the database write
        # on the trigger path. The fields above still document it, and the fuzz run checks the two agree.
        return {
            "id": pulse.pk,
            "prompt": pulse.prompt,
            "scheduled_at": _when(pulse.scheduled_at),
            "priority": pulse.priority,
            "status": pulse.status,
            "is_overdue": pulse.is_overdue,
            "session_id": pulse.session_id,
            "sticky_notes": list(pulse.sticky_notes or ()),
            "tags": list(pulse.tags or ()),
            "source": pulse.source,
            "parent": pulse.parent_id,
            "created_at": _when(pulse.created_at),
            "executed_at": _when(pulse.executed_at),
            "finished_at": _when(pulse.finished_at),
            "execution_duration_ms": pulse.execution_duration_ms,
            "error_message": pulse.error_message,
            "attempts": pulse.attempt_count,
            "max_retries": pulse.max_retries,
            "idempotency_key": pulse.idempotency_key,
            "routine": pulse.routine_id,
            "fire_at": _when(pulse.fire_at),
            "check_command": pulse.check_command,
            "skipped": pulse.skipped,
            "model": pulse.model,
            "timeout_seconds": pulse.timeout_seconds,
            "max_turns": pulse.max_turns,
        }


def _when(value):
    """DRF's DateTimeField output: ISO 8601 in TIME_ZONE, 'Z' for UTC."""
    if value is None:
        return None
    text = local_time(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TriggeredSerializer(PulseSerializer):
    pulse_id = serializers.IntegerField(source="pk", read_only=True, help_text="the same as id")

    class Meta(PulseSerializer.Meta):
        fields = ("pulse_id", *PulseSerializer.Meta.fields)
        read_only_fields = fields

    def to_representation(self, pulse: Pulse) -> dict:
        return {"pulse_id": pulse.pk, **super().to_representation(pulse)}


class PulseDetailSerializer(PulseSerializer):
    answer = serializers.CharField(
        read_only=True,
        help_text="the agent's answer: the final result text of the last successful attempt; empty until one",
    )
    attempt_history = AttemptSerializer(source="attempt_set", many=True, read_only=True)

    class Meta(PulseSerializer.Meta):
        fields = (*PulseSerializer.Meta.fields, "answer", "attempt_history")
        read_only_fields = fields

    def to_representation(self, pulse: Pulse) -> dict:
        attempts = pulse.attempt_set.all()
        return {
            **super().to_representation(pulse),
            "answer": answers.answer_of(attempts),
            "attempt_history": AttemptSerializer(attempts, many=True).data,
        }


class PulsePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    results = PulseSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what went wrong and how to fix it")
    errors = serializers.DictField(
        required=False,
        help_text="per-field messages, for invalid input",
    )


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="healthy or unhealthy")
    database = serializers.CharField()
    time = serializers.DateTimeField()
    probe = serializers.CharField(help_text="what this answers: liveness only, not whether pulses run")


class SlotPulseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    priority = serializers.CharField()
    source = serializers.CharField()
    prompt = serializers.CharField(help_text="the prompt's first 80 characters")
    started_at = serializers.DateTimeField(allow_null=True)


class SlotSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["ordinary", "critical"],
        help_text="ordinary (PULSE_MAX_CONCURRENT), or critical (PULSE_CRITICAL_RESERVED: critical only)",
    )
    pulse = SlotPulseSerializer(allow_null=True, help_text="what runs in it; null when free")


class WorkerStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    running = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    critical_reserved = serializers.IntegerField()
    slots = SlotSerializer(many=True)


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()
    agent_problem = serializers.CharField(
        help_text=(
            "what keeps every pulse from running (agent command or Desk missing, or the agent unable to "
            "run now: not logged in, no credential, a usage limit) and its fix; empty when none"
        )
    )
    agent_resumes_at = serializers.DateTimeField(
        allow_null=True,
        help_text="when a held queue resumes by itself (a usage limit's reset); null when unknown",
    )
    agent_warning = serializers.CharField(
        help_text="a usage warning from the agent (not a hold); empty when none"
    )
    queue_paused = serializers.BooleanField(help_text="the queue is paused: no pulse is claimed")
    queue_paused_until = serializers.DateTimeField(
        allow_null=True, help_text="when the pause ends by itself; null: until resumed (or not paused)"
    )
    queue_pause_reason = serializers.CharField(help_text="why it is paused; empty when not paused")
    workers = WorkerStatusSerializer(many=True)
    queue = serializers.DictField(child=serializers.IntegerField())
    pending_by_priority = serializers.DictField(child=serializers.IntegerField())
    overdue = serializers.IntegerField()
    versions = serializers.DictField(child=serializers.CharField())
    uptime_seconds = serializers.FloatField(
        help_text="seconds since the web process that answered started (not since its first request)"
    )


class HourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    executed = serializers.IntegerField()
    failed = serializers.IntegerField()


class SourceSpendSerializer(serializers.Serializer):
    source = serializers.CharField()
    today_usd = serializers.FloatField()
    month_usd = serializers.FloatField()


class RoutineSpendSerializer(serializers.Serializer):
    routine_id = serializers.IntegerField()
    name = serializers.CharField()
    today_usd = serializers.FloatField()
    month_usd = serializers.FloatField()


class SpendSerializer(serializers.Serializer):
    """What the agent's runs cost (the attempts' cost_usd) today and this month (TIME_ZONE), and the caps."""

    today_usd = serializers.FloatField()
    month_usd = serializers.FloatField()
    daily_cap_usd = serializers.FloatField(allow_null=True, help_text="PULSE_DAILY_BUDGET_USD; null: no cap")
    monthly_cap_usd = serializers.FloatField(
        allow_null=True, help_text="PULSE_MONTHLY_BUDGET_USD; null: no cap"
    )
    waiting = serializers.BooleanField(help_text="a cap is reached: pulses other than critical wait")
    caps_reached = serializers.ListField(child=serializers.ChoiceField(choices=["day", "month"]))
    resumes_at = serializers.DateTimeField(allow_null=True, help_text="when the waiting pulses run again")
    critical_waits = serializers.BooleanField(help_text="PULSE_BUDGET_HOLDS_CRITICAL")
    by_source = SourceSpendSerializer(many=True, help_text="this month's spend per pulse source")
    by_routine = RoutineSpendSerializer(many=True, help_text="this month's spend per routine")


class StatsSerializer(serializers.Serializer):
    window_hours = serializers.IntegerField()
    executed = serializers.IntegerField()
    failed = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    failure_rate = serializers.FloatField(allow_null=True)
    average_duration_ms = serializers.FloatField(allow_null=True)
    p95_duration_ms = serializers.FloatField(allow_null=True)
    per_hour = HourSerializer(many=True)
    queue = serializers.DictField(child=serializers.IntegerField())
    pending_by_priority = serializers.DictField(child=serializers.IntegerField())
    overdue = serializers.IntegerField()
    spend = SpendSerializer()


class QueuePauseSerializer(StrictSerializer):
    until = WhenField(
        required=False,
        allow_null=True,
        help_text="when it resumes by itself, parsed like scheduled_at; absent or null: until resumed",
    )
    reason = StrictCharField(
        required=False, allow_blank=True, default="", max_length=limits.MAX_PAUSE_REASON_CHARS
    )


class QueuePauseStateSerializer(serializers.Serializer):
    """The queue's pause switch."""

    paused = serializers.BooleanField()
    since = serializers.DateTimeField(allow_null=True, help_text="when it was paused")
    until = serializers.DateTimeField(allow_null=True, help_text="when it resumes by itself; null: by hand")
    reason = serializers.CharField()
    by = serializers.CharField(help_text="who paused it: 'api token NAME', 'admin USERNAME' or 'command'")
    skipped_fires = serializers.IntegerField(
        required=False, help_text="on resume: routine fires of the pause that the catch-up rule skipped"
    )
