"""The hourly heartbeat's prompt, by time of day (the deployment guide's four periods)."""

from __future__ import annotations

from datetime import datetime

PROMPTS = {
    "morning": (
        "Hourly heartbeat (morning). Review today's calendar and set the day's priorities; "
        "check tasks and messages and tell me what needs my attention first."
    ),
    "afternoon": (
        "Hourly heartbeat (afternoon). Check upcoming meetings and pending tasks; "
        "prepare anything due later today and flag what is slipping."
    ),
    "evening": (
        "Hourly heartbeat (evening). Wrap up the day: summarise what got done, list remaining tasks "
        "and anything to move to tomorrow."
    ),
    "night": (
        "Hourly heartbeat (night). Light check only: act on anything urgent, defer everything else "
        "to the morning and do not disturb me."
    ),
}


def period(moment: datetime) -> str:
    """morning 6-12, afternoon 12-18, evening 18-22, night 22-6 (local hours)."""
    hour = moment.hour
    if 6 <= hour < 12:
        return "morning"
    if 12 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 22:
        return "evening"
    return "night"


def hourly_prompt_text(moment: datetime) -> str:
    return PROMPTS[period(moment)]


def hour_key(moment: datetime) -> str:
    """This hour's key, shared by `trigger_pulse --heartbeat` and the hourly-prompt routine: one
    heartbeat per local hour whichever makes it. The UTC offset tells a fall-back change's two
    passes through the same wall-clock hour apart."""
    from django.utils import timezone

    local = timezone.localtime(moment)
    return f"heartbeat:{local:%Y-%m-%dT%H%z}"


def schedule_hourly_prompt(now: datetime | None = None):  # -> queue.ScheduleResult
    """Schedule this hour's heartbeat pulse; running twice in one hour returns the first one."""
    from django.utils import timezone

    from pulses import queue

    local = timezone.localtime(now or timezone.now())
    name = period(local)
    return queue.schedule(
        prompt=hourly_prompt_text(local),
        scheduled_at=now or timezone.now(),
        source="heartbeat",
        tags=["heartbeat", name],
        idempotency_key=hour_key(local),
    )
